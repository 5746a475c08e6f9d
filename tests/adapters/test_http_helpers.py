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


@pytest.mark.parametrize(
    "body",
    [
        CHAT,
        {"messages": [{"role": "user", "content": 'é € \U0001f600 \u2028 "q" \\ \x00'}]},
        {"temperature": 0.1, "top_p": 1e-7, "max_tokens": 2**40, "stop": ["\n"], "x": [1.5, True]},
        {"seed": None, "n": float("nan")},  # NaN: json's spelling, as before
        {"big": 2**70},  # past 64 bits: orjson refuses, json writes it
        {"lone": "\ud800"},  # a lone surrogate: json escapes it
        {"t": (1, 2), "content": None},
        {"when": __import__("datetime").datetime(2026, 1, 1)},  # json refuses it: still refused
    ],
)
def test_request_bodies_mean_what_json_dumps_means(body: dict[str, object]) -> None:
    """Request bodies go out as orjson's bytes where they read back to json.dumps's values,
    else as json.dumps's own bytes (NaN spelled NaN, big integers, lone surrogates)."""
    import json

    from intentmesh.adapters._http import dumps_json

    try:
        want = json.dumps(body)
    except TypeError:
        with pytest.raises(TypeError):
            dumps_json(body)
        return
    sent = dumps_json(body)
    if "NaN" in want or "null" in want or "\\ud800" in want or str(2**70) in want:
        assert sent == want.encode()
    else:
        assert json.loads(sent) == json.loads(want)


def test_plain_request_bodies_take_orjson_when_installed() -> None:
    orjson = pytest.importorskip("orjson")
    from intentmesh.adapters._http import dumps_json

    assert dumps_json(CHAT) == orjson.dumps(CHAT)


def test_uuids_and_plain_enums_go_out_as_text_and_value_with_orjson() -> None:
    """The documented difference from json.dumps, which refused both."""
    import enum
    import json
    import uuid

    pytest.importorskip("orjson")
    from intentmesh.adapters._http import dumps_json

    class Colour(enum.Enum):
        RED = "red"

    sent = dumps_json({"id": uuid.UUID(int=1), "c": Colour.RED})
    assert json.loads(sent) == {"id": "00000000-0000-0000-0000-000000000001", "c": "red"}
