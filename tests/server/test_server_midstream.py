"""``intent.on_midstream = "continue"`` through the gateway server's streaming endpoint."""

from __future__ import annotations

import json

import httpx
from server_support import MODEL

from intentmesh.server import ThreadedServer
from intentmesh.testing import DemoNetwork, Fault


def test_server_stream_continues_on_the_next_backend(
    server: ThreadedServer, demo: DemoNetwork
) -> None:
    demo.providers["chutes"].fail_next(1, Fault.reset_mid_stream(after_chunks=3))
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "one two three four"}],
        "stream": True,
        "intent": {"on_midstream": "continue"},
    }
    with (
        httpx.Client(base_url=server.base_url, timeout=30) as http,
        http.stream("POST", "/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: one two three four"
    assert demo.providers["akash"].requests[-1].json()["continue_final_message"] is True
