"""Every Fault, as a client observes it, and how faults are scheduled."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from intentmesh.testing import FakeOpenAIProvider, Fault, refused_url

MODEL = "test-model"


@pytest.fixture
def provider() -> Iterator[FakeOpenAIProvider]:
    with FakeOpenAIProvider([MODEL]) as fake:
        yield fake


@pytest.fixture
async def client(provider: FakeOpenAIProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=provider.base_url, timeout=5) as http:
        yield http


def chat(content: str = "one two three four", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def stream_chat() -> dict[str, Any]:
    return chat(stream=True, stream_options={"include_usage": True})


async def read_lines(client: httpx.AsyncClient) -> list[str]:
    """The ``data:`` payloads of a streamed chat, stopping at whatever error the stream hits."""
    async with client.stream("POST", "/chat/completions", json=stream_chat()) as response:
        assert response.status_code == 200
        return [line[6:] async for line in response.aiter_lines() if line]


@pytest.mark.parametrize("code", [400, 401, 402, 404, 422, 500, 503])
async def test_status_fault_uses_openai_error_shape(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient, code: int
) -> None:
    provider.fail_next(1, Fault.status(code))
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == code
    assert response.json()["error"]["code"] == code


async def test_status_fault_with_custom_body_and_headers(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.status(402, {"detail": "no credit"}, {"Inference-Id": "i-1"}))
    provider.fail_next(1, Fault.status(401, "Unauthorized"))
    chutes = await client.post("/chat/completions", json=chat())
    targon = await client.post("/chat/completions", json=chat())
    assert (chutes.status_code, chutes.json()) == (402, {"detail": "no credit"})
    assert chutes.headers["inference-id"] == "i-1"
    assert (targon.status_code, targon.text) == (401, "Unauthorized")
    assert targon.headers["content-type"].startswith("text/plain")


async def test_rate_limit_has_retry_after(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.rate_limit(retry_after=3))
    provider.fail_next(1, Fault.rate_limit(retry_after=0.5))
    first = await client.post("/chat/completions", json=chat())
    second = await client.post("/chat/completions", json=chat())
    assert (first.status_code, first.headers["retry-after"]) == (429, "3")
    assert first.json()["error"]["type"] == "RateLimitError"
    assert second.headers["retry-after"] == "0.5"


async def test_hang_times_out_the_client(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.hang())
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/chat/completions", json=chat(), timeout=0.2)
    assert (await client.post("/chat/completions", json=chat())).status_code == 200


async def test_refuse_resets_or_closes_without_response(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.refuse())
    provider.fail_next(1, Fault.refuse(reset=False))
    with pytest.raises(httpx.ReadError):
        await client.post("/chat/completions", json=chat())
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        await client.post("/chat/completions", json=chat())


async def test_refused_url_refuses_connections() -> None:
    url = refused_url()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url + "/models")


async def test_reset_mid_stream(provider: FakeOpenAIProvider, client: httpx.AsyncClient) -> None:
    provider.fail_next(1, Fault.reset_mid_stream(after_chunks=2))
    received: list[str] = []
    async with client.stream("POST", "/chat/completions", json=stream_chat()) as response:
        with pytest.raises(httpx.ReadError):
            async for line in response.aiter_lines():
                if line:
                    received.append(line)
    assert len(received) == 2
    assert json.loads(received[1][6:])["choices"][0]["delta"]["content"] == "echo:"


async def test_reset_on_non_stream_request(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.reset_mid_stream())
    with pytest.raises(httpx.ReadError):
        await client.post("/chat/completions", json=chat())


async def test_truncated_stream_cuts_the_http_body(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.truncated_stream(after_chunks=3))
    received: list[str] = []
    async with client.stream("POST", "/chat/completions", json=stream_chat()) as response:
        with pytest.raises(httpx.RemoteProtocolError):
            async for line in response.aiter_lines():
                if line:
                    received.append(line)
    assert len(received) == 3
    assert "[DONE]" not in "".join(received)


async def test_truncated_stream_with_complete_http_body_lacks_finish_and_done(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.truncated_stream(after_chunks=100, complete_http=True))
    lines = await read_lines(client)
    events = [json.loads(line) for line in lines]  # no [DONE]
    assert all(e["choices"][0]["finish_reason"] is None for e in events)
    assert len(events) == 1 + 5  # role chunk + every word, then nothing


async def test_truncated_non_stream_body(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.truncated_stream())
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/chat/completions", json=chat())


async def test_malformed_json(provider: FakeOpenAIProvider, client: httpx.AsyncClient) -> None:
    provider.fail_next(2, Fault.malformed_json(after_chunks=1))
    response = await client.post("/chat/completions", json=chat())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    lines = await read_lines(client)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[1])
    assert lines[-1] == "[DONE]"
    assert json.loads(lines[0])["choices"][0]["delta"]["role"] == "assistant"


async def test_in_stream_error(provider: FakeOpenAIProvider, client: httpx.AsyncClient) -> None:
    error = {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}
    provider.fail_next(1, Fault.in_stream_error(after_chunks=2, body=error))
    provider.fail_next(1, Fault.in_stream_error())
    lines = await read_lines(client)
    assert len(lines) == 3
    assert json.loads(lines[2]) == error
    non_stream = await client.post("/chat/completions", json=chat())
    assert non_stream.status_code == 500
    assert "error" in non_stream.json()


async def test_wrong_usage_and_wrong_model(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.wrong_usage(factor=10))
    provider.fail_next(1, Fault.wrong_model("other-model"))
    inflated = (await client.post("/chat/completions", json=chat())).json()
    renamed = (await client.post("/chat/completions", json=chat())).json()
    assert inflated["usage"] == {
        "prompt_tokens": 70,
        "completion_tokens": 50,
        "total_tokens": 120,
    }
    assert renamed["model"] == "other-model"
    assert renamed["usage"]["completion_tokens"] == 5


async def test_wrong_usage_in_stream_usage_chunk(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.always(Fault.wrong_usage(factor=2))
    lines = await read_lines(client)
    assert json.loads(lines[-2])["usage"]["completion_tokens"] == 10


async def test_latency_fault_delays_first_byte(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(1, Fault.latency(200))
    started = time.perf_counter()
    assert (await client.post("/chat/completions", json=chat())).status_code == 200
    assert time.perf_counter() - started >= 0.2


async def test_fail_next_then_normal_in_order(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.fail_next(2, Fault.status(503))
    provider.fail_next(1, Fault.rate_limit())
    await client.get("/models")  # not a generation request: takes no fault
    codes = [(await client.post("/chat/completions", json=chat())).status_code for _ in range(5)]
    assert codes == [503, 503, 429, 200, 200]
    assert provider.faults.pending() == 0


async def test_always_and_clear_faults(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    provider.always(Fault.status(500))
    payload = {"model": MODEL, "prompt": "x"}
    codes = [(await client.post("/completions", json=payload)).status_code for _ in range(3)]
    provider.clear_faults()
    codes.append((await client.post("/completions", json=payload)).status_code)
    assert codes == [500, 500, 500, 200]


async def test_fail_rate_is_seeded(client: httpx.AsyncClient) -> None:
    def pattern(seed: int) -> list[bool]:
        fake = FakeOpenAIProvider()
        fake.fail_rate(0.5, Fault.status(503), seed=seed)
        return [fake.faults.take() is not None for _ in range(40)]

    assert pattern(1) == pattern(1) != pattern(2)
    assert 5 < sum(pattern(1)) < 35


def test_schedule_rejects_bad_arguments() -> None:
    fake = FakeOpenAIProvider()
    with pytest.raises(ValueError):
        fake.fail_next(-1, Fault.hang())
    with pytest.raises(ValueError):
        fake.fail_rate(1.5, Fault.hang())
