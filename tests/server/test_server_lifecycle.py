"""Client disconnects cancel upstream calls; shutdown drains streams; limits; tools; metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from server_fakes import TOOL_CALL, StallingBackend, ToolCallingBackend
from server_support import MODEL, ServeFactory

from intentmesh import Gateway
from intentmesh.server import ServerConfig, ThreadedServer
from intentmesh.testing import DemoNetwork

ONLY_CHUTES = {"intent": {"networks": ["bittensor"]}}


def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_disconnect_during_a_stream_cancels_the_upstream(
    serve: ServeFactory, gateway: Gateway
) -> None:
    stall = StallingBackend("chutes")
    server = serve(Gateway(gateway.config, backends={"chutes": stall}))
    with (
        httpx.Client() as http,
        http.stream(
            "POST", server.base_url + "/chat/completions", json=body(stream=True, **ONLY_CHUTES)
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-intentmesh-backend"] == "chutes"
        assert next(response.iter_lines()).startswith("data: ")
    assert wait_for(lambda: stall.closed == 1), "upstream stream was not closed"
    assert stall.cancelled == 1


def test_disconnect_while_waiting_cancels_the_upstream(
    serve: ServeFactory, gateway: Gateway
) -> None:
    stall = StallingBackend("chutes")
    server = serve(Gateway(gateway.config, backends={"chutes": stall}))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.base_url + "/chat/completions", json=body(**ONLY_CHUTES), timeout=0.3)
    assert wait_for(lambda: stall.cancelled == 1), "upstream call was not cancelled"
    metrics = httpx.get(server.url + "/metrics").text
    assert 'type="client_disconnected"' in metrics
    assert "intentmesh_in_flight_requests 0" in metrics


def test_shutdown_drains_in_flight_streams(serve: ServeFactory, demo: DemoNetwork) -> None:
    demo.providers["chutes"].token_delay_ms = 40  # ~0.5 s for this answer
    server = serve()
    words = " ".join(f"w{i}" for i in range(12))
    lines: list[str] = []
    first = threading.Event()

    def read() -> None:
        payload = body(stream=True, messages=[{"role": "user", "content": words}])
        with httpx.stream("POST", server.base_url + "/chat/completions", json=payload) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                    first.set()

    reader = threading.Thread(target=read)
    reader.start()
    assert first.wait(5)
    server.stop()  # like SIGTERM: stop accepting, finish what is in flight
    reader.join(5)
    assert lines[-1] == "data: [DONE]"
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in lines
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    )
    assert text == "echo: " + words
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health")


def test_request_body_over_the_limit_is_413(serve: ServeFactory) -> None:
    server = serve(config=ServerConfig(max_body_bytes=2048))
    big = body(messages=[{"role": "user", "content": "x" * 4096}])
    response = httpx.post(server.base_url + "/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_invalid_json_and_n_are_400(server: ThreadedServer) -> None:
    url = server.base_url + "/chat/completions"
    assert httpx.post(url, content=b"{nope").status_code == 400
    response = httpx.post(url, json=body(n=2))
    assert (response.status_code, response.json()["error"]["param"]) == (400, "n")


def test_tools_and_tool_calls_pass_through(serve: ServeFactory, gateway: Gateway) -> None:
    tools_backend = ToolCallingBackend("chutes")
    server = serve(Gateway(gateway.config, backends={"chutes": tools_backend}))
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as api:
        res = api.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[tool],  # type: ignore[list-item]
            tool_choice="auto",
            extra_body=ONLY_CHUTES,
        )
        stream = api.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "weather?"}],
            tools=[tool],  # type: ignore[list-item]
            stream=True,
            extra_body=ONLY_CHUTES,
        )
        deltas = [c.choices[0].delta for c in stream if c.choices]
    call = res.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert res.choices[0].finish_reason == "tool_calls"
    assert tools_backend.requests[0].extra["tools"] == [tool]
    assert tools_backend.requests[0].extra["tool_choice"] == "auto"
    streamed = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert streamed[0].function.arguments == TOOL_CALL["function"]["arguments"]  # type: ignore[union-attr]


def test_metrics_count_requests_errors_latency_and_cost(server: ThreadedServer) -> None:
    url = server.base_url + "/chat/completions"
    httpx.post(url, json=body())
    httpx.post(url, json=body(model="no-such-model"))
    text = httpx.get(server.url + "/metrics").text
    assert 'intentmesh_requests_total{endpoint="/v1/chat/completions",status="200"} 1' in text
    assert 'intentmesh_requests_total{endpoint="/v1/chat/completions",status="404"} 1' in text
    assert (
        'intentmesh_errors_total{endpoint="/v1/chat/completions",type="not_found_error"} 1' in text
    )
    assert 'intentmesh_cost_usd_total{backend="chutes",network="bittensor"}' in text
    assert "# TYPE intentmesh_request_duration_seconds histogram" in text
    assert 'intentmesh_request_duration_seconds_count{endpoint="/v1/chat/completions"} 2' in text


def test_health_reports_backends(server: ThreadedServer) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok"
