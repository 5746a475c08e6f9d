"""``serve_main`` (what ``intentmesh serve`` runs) in a real process: serve, then SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server_support import MODEL

from intentmesh.testing import DemoNetwork


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_main_serves_the_config_file_and_stops_on_sigterm(
    demo: DemoNetwork, tmp_path: Path
) -> None:
    config = tmp_path / "intentmesh.toml"
    receipts = f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    server = '[server]\nmax_tokens_limit = 64\n[[server.keys]]\nname = "t"\nkey_env = "GW_KEY"\n'
    config.write_text(receipts + demo.config_toml() + server)
    port = free_port()
    code = "from intentmesh.server import serve_main; "
    code += f"serve_main('127.0.0.1', {port}, {str(config)!r})"
    env = {"GW_KEY": "sk-test", "PATH": "/usr/bin:/bin", "INTENTMESH_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.ConnectError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        headers = {"authorization": "Bearer sk-test"}
        payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        ok = httpx.post(url + "/v1/chat/completions", json=payload, headers=headers)
        if ok.status_code != 200:
            proc.send_signal(signal.SIGTERM)
            pytest.fail(proc.communicate(timeout=20)[1].decode()[-3000:])
        too_long = httpx.post(
            url + "/v1/chat/completions", json={**payload, "max_tokens": 65}, headers=headers
        )
        assert too_long.status_code == 400
        streamed = {**payload, "stream": True}
        with httpx.stream(
            "POST", url + "/v1/chat/completions", json=streamed, headers=headers
        ) as sse:
            assert sse.status_code == 200
            events = [line for line in sse.iter_lines() if line.startswith("data: ")]
        assert len(events) >= 3 and events[-1] == "data: [DONE]"
        # head and body leave in one write; a HEAD's head (no body after it) still leaves
        with httpx.Client(base_url=url) as client:  # one kept-alive connection
            for _ in range(3):
                assert client.head("/health").status_code == 200
                health = client.get("/health")
                assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    # uvicorn re-raises the signal once shut down, so the exit status says SIGTERM
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()
    assert "Application shutdown complete" in err.decode()


def test_a_serving_process_tunes_its_gc_and_an_embedding_one_does_not(tmp_path: Path) -> None:
    """``intentmesh serve`` (and each of its workers) freezes what start-up built and raises the
    youngest GC generation's threshold; ``create_app`` in someone else's process leaves the
    collector alone."""
    config = tmp_path / "intentmesh.toml"
    config.write_text(f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n')
    code = (
        "import gc, os; from intentmesh.server import create_app; "
        "from intentmesh import Gateway; from intentmesh.server._serve import app_from_env; "
        "create_app(Gateway()); print(gc.get_threshold()[0], gc.get_freeze_count() > 0); "
        "app_from_env(); print(gc.get_threshold()[0], gc.get_freeze_count() > 0)"
    )
    env = {"PATH": "/usr/bin:/bin", "INTENTMESH_HOME": str(tmp_path)}
    env["INTENTMESH_CONFIG"] = str(config)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-3000:]
    embedded, served = out.stdout.split("\n")[:2]
    assert embedded == "700 False"
    assert served == "5000 True"
