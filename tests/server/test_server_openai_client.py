"""The official ``openai`` client, sync and async, against a live gateway on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from server_support import MODEL

from intentmesh import Gateway
from intentmesh.server import ThreadedServer

MESSAGES: list[Any] = [{"role": "user", "content": "hello gateway"}]


@pytest.fixture
def api(server: ThreadedServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=10) as c:
        yield c


def aclient(server: ThreadedServer, key: str = "unused") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=10)


def test_sync_chat_has_openai_shape_intentmesh_object_and_headers(
    api: openai.OpenAI, server: ThreadedServer, gateway: Gateway
) -> None:
    raw = api.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    res = raw.parse()
    assert res.choices[0].message.content == "echo: hello gateway"
    assert res.choices[0].finish_reason == "stop"
    assert res.usage is not None and res.usage.total_tokens > 0
    info = res.model_extra["intentmesh"] if res.model_extra else {}
    assert info["backend"] == "chutes"  # cheapest by default
    assert info["network"] == "bittensor"
    assert info["attempts"] == 1
    assert raw.headers["x-intentmesh-backend"] == "chutes"
    assert raw.headers["x-intentmesh-network"] == "bittensor"
    assert raw.headers["x-intentmesh-attempts"] == "1"
    assert float(raw.headers["x-intentmesh-cost-usd"]) == pytest.approx(info["cost_usd"])
    receipt_id = raw.headers["x-intentmesh-receipt-id"]
    assert receipt_id == info["receipt_id"]
    assert gateway.ledger.get(receipt_id) is not None


def test_sync_stream_with_usage_chunk(api: openai.OpenAI) -> None:
    stream = api.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hello gateway"
    assert chunks[0].choices[0].delta.role == "assistant"
    closing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in closing] == ["stop"]
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert usage.usage.completion_tokens > 0
    info = (usage.model_extra or {})["intentmesh"]
    assert info["backend"] == "chutes" and info["receipt_id"].startswith("rcpt_")


def test_stream_without_include_usage_has_no_usage_chunk(api: openai.OpenAI) -> None:
    chunks = list(api.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert (chunks[-1].model_extra or {})["intentmesh"]["cost_usd"] > 0


async def test_async_chat_and_stream(server: ThreadedServer) -> None:
    async with aclient(server) as api:
        res = await api.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert res.choices[0].message.content == "echo: hello gateway"
        stream = await api.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts) == "echo: hello gateway"


@pytest.mark.parametrize(
    ("model", "intent", "backend"),
    [
        (MODEL, {"networks": ["akash"]}, "akash"),
        (MODEL, {"exclude": ["bittensor"]}, "akash"),
        (MODEL + ":fastest", None, "ionet"),
        (MODEL + ":cheapest", None, "chutes"),
        (MODEL + ":fastest", {"optimize": "cost"}, "chutes"),  # the intent object wins
    ],
)
def test_intent_in_extra_body_and_presets_route(
    api: openai.OpenAI,
    server: ThreadedServer,
    model: str,
    intent: dict[str, Any] | None,
    backend: str,
) -> None:
    extra = {"intent": intent} if intent else None
    res = api.chat.completions.create(model=model, messages=MESSAGES, extra_body=extra)
    assert (res.model_extra or {})["intentmesh"]["backend"] == backend


def test_legacy_completions(api: openai.OpenAI) -> None:
    res = api.completions.create(model=MODEL, prompt="say hi", max_tokens=16)
    assert res.choices[0].text == "echo: say hi"
    assert res.object == "text_completion"
    parts = [
        c.choices[0].text for c in api.completions.create(model=MODEL, prompt="x", stream=True)
    ]
    assert "".join(parts) == "echo: x"


def test_models_lists_served_catalog_models(api: openai.OpenAI) -> None:
    models = api.models.list().data
    assert [m.id for m in models] == [MODEL]
    extra = models[0].model_extra or {}
    assert extra["intentmesh"]["backends"] == ["akash", "chutes", "ionet"]


# -- errors, raised as the openai client defines them ---------------------------------------


def test_bad_intent_is_400_naming_the_field(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"intent": {"max_price_usd": -1}}
        )
    assert info.value.status_code == 400
    assert info.value.param == "intent.max_price_usd"
    assert info.value.code == "invalid_intent"


def test_bad_top_level_field_is_400_naming_it(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model=MODEL, messages=[])
    assert info.value.param == "messages"


def test_unknown_intent_field_is_400(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"intent": {"colour": "blue"}}
        )
    assert info.value.param == "intent.colour"


def test_price_cap_no_backend_meets_is_402_with_cheapest_quote(api: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"intent": {"max_price_usd": 1e-9}}
        )
    assert info.value.status_code == 402
    assert info.value.code == "price_cap_unmet"
    assert "cheapest quote is $" in info.value.message
    assert "on chutes" in info.value.message


def test_price_cap_is_402_for_streams_too(api: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            extra_body={"intent": {"max_price_usd": 1e-9}},
        )
    assert info.value.status_code == 402


def test_unknown_model_is_404(api: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        api.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


def test_max_tokens_over_the_limit_is_400(api: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        api.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10**6)
    assert info.value.param == "max_tokens"


def test_every_backend_rate_limited_is_429_with_retry_after(
    api: openai.OpenAI, server: ThreadedServer, demo: Any
) -> None:
    from intentmesh.testing import Fault

    for provider in demo.providers.values():
        provider.always(Fault.rate_limit(retry_after=0.01))
    with pytest.raises(openai.RateLimitError) as info:
        api.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"]


def test_every_backend_down_is_503(api: openai.OpenAI, demo: Any) -> None:
    from intentmesh.testing import Fault

    for provider in demo.providers.values():
        provider.always(Fault.status(503))
    with pytest.raises(openai.InternalServerError) as info:
        api.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert info.value.status_code == 503


def test_deadline_is_504(api: openai.OpenAI, demo: Any) -> None:
    from intentmesh.testing import Fault

    for provider in demo.providers.values():
        provider.always(Fault.hang())
    with pytest.raises(openai.InternalServerError) as info:
        api.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"intent": {"max_latency_ms": 300}}
        )
    assert info.value.status_code == 504
    assert info.value.code == "deadline_exceeded"


def test_failover_is_invisible_but_counted(api: openai.OpenAI, demo: Any) -> None:
    from intentmesh.testing import Fault

    demo.providers["chutes"].always(Fault.status(503))
    raw = api.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.headers["x-intentmesh-backend"] == "akash"
    assert int(raw.headers["x-intentmesh-attempts"]) > 1


def test_mid_stream_failure_ends_the_stream_with_an_error_event(
    api: openai.OpenAI, server: ThreadedServer, demo: Any
) -> None:
    from intentmesh.testing import Fault

    demo.providers["chutes"].always(Fault.reset_mid_stream(after_chunks=3))
    stream = api.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three four five"}], stream=True
    )
    got: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            got.append(chunk.choices[0].delta.content or "")
    assert got and "not repeated" in info.value.message
