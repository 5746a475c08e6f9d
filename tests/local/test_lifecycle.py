"""The background server manager: start, reuse, stale records, busy ports, clean shutdown."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from intentmesh.errors import BackendError, ConfigurationError
from intentmesh.local_backend import (
    EngineNotInstalled,
    LocalModelNotFound,
    LocalServer,
    PortInUse,
    ServerStartFailed,
    data_dir,
    resolve_model,
)
from intentmesh.local_backend.cli import app


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "Z"


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_data_dir_follows_intentmesh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTMESH_HOME", str(tmp_path))
    assert data_dir() == tmp_path
    assert LocalServer(port=1234).record_path == tmp_path / "local" / "server-1234.json"


def test_a_missing_model_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelNotFound) as caught:
        resolve_model(str(tmp_path / "nowhere"))
    assert isinstance(caught.value, ConfigurationError)
    with pytest.raises(LocalModelNotFound, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(LocalModelNotFound, match="nothing is downloaded"):
        resolve_model("someone/not-cached-model")


def test_a_missing_engine_names_what_to_install(tiny_model: Path, port: int) -> None:
    if sys.modules.get("vllm") is not None:
        pytest.skip("vllm is installed here")
    server = LocalServer(str(tiny_model), engine="vllm", port=port)
    with pytest.raises(EngineNotInstalled, match="pip install vllm"):
        server.ensure_running()


def test_an_unknown_engine_is_refused(tiny_model: Path) -> None:
    with pytest.raises(ConfigurationError, match="unknown engine"):
        LocalServer(str(tiny_model), engine="onnx").ensure_running()


def test_a_busy_port_is_refused_before_anything_starts(tiny_model: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUse, match=str(port)):
            LocalServer(str(tiny_model), engine="torch", port=port).ensure_running()


def test_stale_record_is_detected_and_removed(tmp_path: Path, port: int) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    server = LocalServer(port=port)
    server.record_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": dead.pid, "host": "127.0.0.1", "port": server.port, "engine": "torch",
              "model": "x", "model_path": "/x", "log": "/x.log", "started_at": 0.0}  # fmt: skip
    server.record_path.write_text(json.dumps(record))
    assert server.status() is None
    assert not server.record_path.exists()
    assert server.stop() is False


def test_a_reused_pid_is_not_mistaken_for_our_server(port: int) -> None:
    server = LocalServer(port=port)
    server.record_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": "127.0.0.1", "port": server.port, "engine": "torch",
              "model": "x", "model_path": "/x", "log": "/x.log", "started_at": 0.0,
              "proc_start": "1"}  # fmt: skip
    server.record_path.write_text(json.dumps(record))
    assert server.status() is None


def test_a_server_that_dies_while_starting_reports_its_log(tmp_path: Path, port: int) -> None:
    pytest.importorskip("transformers")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    server = LocalServer(str(broken), engine="torch", port=port, start_timeout_s=120)
    with pytest.raises(ServerStartFailed) as caught:
        server.ensure_running()
    assert isinstance(caught.value, BackendError)
    assert "exited with code" in str(caught.value)
    assert caught.value.log_tail
    assert not server.record_path.exists()


def test_start_reuse_and_stop_leave_no_process_behind(tiny_model: Path, port: int) -> None:
    server = LocalServer(str(tiny_model), engine="torch", port=port)
    started = time.monotonic()
    record = server.ensure_running()
    startup_s = time.monotonic() - started
    assert record.engine == "torch"
    assert record.model == "tiny"
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    answer = httpx.post(record.base_url + "/chat/completions", json=body, timeout=30).json()
    assert answer["usage"]["completion_tokens"] == 3

    # Another manager (another process, say) finds and reuses the same server.
    again = LocalServer(str(tiny_model), engine="auto", port=port).ensure_running()
    assert again.pid == record.pid

    # Another model on the same port is refused, not silently served by the wrong one.
    with pytest.raises(ConfigurationError, match="already serves"):
        LocalServer(None, port=port).ensure_running()

    assert LocalServer(port=port).stop() is True
    deadline = time.monotonic() + 10
    while not _gone(record.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(record.pid)
    assert _group_members(record.pid) == []
    assert not server.record_path.exists()
    assert startup_s < 60


def test_stop_kills_the_whole_process_group(tmp_path: Path, port: int) -> None:
    # A stand-in server: a parent that spawns a child in its group and ignores SIGTERM.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    time.sleep(0.5)
    assert len(_group_members(proc.pid)) == 2
    server = LocalServer(port=port)
    server.record_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": proc.pid, "host": "127.0.0.1", "port": server.port, "engine": "torch",
              "model": "x", "model_path": "/x", "log": "/x.log", "started_at": 0.0}  # fmt: skip
    server.record_path.write_text(json.dumps(record))
    assert server.stop(timeout_s=0.5) is True
    proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while _group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _group_members(proc.pid) == []


def test_cli_start_status_stop(tiny_model: Path, port: int) -> None:
    runner = CliRunner()
    port_text = str(port)
    result = runner.invoke(app, ["status", "--port", port_text])
    assert result.exit_code == 1
    assert "no local server" in result.output
    result = runner.invoke(app, ["start", "--model", str(tiny_model), "--port", port_text])
    assert result.exit_code == 0, result.output
    assert f"127.0.0.1:{port}/v1" in result.output
    result = runner.invoke(app, ["status", "--port", port_text])
    assert result.exit_code == 0
    assert "tiny (torch" in result.output
    result = runner.invoke(app, ["stop", "--port", port_text])
    assert result.exit_code == 0
    assert "stopped" in result.output


def test_cli_prints_configuration_errors_without_a_traceback(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["start", "--model", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "not found" in result.output


def _serve_in_foreground(model: Path, port: int) -> subprocess.Popen[str]:
    code = "import sys; from intentmesh.cli import main; sys.argv[0] = 'intentmesh'; main()"
    cmd = [sys.executable, "-c", code, "local", "serve", "--model", str(model),
           "--port", str(port)]  # fmt: skip
    return subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_foreground_serve_is_shown_reused_and_stopped(tiny_model: Path, port: int) -> None:
    """`local serve` registers itself once serving: status shows it, start and the backend
    reuse it instead of refusing the port, and stop ends it and its record."""
    proc = _serve_in_foreground(tiny_model, port)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # blocks until the server prints its first line
        assert line.startswith(f"serving on http://127.0.0.1:{port}/v1"), line
        # printed only once serving: the very next request is answered
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        server = LocalServer(str(tiny_model), port=port)
        record = server.status()
        assert record is not None and record.pid == proc.pid and record.foreground
        assert server.ensure_running().pid == proc.pid  # reused, not "already in use"
        result = CliRunner().invoke(app, ["status", "--port", str(port)])
        assert result.exit_code == 0
        assert f"tiny (torch, pid {proc.pid})" in result.output
        assert "foreground" in result.output
        assert server.stop()
        assert proc.wait(timeout=30) == 0
        assert server.status() is None and not server.record_path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
