"""The ``[server]`` section: parsed beside the gateway config, validated with line numbers."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

import intentmesh.server
from intentmesh.errors import ConfigurationError
from intentmesh.server import KeyConfig, ServerConfig, load_configs, parse_configs

EXAMPLE = """
[[backends]]
name = "chutes"
base_url = "http://127.0.0.1:9/v1"
[[backends.models]]
name = "llama-3.1-8b-instruct"

[server]
port = 8080
max_tokens_limit = 4096
defaults = { verifiability = "receipt" }

[server.presets.verified]
verifiability = "attested"
networks = ["bittensor"]

[[server.keys]]
name = "team-a"
key_env = "TEAM_A_KEY"
budget_usd = 5
models = ["llama-3.1-8b-instruct"]
networks = ["bittensor", "akash"]
defaults = { max_price_usd = 0.01 }
"""


def test_public_names_are_exactly_all() -> None:
    typing_names = {"annotations", "TYPE_CHECKING", "Any"}
    public = {n for n in vars(intentmesh.server) if not n.startswith("_")} - typing_names
    public -= {n for n, v in vars(intentmesh.server).items() if isinstance(v, ModuleType)}
    assert public | {"create_app", "serve_main"} == set(intentmesh.server.__all__)
    for name in intentmesh.server.__all__:
        assert getattr(intentmesh.server, name) is not None


def test_server_section_splits_from_gateway_config() -> None:
    gateway, server = parse_configs(EXAMPLE, "x.toml")
    assert [b.name for b in gateway.backends] == ["chutes"]
    assert server.port == 8080 and server.max_tokens_limit == 4096
    key = server.keys[0]
    assert (key.label, key.budget_usd, key.networks) == ("team-a", 5, ["bittensor", "akash"])
    assert server.all_presets()["verified"]["networks"] == ["bittensor"]
    assert server.all_presets()["fastest"] == {"optimize": "latency"}


def test_no_server_section_means_defaults(tmp_path: Path) -> None:
    path = tmp_path / "intentmesh.toml"
    path.write_text(EXAMPLE.split("[server]")[0])
    _, server = load_configs(path)
    assert server == ServerConfig()


def test_errors_name_the_server_key_and_line() -> None:
    bad = EXAMPLE.replace("port = 8080", "port = -1")
    with pytest.raises(ConfigurationError, match=r"x.toml:\d+: server.port"):
        parse_configs(bad, "x.toml")


def test_secrets_are_refused_in_files() -> None:
    bad = EXAMPLE.replace('key_env = "TEAM_A_KEY"', 'key = "sk-live-123"')
    with pytest.raises(ConfigurationError, match="never the key itself"):
        parse_configs(bad, "x.toml")


def test_gateway_errors_keep_their_line_numbers() -> None:
    bad = EXAMPLE.replace('name = "chutes"', 'name = "chutes"\nbogus = [')
    with pytest.raises(ConfigurationError):
        parse_configs(bad, "x.toml")


def test_a_key_needs_exactly_one_secret() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        KeyConfig(name="x")


def test_workers_with_budgets_need_a_shared_budget_db() -> None:
    key = KeyConfig(name="a", key_sha256="00" * 32, budget_usd=1)
    with pytest.raises(ValueError, match="budget_db"):
        ServerConfig(workers=2, keys=[key])
    ServerConfig(workers=2, keys=[key], budget_db="/tmp/b.db")


def test_importing_intentmesh_and_the_server_package_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, intentmesh, intentmesh.server, intentmesh.integrations; "
        "print(sorted(m for m in ('starlette', 'uvicorn', 'langchain_core') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
