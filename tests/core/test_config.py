from __future__ import annotations

from pathlib import Path

import pytest

from intentmesh import ConfigurationError, Gateway, Intent, NoRouteError
from intentmesh.config import discover_config_path, load_config, parse_config

GOOD = """
[[backends]]
name = "chutes"
type = "openai"
network = "bittensor"
base_url = "https://llm.chutes.ai/v1"
api_key_env = "CHUTES_API_KEY"
[[backends.models]]
name = "llama-3.1-8b-instruct"
id = "unsloth/Llama-3.1-8B-Instruct"
input_price = 0.02
output_price = 0.05
"""


def test_issue_example_parses() -> None:
    config = parse_config(GOOD)
    backend = config.backends[0]
    assert backend.label == "bittensor"
    assert backend.models[0].provider_id == "unsloth/Llama-3.1-8B-Instruct"
    assert backend.api_key() is None


def test_unknown_key_names_line() -> None:
    text = GOOD.replace("output_price = 0.05", "output_price = 0.05\noutptu_price = 1")
    with pytest.raises(ConfigurationError) as info:
        parse_config(text, "x.toml")
    assert "x.toml:13" in str(info.value)
    assert "unknown key" in str(info.value)


def test_negative_price_names_field_and_line() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(GOOD.replace("input_price = 0.02", "input_price = -1"), "c.toml")
    assert "backends.0.models.0.input_price" in str(info.value)
    assert "c.toml:11" in str(info.value)


def test_bad_toml_names_line() -> None:
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        parse_config("[[backends]\nname = 1", "bad.toml")


def test_duplicate_names_rejected() -> None:
    with pytest.raises(ConfigurationError, match="used twice"):
        parse_config(GOOD + GOOD)


def test_api_key_must_be_env_name_not_key() -> None:
    with pytest.raises(ConfigurationError, match="NAME of an environment variable"):
        parse_config(GOOD.replace('"CHUTES_API_KEY"', '"cpk_abc.def-123"'))


def test_unknown_backend_type_lists_known() -> None:
    with pytest.raises(
        ConfigurationError, match="unknown backend type 'nope'; known types: .*openai"
    ):
        Gateway(parse_config(GOOD.replace('type = "openai"', 'type = "nope"')))


def test_unknown_adapter_option_rejected() -> None:
    with pytest.raises(ConfigurationError, match="auth_hedaer"):
        Gateway(
            parse_config(
                GOOD.replace('network = "bittensor"', 'network = "bittensor"\nauth_hedaer = "x"')
            )
        )


def test_missing_file_is_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="missing.toml: no such file; write one with"):
        load_config(tmp_path / "missing.toml")


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert discover_config_path() in (None, Path.home() / ".config/intentmesh/intentmesh.toml")
    (tmp_path / "intentmesh.toml").write_text(GOOD)
    assert discover_config_path() == tmp_path / "intentmesh.toml"
    other = tmp_path / "other.toml"
    other.write_text(GOOD)
    monkeypatch.setenv("INTENTMESH_CONFIG", str(other))
    assert discover_config_path() == other
    monkeypatch.setenv("INTENTMESH_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigurationError, match="INTENTMESH_CONFIG"):
        discover_config_path()


def test_gateway_with_no_backends_says_how_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    gw = Gateway(parse_config(""))
    with pytest.raises(NoRouteError, match=r"add \[\[backends\]\]"):
        gw.infer(Intent(model="llama-3.1-8b-instruct", prompt="hi"))


def test_config_aliases_extend_catalog() -> None:
    text = GOOD + '\n[[models]]\nname = "llama-3.1-8b-instruct"\naliases = ["my-llama"]\n'
    gw = Gateway(parse_config(text))
    plan = gw.plan(Intent(model="my-llama", prompt="hi"))
    assert [c.backend for c in plan.candidates] == ["chutes"]


BUILD_ERRORS = {
    # name: (the second backend's lines, the key named, its line: the entry's when missing)
    "missing base_url": ('name = "b"\ntype = "openai"', "base_url", 5),
    "unknown type": ('name = "b"\nbase_url = "http://127.0.0.1:9/v1"\ntype = "nosuch"', "type", 8),
    "bad option": (
        'name = "b"\ntype = "akash-vllm"\nbase_url = "http://127.0.0.1:9/v1"\ngpu_count = "x"',
        "gpu_count",
        9,
    ),
    "bad attestation": (
        'name = "b"\nbase_url = "http://127.0.0.1:9/v1"\nattestation = { kind = "chutes" }',
        "attestation",
        8,
    ),
}


@pytest.mark.parametrize("case", list(BUILD_ERRORS))
def test_errors_building_a_backend_name_file_line_and_key(tmp_path: Path, case: str) -> None:
    lines, key, line = BUILD_ERRORS[case]
    path = tmp_path / "intentmesh.toml"
    path.write_text(
        '[[backends]]\nname = "a"\nbase_url = "http://127.0.0.1:9/v1"\n\n[[backends]]\n'
        + lines + "\n"
    )
    with pytest.raises(ConfigurationError) as info:
        Gateway.from_config(path)
    err = info.value
    assert str(err).startswith(f"{path}:{line}: backends.1.{key}: "), str(err)
    assert (err.source, err.line, err.key) == (str(path), line, key)


def test_receipts_async_shorthand_is_the_commit_mode() -> None:
    """``receipts = "async"`` (the issue's spelling) equals ``[receipts] commit = "async"``."""
    from intentmesh.config import parse_config
    from intentmesh.errors import ConfigurationError

    assert parse_config('receipts = "async"\n').receipts.commit == "async"
    assert parse_config('receipts = "sync"\n').receipts.commit == "sync"
    assert parse_config('[receipts]\ncommit = "async"\n').receipts.commit == "async"
    with pytest.raises(ConfigurationError, match="receipts.commit"):
        parse_config('receipts = "later"\n')
