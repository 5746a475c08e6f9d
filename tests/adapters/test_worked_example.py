"""CONTRIBUTING.md's "Add a backend" followed as written: a new network from its code blocks,
registered with the public register(), routed to through a loopback fake."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from intentmesh._zeroconf import zero_config_backends
from intentmesh.adapters import BackendSpec, backend_specs
from intentmesh.adapters._registry import BACKENDS, backend_class
from intentmesh.config import GatewayConfig
from intentmesh.testing import FakeOpenAIProvider

GUIDE = Path(__file__).resolve().parents[2] / "CONTRIBUTING.md"
DOCUMENTED_URL = "https://api.mynet.example/v1"


def step(name: str) -> str:
    """The code block under ``<!-- worked-example: name -->`` in CONTRIBUTING.md."""
    text = GUIDE.read_text("utf-8")
    found = re.search(
        rf"<!-- worked-example: {re.escape(name)} -->\n```\w*\n(.*?)```", text, re.DOTALL
    )
    assert found, f"CONTRIBUTING.md has no worked-example block {name!r}"
    return found.group(1)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(BACKENDS)
    yield
    BACKENDS.clear()
    BACKENDS.update(saved)
    backend_class.cache_clear()
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def test_add_a_backend_as_contributing_md_says(
    clean_registry: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 1. the adapter file, in a package of our own
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mynet.py").write_text(step("mypkg/mynet.py"))
    monkeypatch.syspath_prepend(str(tmp_path))
    # 2. the registry entry, through the public register()
    exec(step("register"), {})
    spec = backend_specs()["mynet"]
    assert spec == BackendSpec("mypkg.mynet:MyNetBackend", "mynet", ("MYNET_API_KEY",), True)
    in_repo = eval("{" + step("BACKENDS") + "}", {"BackendSpec": BackendSpec, "_A": "x."})
    assert in_repo["mynet"] == replace(spec, target="x.mynet:MyNetBackend")
    # 3. use it: the documented config, pointed at a loopback fake of the network
    model_id = "meta-llama/Llama-3.1-8B-Instruct"
    with FakeOpenAIProvider([model_id], api_key="sk-test") as fake:
        config = step("intentmesh.toml")
        assert DOCUMENTED_URL in config and "api_key_env" not in config
        (tmp_path / "intentmesh.toml").write_text(config.replace(DOCUMENTED_URL, fake.base_url))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MYNET_API_KEY", "sk-test")
        exec(step("use"), {})
        assert fake.calls["/v1/chat/completions"] == 1
        assert fake.requests[-1].headers.get("authorization") == "Bearer sk-test"
    backend, network, text = capsys.readouterr().out.strip().split(" ", 2)
    assert (backend, network) == ("mynet", "mynet") and text
    # zero-config: the key alone adds the network to Gateway()
    env = {"MYNET_API_KEY": "sk-test", "INTENTMESH_LOCAL_DEFAULT": "0"}
    found = {b.name: b for b in zero_config_backends(GatewayConfig(), env)}
    assert found["mynet"].type == "mynet" and found["mynet"].api_key_env == "MYNET_API_KEY"
