"""One network is one registry entry: its spec carries the key variables, label and zero-config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from intentmesh import AllBackendsFailed, Gateway, Intent, MissingApiKey
from intentmesh._zeroconf import zero_config_backends
from intentmesh.adapters import BackendSpec, backend_specs, build_backend, register
from intentmesh.adapters._registry import BACKENDS, backend_class
from intentmesh.adapters.base import ChatRequest
from intentmesh.config import BackendConfig, GatewayConfig, parse_config
from intentmesh.errors import ConfigurationError
from intentmesh.testing import FakeOpenAIProvider

MODEL = "fake-llama"


@pytest.fixture
def registry() -> Iterator[None]:
    """Put the registry back as it was after a test registers types."""
    saved = dict(BACKENDS)
    yield
    BACKENDS.clear()
    BACKENDS.update(saved)
    backend_class.cache_clear()


@pytest.fixture
def provider() -> Iterator[FakeOpenAIProvider]:
    with FakeOpenAIProvider([MODEL], api_key="sk-net") as fake:
        yield fake


def _toml(tmp_path: Path, body: str) -> GatewayConfig:
    receipts = f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "k.pem"}"\n'
    model = f'[[backends.models]]\nname = "{MODEL}"\ninput_price = 0.1\noutput_price = 0.2\n'
    return parse_config(receipts + body + model)


def test_unset_key_variable_is_named_before_anything_is_sent(
    provider: FakeOpenAIProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHUTES_API_KEY", raising=False)
    config = _toml(
        tmp_path,
        f'[[backends]]\nname = "chutes"\ntype = "openai"\nbase_url = "{provider.base_url}"\n'
        'api_key_env = "CHUTES_API_KEY"\n',
    )
    with Gateway(config) as gw, pytest.raises(AllBackendsFailed, match="CHUTES_API_KEY is not set"):
        gw.infer(Intent(model=MODEL, prompt="hi"))
    assert provider.calls["/v1/chat/completions"] == 0
    monkeypatch.setenv("CHUTES_API_KEY", "sk-net")
    with Gateway(config) as gw:
        assert gw.infer(Intent(model=MODEL, prompt="hi")).backend == "chutes"


async def test_missing_key_error_is_typed_on_both_paths(provider: FakeOpenAIProvider) -> None:
    entry = BackendConfig(
        name="n", base_url=provider.base_url, api_key_env="INTENTMESH_TEST_UNSET_KEY"
    )
    backend = build_backend(entry)
    request = ChatRequest(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(MissingApiKey) as info:
        await backend.acomplete(request)
    assert info.value.key_env == "INTENTMESH_TEST_UNSET_KEY" and info.value.kind == "auth"
    with pytest.raises(MissingApiKey):
        async for _ in backend.astream(request):
            pass
    await backend.aclose()
    assert sum(provider.calls.values()) == 0


def test_key_variable_and_zero_config_come_from_the_spec(
    registry: None, provider: FakeOpenAIProvider, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    spec = register(
        "examplenet", "intentmesh.adapters.openai:OpenAIBackend", network="example",
        key_env=("EXAMPLENET_API_KEY", "EXAMPLE_KEY"), zero_config=True,
    )  # fmt: skip
    assert backend_specs()["examplenet"] == spec == BackendSpec(
        "intentmesh.adapters.openai:OpenAIBackend", "example",
        ("EXAMPLENET_API_KEY", "EXAMPLE_KEY"), True,
    )  # fmt: skip
    env = {"EXAMPLE_KEY": "sk-net", "INTENTMESH_LOCAL_DEFAULT": "0"}
    found = {b.name: b for b in zero_config_backends(GatewayConfig(), env)}
    assert set(found) == {"examplenet"}
    assert (found["examplenet"].network, found["examplenet"].api_key_env) == (
        "example",
        "EXAMPLE_KEY",
    )
    # configured by hand without api_key_env: the alias that is set is read
    monkeypatch.setenv("EXAMPLE_KEY", "sk-net")
    config = _toml(
        tmp_path,
        f'[[backends]]\nname = "ex"\ntype = "examplenet"\nbase_url = "{provider.base_url}"\n',
    )
    with Gateway(config) as gw:
        assert gw.infer(Intent(model=MODEL, prompt="hi")).backend == "ex"
    assert provider.requests[-1].headers.get("authorization") == "Bearer sk-net"


def test_zero_config_does_not_import_adapters(registry: None) -> None:
    register("ghostnet", "intentmesh_no_such_module:Ghost", key_env="GHOST_KEY", zero_config=True)
    env = {"GHOST_KEY": "g", "INTENTMESH_LOCAL_DEFAULT": "0"}
    assert [b.type for b in zero_config_backends(GatewayConfig(), env)] == ["ghostnet"]
    with pytest.raises(ConfigurationError, match="ghostnet"):
        build_backend(BackendConfig(name="g", type="ghostnet"))


def test_register_rejects_a_target_without_a_class(registry: None) -> None:
    with pytest.raises(ConfigurationError, match="module:Class"):
        register("bad", "intentmesh.adapters.openai")
