"""``--config PATH``, ``$INTENTMESH_CONFIG``, ``./intentmesh.toml`` and no config at all give the
CLI and ``intentmesh serve`` the same backends as ``Gateway()``: the config's, plus the zero-config
ones (networks whose key is set; the embedded local default when installed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from intentmesh import Gateway
from intentmesh.cli._common import Options, default_model, open_gateway

KEYED = "AKASHML_API_KEY"  # enables the zero-config `akashml` backend; needs no models configured


@pytest.mark.parametrize("how", ["flag", "env", "cwd"])
def test_every_way_to_name_a_config_gets_the_zero_config_backends(
    cli, config, how, monkeypatch, tmp_path
):
    monkeypatch.setenv(KEYED, "sk-test")
    if how != "cwd":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
    if how == "env":
        monkeypatch.setenv("INTENTMESH_CONFIG", str(config))
    flag = config if how == "flag" else None
    with open_gateway(Options(flag)) as gw:
        assert [b.name for b in gw.config.backends] == ["chutes", "akash", "ionet", "akashml"]
        assert default_model(gw) == "llama-3.1-8b-instruct"  # the file's model, not discovery's
    shown = cli.json("config", "show", *(["--config", flag] if flag else []))
    assert shown["source"] == str(config) and shown["zero_config"] == ["akashml"]
    assert [b["name"] for b in shown["config"]["backends"]][-1] == "akashml"
    text = cli.run("config", "show", *(["--config", flag] if flag else [])).stdout
    assert "backend 'akashml' is added because its API key is set" in text


def test_no_config_matches_gateway(cli, monkeypatch):
    monkeypatch.setenv(KEYED, "sk-test")
    with Gateway() as plain, open_gateway(Options()) as ours:
        assert [b.name for b in ours.config.backends] == [b.name for b in plain.config.backends]
    assert cli.json("config", "show")["zero_config"] == ["akashml"]


def test_serve_gets_the_same_backends_as_gateway(config, monkeypatch, tmp_path: Path):
    pytest.importorskip("starlette")
    from intentmesh.server._serve import build_app

    monkeypatch.setenv(KEYED, "sk-test")
    app = build_app(str(config))
    gateway = app.state.handlers.gateway
    try:
        with open_gateway(Options(config)) as cli_gw:
            assert [b.name for b in gateway.config.backends] == [
                b.name for b in cli_gw.config.backends
            ]
        assert "akashml" in gateway.backends
    finally:
        gateway.close()
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    bare = build_app(None)
    try:
        with Gateway() as plain:
            names = [b.name for b in plain.config.backends]
        assert [b.name for b in bare.state.handlers.gateway.config.backends] == names
        assert names  # the keyed network at least: serve with no config serves something
    finally:
        bare.state.handlers.gateway.close()
