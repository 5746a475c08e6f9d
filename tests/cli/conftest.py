"""Fixtures for CLI tests: the demo network on loopback, a config for it, and a runner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from intentmesh.cli import app
from intentmesh.testing import DemoNetwork


@pytest.fixture(scope="module")
def demo_net() -> Iterator[DemoNetwork]:
    with DemoNetwork(latency_scale=0.05) as net:
        yield net


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config, ledger or key leaks in: home and cwd are the test's tmp dir."""
    monkeypatch.delenv("INTENTMESH_CONFIG", raising=False)
    monkeypatch.setenv("INTENTMESH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def config(demo_net: DemoNetwork, tmp_path: Path) -> Iterator[Path]:
    """A config for the demo network, with fast retries; faults are cleared afterwards."""
    path = tmp_path / "intentmesh.toml"
    path.write_text(
        demo_net.config_toml()
        + "\n[routing]\nbackoff_s = 0.0\nbackoff_max_s = 0.0\n"
        + f"\n[receipts]\nledger = {json.dumps(str(tmp_path / 'receipts.sqlite3'))}\n"
        + f"key = {json.dumps(str(tmp_path / 'key.pem'))}\n",
        encoding="utf-8",
    )
    yield path
    for provider in demo_net.providers.values():
        provider.clear_faults()


class Cli:
    """Runs ``intentmesh`` in-process with typer's CliRunner."""

    def invoke(self, *args: str | Path, input: str | None = None) -> Result:
        return CliRunner().invoke(app, [str(a) for a in args], input=input)

    def run(self, *args: str | Path, code: int = 0, input: str | None = None) -> Result:
        """Invoke and assert the exit code (showing both streams when it differs)."""
        result = self.invoke(*args, input=input)
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
        return result

    def json(self, *args: str | Path, code: int = 0) -> Any:
        """Invoke with ``--json`` and parse stdout."""
        return json.loads(self.run(*args, "--json", code=code).stdout)

    @staticmethod
    def error_line(result: Result) -> str:
        """stderr is exactly one ``error: ...`` line; return it."""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: "), lines[0]
        return lines[0]


@pytest.fixture
def cli() -> Cli:
    return Cli()
