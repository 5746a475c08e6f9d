"""Connection's request helpers: the one place where a status becomes an error."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from intentmesh.adapters._http import Connection
from intentmesh.errors import AuthenticationError, MalformedResponse, ModelNotFound, RateLimited
from intentmesh.testing import FakeOpenAIProvider, Fault

MODEL = "fake-llama"
CHAT = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def provider() -> Iterator[FakeOpenAIProvider]:
    with FakeOpenAIProvider([MODEL], api_key="sk-h") as fake:
        yield fake


def connect(provider: FakeOpenAIProvider, key: str = "sk-h") -> Connection:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return Connection(provider.base_url, headers, 10.0)


async def test_get_and_post_json(provider: FakeOpenAIProvider) -> None:
    conn = connect(provider)
    listed = await conn.get_json("/models", backend="h")
    assert [m["id"] for m in listed["data"]] == [MODEL]
    answer = await conn.post_json("/chat/completions", CHAT, backend="h")
    assert answer["choices"][0]["message"]["content"]
    raw, headers = await conn.post_limited("/chat/completions", CHAT, backend="h", limit=1 << 20)
    assert b"choices" in raw and headers["content-type"].startswith("application/json")
    await conn.aclose()


async def test_statuses_become_the_error_tree_on_every_path(provider: FakeOpenAIProvider) -> None:
    wrong = connect(provider, key="sk-wrong")
    with pytest.raises(AuthenticationError) as info:
        await wrong.post_json("/chat/completions", CHAT, backend="h")
    assert info.value.status_code == 401 and info.value.backend == "h"
    await wrong.aclose()
    conn = connect(provider)
    with pytest.raises(ModelNotFound):
        await conn.post_json("/chat/completions", {**CHAT, "model": "nope"}, backend="h")
    provider.fail_next(1, Fault.status(429, headers={"retry-after": "3"}))
    with pytest.raises(RateLimited) as limited:
        async with conn.stream_sse("/chat/completions", {**CHAT, "stream": True}, backend="h"):
            pass
    assert limited.value.retry_after == 3.0
    with pytest.raises(MalformedResponse):
        await conn.post_limited("/chat/completions", CHAT, backend="h", limit=10)
    await conn.aclose()


async def test_stream_sse_yields_event_payloads(provider: FakeOpenAIProvider) -> None:
    conn = connect(provider)
    async with conn.stream_sse("/chat/completions", {**CHAT, "stream": True}, backend="h") as ev:
        payloads = [p async for p in ev]
    assert payloads and all(p.startswith("{") for p in payloads)
    await conn.aclose()
