"""``intentmesh backends [--probe]`` and ``intentmesh models``."""

from __future__ import annotations

from intentmesh.testing import refused_url


def test_backends_table(cli, config):
    out = cli.run("backends", "--config", config).stdout
    for text in ("chutes", "bittensor", "http://127.0.0.1:", "closed", "(prior)", "configured"):
        assert text in out


def test_backends_json(cli, config):
    data = cli.json("backends", "--config", config)
    assert data["schema"] == "intentmesh.backends.v1"
    assert data["config"] == str(config) and data["probed"] is False
    assert [b["name"] for b in data["backends"]] == ["chutes", "akash", "ionet"]
    first = data["backends"][0]
    assert first["circuit"]["state"] == "closed" and first["probe"] is None
    assert first["models"][0]["provider_model"] == "unsloth/Llama-3.1-8B-Instruct"
    assert first["models"][0]["price_source"] == "configured"
    assert set(first) >= {
        "type",
        "network",
        "base_url",
        "enabled",
        "api_key_env",
        "api_key_set",
        "observed_latency",
    }


def test_backends_probe(cli, config, tmp_path):
    data = cli.json("backends", "--config", config, "--probe")
    assert data["probed"]
    for b in data["backends"]:
        assert b["probe"]["ok"] is True and b["probe"]["latency_ms"] > 0
        assert b["probe"]["missing_models"] == []
    out = cli.run("backends", "--config", config, "--probe").stdout
    assert "✓ ok" in out and "(probe)" in out


def test_backends_probe_reports_unreachable_and_missing_key(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("GONE_KEY", raising=False)
    cfg = tmp_path / "gone.toml"
    cfg.write_text(
        f'[[backends]]\nname = "gone"\nbase_url = "{refused_url()}"\napi_key_env = "GONE_KEY"\n'
        '[[backends.models]]\nname = "qwen3-8b"\n'
    )
    data = cli.json("backends", "--config", cfg, "--probe", "--timeout", "5")
    probe = data["backends"][0]["probe"]
    assert probe["ok"] is False and probe["error_kind"] == "connection"
    assert data["backends"][0]["api_key_set"] is False
    out = cli.run("backends", "--config", cfg, "--probe").stdout
    assert "✗ connection" in out and "GONE_KEY (NOT SET)" in out


def test_backends_without_config(cli):
    assert "no backends configured" in cli.run("backends").stdout
    assert cli.json("backends")["backends"] == []


def test_models_json(cli, config):
    data = cli.json("models", "--config", config)
    assert data["schema"] == "intentmesh.models.v1"
    llama = next(m for m in data["models"] if m["name"] == "llama-3.1-8b-instruct")
    assert "meta-llama/Llama-3.1-8B-Instruct" in llama["aliases"] and llama["in_catalog"]
    assert {b["backend"] for b in llama["backends"]} == {"chutes", "akash", "ionet"}
    assert len(data["models"]) > 10


def test_models_filters(cli, config):
    served = cli.json("models", "--config", config, "--served")["models"]
    assert [m["name"] for m in served] == ["llama-3.1-8b-instruct"]
    qwen = cli.json("models", "qwen", "--config", config)["models"]
    assert qwen and all("qwen" in m["name"] for m in qwen)
    out = cli.run("models", "--config", config, "gpt-oss").stdout
    assert "gpt-oss-120b" in out
    assert "no model matches" in cli.run("models", "zzz-nothing").stdout


def test_models_includes_config_only_models(cli, tmp_path):
    cfg = tmp_path / "own.toml"
    cfg.write_text(
        '[[backends]]\nname = "x"\nbase_url = "http://127.0.0.1:1/v1"\n'
        '[[backends.models]]\nname = "my-finetune"\n'
    )
    own = cli.json("models", "--config", cfg, "--served")["models"]
    assert own[0]["name"] == "my-finetune" and own[0]["in_catalog"] is False
