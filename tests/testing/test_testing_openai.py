"""FakeOpenAIProvider speaks the OpenAI/vLLM wire format: endpoints, SSE, auth, errors, tokens."""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import intentmesh.testing
from intentmesh.testing import FakeOpenAIProvider

MODEL = "test-model"


@pytest.fixture
def provider() -> Iterator[FakeOpenAIProvider]:
    with FakeOpenAIProvider([MODEL, "other-served-model"]) as fake:
        yield fake


@pytest.fixture
async def client(provider: FakeOpenAIProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=provider.base_url, timeout=5) as http:
        yield http


def chat(content: str = "hello world", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def parse_sse(raw: str) -> list[Any]:
    """Every ``data:`` payload of an SSE body: decoded JSON, or the literal ``"[DONE]"``."""
    assert raw.endswith("\n\n"), "each event ends with a blank line"
    events: list[Any] = []
    for block in raw.split("\n\n")[:-1]:
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_public_names_are_exactly_all() -> None:
    public = {
        name
        for name, value in vars(intentmesh.testing).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(intentmesh.testing.__all__)


async def test_health_is_public_and_empty() -> None:
    with FakeOpenAIProvider(api_key="k") as fake:
        async with httpx.AsyncClient() as http:
            response = await http.get(fake.url + "/health")
    assert (response.status_code, response.content) == (200, b"")


async def test_models_list(client: httpx.AsyncClient) -> None:
    body = (await client.get("/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [MODEL, "other-served-model"]
    assert set(body["data"][0]) == {"id", "object", "created", "owned_by"}
    assert body["data"][0]["object"] == "model"


async def test_chat_completion(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat("hi  there\nfriend"))
    body = response.json()
    assert response.headers["content-type"] == "application/json"
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == MODEL
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hi  there\nfriend"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    # 3 prompt words + 3 per message; 4 answer words
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 4, "total_tokens": 10}


async def test_text_completion(client: httpx.AsyncClient) -> None:
    payload = {"model": MODEL, "prompt": "one two three"}
    body = (await client.post("/completions", json=payload)).json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "echo: one two three"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_prompt_tokens_count_every_message_and_text_parts(
    client: httpx.AsyncClient,
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a b c"}]},
        {"role": "assistant", "content": None},
    ]
    payload = {"model": MODEL, "messages": messages}
    body = (await client.post("/chat/completions", json=payload)).json()
    assert body["usage"]["prompt_tokens"] == (2 + 3) + (3 + 3) + (0 + 3)
    assert body["choices"][0]["message"]["content"] == "echo: a b c"


async def test_chat_stream_framing_with_usage(client: httpx.AsyncClient) -> None:
    payload = chat("alpha beta", stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", "/chat/completions", json=payload) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = (await response.aread()).decode()
    events = parse_sse(raw)
    assert events[-1] == "[DONE]"
    role, *contents, finish, usage, _ = events
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["delta"]["content"] for c in contents] == ["echo:", " alpha", " beta"]
    assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
    assert len({e["id"] for e in events[:-1]}) == 1
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def test_stream_without_include_usage_has_no_usage_chunk(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat("x", stream=True))
    events = parse_sse(response.text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_completions_stream(client: httpx.AsyncClient) -> None:
    payload = {
        "model": MODEL,
        "prompt": "p q",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = parse_sse((await client.post("/completions", json=payload)).text)
    *texts, finish, usage, done = events
    assert done == "[DONE]"
    assert all(e["object"] == "text_completion" for e in events[:-1])
    assert "".join(t["choices"][0]["text"] for t in texts) == "echo: p q"
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["usage"]["completion_tokens"] == len(texts) == 3


async def test_max_tokens_cuts_with_length(client: httpx.AsyncClient) -> None:
    body = (await client.post("/chat/completions", json=chat("a b c d e", max_tokens=2))).json()
    assert body["choices"][0]["message"]["content"] == "echo: a"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


async def test_stop_sequence_cuts_before_match(client: httpx.AsyncClient) -> None:
    body = (await client.post("/chat/completions", json=chat("a b STOP c", stop=["STOP"]))).json()
    assert body["choices"][0]["message"]["content"] == "echo: a b"  # trailing space dropped
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 3


async def test_fill_repeats_reply_to_max_tokens() -> None:
    with FakeOpenAIProvider([MODEL], fill=True) as fake:
        async with httpx.AsyncClient(base_url=fake.base_url) as http:
            payload = chat("go", max_tokens=7, seed=1, temperature=0.2)
            body = (await http.post("/chat/completions", json=payload)).json()
    assert body["choices"][0]["message"]["content"] == "echo: go echo: go echo: go echo:"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 7


async def test_custom_reply_gets_messages_or_prompt() -> None:
    seen: list[Any] = []

    def reply(prompt: Any) -> str:
        seen.append(prompt)
        return "fixed answer"

    with FakeOpenAIProvider([MODEL], reply=reply) as fake:
        async with httpx.AsyncClient(base_url=fake.base_url) as http:
            chat_body = (await http.post("/chat/completions", json=chat("q"))).json()
            await http.post("/completions", json={"model": MODEL, "prompt": "pp"})
    assert chat_body["choices"][0]["message"]["content"] == "fixed answer"
    assert seen == [[{"role": "user", "content": "q"}], "pp"]


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json={**chat(), "model": "nope"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("NotFoundError", "model", 404)
    assert "nope" in error["message"]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        ({"model": MODEL, "messages": [{"content": "no role"}]}, "messages"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens="5"), "max_tokens"),
        (chat(max_tokens=True), "max_tokens"),
        (chat(stream="yes"), "stream"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
async def test_bad_chat_request_is_400(
    client: httpx.AsyncClient, payload: dict[str, Any], param: str
) -> None:
    response = await client.post("/chat/completions", json=payload)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("BadRequestError", param, 400)


async def test_non_json_body_and_bad_prompt_are_400(client: httpx.AsyncClient) -> None:
    assert (await client.post("/chat/completions", content=b"{nope")).status_code == 400
    bad_prompt = await client.post("/completions", json={"model": MODEL, "prompt": 3})
    assert bad_prompt.status_code == 400
    assert bad_prompt.json()["error"]["param"] == "prompt"


async def test_unknown_path_404_and_wrong_method_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/embeddings")).status_code == 404
    assert (await client.get("/chat/completions")).status_code == 405


async def test_auth_required_when_api_key_set() -> None:
    with FakeOpenAIProvider([MODEL], api_key="sekrit") as fake:
        async with httpx.AsyncClient(base_url=fake.base_url) as http:
            missing = await http.post("/chat/completions", json=chat())
            wrong = await http.get("/models", headers={"Authorization": "Bearer other"})
            good = await http.post(
                "/chat/completions", json=chat(), headers={"authorization": "Bearer sekrit"}
            )
    for response in (missing, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "AuthenticationError"
    assert good.status_code == 200


async def test_requests_and_calls_are_recorded(
    provider: FakeOpenAIProvider, client: httpx.AsyncClient
) -> None:
    await client.post("/chat/completions", json=chat(), headers={"X-Request-Id": "r1"})
    await client.get("/models")
    first = provider.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/chat/completions")
    assert first.headers["x-request-id"] == first.headers["X-Request-ID"] == "r1"
    assert first.json()["messages"][0]["content"] == "hello world"
    assert provider.calls == {"/v1/chat/completions": 1, "/v1/models": 1}
    provider.clear_records()
    assert provider.requests == [] and not provider.calls


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.post("/chat/completions", json=chat(), headers={"x-request-id": "abc"})
    assert response.headers["x-request-id"] == "abc"


async def test_latency_and_token_delay() -> None:
    with FakeOpenAIProvider([MODEL], latency_ms=150, token_delay_ms=40) as fake:
        async with httpx.AsyncClient(base_url=fake.base_url) as http:
            started = time.perf_counter()
            payload = chat("a b", stream=True)
            async with http.stream("POST", "/chat/completions", json=payload) as response:
                first_byte = time.perf_counter() - started
                await response.aread()
            total = time.perf_counter() - started
    assert 0.14 <= first_byte < 0.3
    # role, 3 words, finish, [DONE]: 6 events, 5 gaps of 40 ms
    assert total - first_byte >= 0.15


async def test_jitter_is_seeded() -> None:
    def delays(seed: int) -> list[float]:
        fake = FakeOpenAIProvider(jitter_ms=100, seed=seed)
        return [fake._first_byte_ms(None) for _ in range(5)]

    assert delays(3) == delays(3) != delays(4)
    assert all(0 <= d <= 100 for d in delays(3))


async def test_200_concurrent_requests_are_matched_by_content() -> None:
    limits = httpx.Limits(max_connections=200)
    with FakeOpenAIProvider([MODEL], latency_ms=20) as fake:
        async with httpx.AsyncClient(base_url=fake.base_url, limits=limits, timeout=10) as http:

            async def ask(i: int) -> str:
                body = (await http.post("/chat/completions", json=chat(f"q{i}"))).json()
                content: str = body["choices"][0]["message"]["content"]
                return content

            answers = await asyncio.gather(*(ask(i) for i in range(200)))
    assert answers == [f"echo: q{i}" for i in range(200)]
    assert fake.calls["/v1/chat/completions"] == 200
