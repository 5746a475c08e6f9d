"""``intentmesh config init|show|check``."""

from __future__ import annotations

import tomllib

from intentmesh.cli._config import STARTER, check_text, to_toml
from intentmesh.config import parse_config


def test_init_writes_a_valid_commented_starter(cli, tmp_path):
    result = cli.run("config", "init")
    assert "wrote intentmesh.toml" in result.stdout
    text = (tmp_path / "intentmesh.toml").read_text()
    assert text == STARTER and text.count("#") > 20
    assert parse_config(text).backends[0].name == "chutes"


def test_init_refuses_to_overwrite(cli, tmp_path):
    cli.run("config", "init", tmp_path / "a.toml")
    assert "--force" in cli.error_line(cli.run("config", "init", tmp_path / "a.toml", code=2))
    assert cli.json("config", "init", tmp_path / "a.toml", "--force")["path"] == str(
        tmp_path / "a.toml"
    )


def test_check_starter_passes_with_a_key_warning(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("CHUTES_API_KEY", raising=False)
    cli.run("config", "init")
    result = cli.run("config", "check")
    assert (
        "warning: backends.0 (chutes): environment variable CHUTES_API_KEY is not set"
        in result.stdout
    )
    assert "intentmesh.toml:9:" in result.stdout  # the api_key_env line
    monkeypatch.setenv("CHUTES_API_KEY", "sk-test")
    data = cli.json("config", "check")
    assert data["schema"] == "intentmesh.config.check.v1" and data["ok"] and data["problems"] == []


BROKEN = """\
[[backends]]
name = "a b"
retries = -1

[[backends]]
name = "ok"
base_url = "ftp://x"
colour = "blue"

[[backends.models]]
name = "llama-3.1-8b-instruct"
input_price = -2

[routing]
cooldown_s = "soon"
"""


def test_check_reports_every_problem_with_its_line(cli, tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    data = cli.json("config", "check", path, code=2)
    assert not data["ok"] and data["errors"] == len(data["problems"]) == 5
    where = {p["location"]: p["line"] for p in data["problems"]}
    assert where == {
        "backends.0.name": 2,
        "backends.0.retries": 3,
        "backends.1.base_url": 7,
        "backends.1.models.0.input_price": 12,
        "routing.cooldown_s": 15,
    }
    result = cli.run("config", "check", path, code=2)
    assert f"{path}:7: error: backends.1.base_url:" in result.stdout
    assert "5 error(s)" in cli.error_line(result)


def test_check_adapter_problems_and_catalog_warnings(cli, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[[backends]]\nname = "x"\ntype = "grpc"\n\n[[backends]]\nname = "y"\n'
        'base_url = "http://127.0.0.1:1/v1"\n[[backends.models]]\nname = "lama-3.1-8b"\n'
    )
    data = cli.json("config", "check", path, code=2)
    problems = {(p["severity"], p["line"]): p["message"] for p in data["problems"]}
    assert "unknown backend type 'grpc'" in problems[("error", 1)]
    assert "serves no models" in problems[("warning", 1)]
    assert "did you mean 'llama-3.1-8b-instruct'" in problems[("warning", 9)]


def test_check_toml_syntax_error(cli, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[backends]]\nname = "x\n')
    data = cli.json("config", "check", path, code=2)
    assert data["problems"][0]["line"] == 2 and "not valid TOML" in data["problems"][0]["message"]


def test_check_without_a_file(cli):
    assert "config init" in cli.error_line(cli.run("config", "check", code=2))


def test_show_masks_secrets(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SHOWN_KEY", "sk-live-123")
    path = tmp_path / "intentmesh.toml"
    path.write_text(
        '[[backends]]\nname = "x"\nbase_url = "http://h/v1"\napi_key_env = "SHOWN_KEY"\n'
        'headers = { Authorization = "Bearer sk-live-123" }\n'
        '[[backends.models]]\nname = "qwen3-8b"\n'
    )
    out = cli.run("config", "show").stdout
    assert "sk-live-123" not in out and '"***"' in out
    assert 'api_key_env = "SHOWN_KEY"  # set' in out
    assert (
        out.startswith(f"# effective config from {path.name}") or str(path) in out.splitlines()[0]
    )
    shown = tomllib.loads(out)  # the output is valid TOML
    assert shown["routing"]["failure_threshold"] == 5  # defaults filled in
    data = cli.json("config", "show")
    assert data["schema"] == "intentmesh.config.show.v1"
    assert data["config"]["backends"][0]["headers"] == {"Authorization": "***"}
    assert "sk-live-123" not in str(data)


def test_show_defaults_without_a_file(cli):
    assert "built-in defaults" in cli.run("config", "show").stdout
    assert cli.json("config", "show")["source"] is None


def test_to_toml_round_trips():
    cfg = parse_config(STARTER)
    from intentmesh.cli._config import masked

    assert (
        tomllib.loads(to_toml(masked(cfg)))["backends"][0]["models"][0]["id"]
        == "unsloth/Llama-3.1-8B-Instruct"
    )


def test_check_text_is_clean_for_the_starter(monkeypatch):
    monkeypatch.setenv("CHUTES_API_KEY", "x")
    assert check_text(STARTER) == []
