"""The root command: help, version, lazy sub-apps, and the error boundary with its exit codes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from intentmesh.cli._errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NO_ROUTE,
    EXIT_USAGE,
    EXIT_VERIFY,
    CliError,
    exit_code_for,
    wants_verbose,
)
from intentmesh.errors import (
    AllBackendsFailed,
    ConfigurationError,
    IntentValidationError,
    NoRouteError,
    ReceiptError,
)

COMMANDS = (
    "quote",
    "compare",
    "infer",
    "plan",
    "backends",
    "models",
    "receipts",
    "config",
    "demo",
    "serve",
    "local",
    "akash",
)


def test_help_lists_every_command(cli):
    out = cli.run("--help").stdout
    for name in COMMANDS:
        assert f"  {name} " in out


def test_no_arguments_shows_help(cli):
    assert "Commands:" in cli.run().stdout


def test_version(cli):
    assert cli.run("--version").stdout.startswith("intentmesh ")


def test_every_command_has_help(cli):
    for name in COMMANDS[:-2]:
        assert "Usage:" in cli.run(name, "--help").stdout
    for sub in ("list", "show", "verify", "export", "key"):
        assert "Usage:" in cli.run("receipts", sub, "--help").stdout
    for sub in ("init", "show", "check"):
        assert "Usage:" in cli.run("config", sub, "--help").stdout


def test_unknown_command_is_one_usage_line(cli):
    result = cli.run("frobnicate", code=EXIT_USAGE)
    assert "No such command" in cli.error_line(result)


def test_bad_option_value_is_one_usage_line_naming_the_help(cli):
    result = cli.run("infer", "hi", "--max-tokens", "many", code=EXIT_USAGE)
    line = cli.error_line(result)
    assert "--max-tokens" in line and "intentmesh infer --help" in line


def test_bad_choice(cli, config):
    result = cli.run("plan", "hi", "--config", config, "--verifiability", "vibes", code=EXIT_USAGE)
    assert "--verifiability" in cli.error_line(result)


def test_unreadable_config_is_usage_error(cli, tmp_path):
    result = cli.run("--config", tmp_path / "missing.toml", "models", code=EXIT_USAGE)
    line = cli.error_line(result)
    assert line.endswith("missing.toml: no such file; write one with `intentmesh config init`")


def test_invalid_config_names_file_and_line(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[backends]]\nname = "x"\nretries = -1\n')
    line = cli.error_line(cli.run("models", "--config", bad, code=EXIT_USAGE))
    assert f"{bad}:3" in line and "retries" in line


def test_global_options_apply_to_commands(cli, config):
    result = cli.run("--json", "--config", str(config), "models")
    assert result.stdout.lstrip().startswith("{")


def test_verbose_prints_the_trace(cli, tmp_path):
    result = cli.run("models", "--config", tmp_path / "missing.toml", "--verbose", code=EXIT_USAGE)
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_ctrl_c_exits_130(cli, config, monkeypatch):
    from intentmesh import Gateway

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Gateway, "infer", interrupted)
    result = cli.run("infer", "hi", "--config", config, code=EXIT_INTERRUPTED)
    assert cli.error_line(result) == "error: interrupted"


def test_unexpected_errors_are_one_line_with_a_pointer_to_verbose(cli, config, monkeypatch):
    from intentmesh import Gateway

    def broken(*args, **kwargs):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(Gateway, "infer", broken)
    line = cli.error_line(cli.run("infer", "hi", "--config", config, code=EXIT_FAILURE))
    assert "ZeroDivisionError" in line and "--verbose" in line


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (CliError("x", 3), 3),
        (IntentValidationError([("max_tokens", "bad")]), EXIT_USAGE),
        (ConfigurationError("bad"), EXIT_USAGE),
        (NoRouteError("m", []), EXIT_NO_ROUTE),
        (ReceiptError("bad"), EXIT_VERIFY),
        (AllBackendsFailed("all failed"), EXIT_FAILURE),
        (KeyboardInterrupt(), EXIT_INTERRUPTED),
        (RuntimeError("?"), EXIT_FAILURE),
    ],
)
def test_exit_codes(exc, code):
    assert exit_code_for(exc) == code


def test_wants_verbose_stops_at_double_dash():
    assert wants_verbose(["infer", "-v", "x"])
    assert not wants_verbose(["infer", "--", "--verbose"])


def test_local_is_mounted_lazily(cli):
    if importlib.util.find_spec("intentmesh.local_backend.cli") is not None:
        assert "Usage:" in cli.run("local", "--help").stdout
    else:
        line = cli.error_line(cli.run("local", "--help", code=EXIT_FAILURE))
        assert "intentmesh local" in line and "pip install" in line


def test_akash_is_mounted_lazily(cli):
    assert "sdl" in cli.run("akash", "--help").stdout


def test_serve_without_the_server_module_explains(cli, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "intentmesh.server", None)  # import fails
    line = cli.error_line(cli.run("serve", "--port", "9999", code=EXIT_FAILURE))
    assert "intentmesh[server]" in line


def test_serve_passes_its_options(cli, monkeypatch, tmp_path):
    import sys
    import types

    seen = {}
    module = types.ModuleType("intentmesh.server")
    module.serve_main = lambda **kw: seen.update(kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "intentmesh.server", module)
    cfg = tmp_path / "c.toml"
    cli.run("serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "2", "--config", cfg)
    assert seen == {"host": "0.0.0.0", "port": 9000, "config": Path(cfg), "workers": 2}
    cli.run("serve")
    assert seen == {"host": None, "port": None, "config": None, "workers": None}


def test_help_does_not_import_heavy_modules():
    """Only what ``--help`` adds to ``import intentmesh`` counts (the core is not ours)."""
    import subprocess
    import sys

    code = (
        "import sys, intentmesh\n"
        "before = set(sys.modules)\n"
        "from intentmesh.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('rich', 'matplotlib', 'pygments', 'intentmesh.testing', 'intentmesh.receipts')\n"
        "added = set(sys.modules) - before\n"
        "print('HEAVY', sorted(h for h in heavy if any(m.startswith(h) for m in added)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out
