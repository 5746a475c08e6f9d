"""One voice for errors: no pydantic ``Value error,`` prefixes, one wording for a missing file."""

from __future__ import annotations

import pytest

from intentmesh.config import load_config, parse_config
from intentmesh.errors import ConfigurationError

BROKEN = '[[backends]]\nname = "a b"\n\n[[backends]]\nname = "ok"\nbase_url = "ftp://x"\n'


def test_config_problems_carry_no_pydantic_prefix(cli, tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text(BROKEN)
    out = cli.run("config", "check", bad, code=2).stdout
    assert "backends.1.base_url: must start with http:// or https://" in out
    assert "Value error" not in out
    with pytest.raises(ConfigurationError) as caught:
        parse_config(BROKEN, "x.toml")
    assert "Value error" not in str(caught.value) and "x.toml:2: backends.0.name: use" in str(
        caught.value
    )
    line = cli.error_line(cli.run("models", "--config", bad, code=2))
    assert "Value error" not in line


def test_a_missing_file_reads_the_same_in_every_command(cli, config, tmp_path, monkeypatch):
    gone = tmp_path / "gone.toml"
    lines = [
        cli.error_line(cli.run("models", "--config", gone, code=2)),
        cli.error_line(cli.run("config", "show", gone, code=2)),
        cli.error_line(cli.run("config", "check", gone, code=2)),
        cli.error_line(cli.run("compare", "--config", config, "-w", gone, code=2)),
        cli.error_line(cli.run("receipts", "verify", "--file", gone, code=2)),
    ]
    for line in lines:
        assert f"{gone}: no such file" in line, line
    with pytest.raises(ConfigurationError, match=r"gone.toml: no such file; write one with"):
        load_config(gone)
    monkeypatch.setenv("INTENTMESH_CONFIG", str(gone))
    line = cli.error_line(cli.run("models", code=2))
    assert f"{gone}: no such file (named by $INTENTMESH_CONFIG); fix or unset it" in line
