"""Streams: failover before the first token, a typed error after it, usage at the end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from core_support import MODEL, GatewayFactory, backend_toml

from intentmesh import Gateway, Intent, MidStreamError
from intentmesh.config import parse_config
from intentmesh.testing import FakeOpenAIProvider, FakeRequest, FakeResponse, Fault, LoopbackServer


def intent(**kw: object) -> Intent:
    base: dict[str, object] = {
        "model": MODEL,
        "prompt": "one two three four five six",
        "max_tokens": 32,
    }
    base.update(kw)
    return Intent(**base)


def test_sync_stream_yields_tokens_then_result(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    stream = gw.stream(intent())
    pieces = [c.text for c in stream]
    assert stream.result is not None
    assert "".join(pieces) == stream.result.text
    assert len([p for p in pieces if p]) > 3
    assert stream.result.usage.completion_tokens > 0 and not stream.result.usage.estimated
    assert stream.result.receipt is not None
    assert stream.result.ttft_ms is not None


async def test_async_stream_matches_non_stream(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    stream = gw.astream(intent())
    text = "".join([c.text async for c in stream])
    whole = await gw.ainfer(intent())
    assert text == whole.text
    assert stream.result is not None and stream.result.cost_usd == pytest.approx(whole.cost_usd)
    await gw.aclose()


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(503),
        Fault.rate_limit(retry_after=30),
        Fault.refuse(),
        Fault.in_stream_error(after_chunks=0),
    ],
)
def test_failover_before_first_token(
    fault: Fault, make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(fault)
    stream = make_gateway().stream(intent())
    text = "".join(c.text for c in stream)
    assert stream.result is not None and stream.result.backend == "mid"
    assert text.startswith("echo")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.reset_mid_stream(after_chunks=3),
        Fault.truncated_stream(after_chunks=3),
        Fault.in_stream_error(after_chunks=3),
    ],
)
def test_failure_after_first_token_raises_typed_error(
    fault: Fault, make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(fault)
    stream = make_gateway().stream(intent())
    delivered: list[str] = []
    with pytest.raises(MidStreamError) as info:
        for chunk in stream:
            delivered.append(chunk.text)
    assert info.value.delivered == "".join(delivered)
    assert info.value.delivered  # something was delivered, and it is never repeated
    assert info.value.backend == "cheap"
    assert providers["mid"].calls["/v1/chat/completions"] == 0
    assert info.value.attempts[-1].outcome == "error"


def test_usage_counted_when_backend_omits_it(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(per_backend={"cheap": {"extra": "include_usage = false"}})
    stream = gw.stream(intent())
    text = "".join(c.text for c in stream)
    assert stream.result is not None
    assert stream.result.usage.estimated
    assert stream.result.usage.completion_tokens >= len(text) // 4
    assert "usage_estimated" in stream.result.flags


def test_hedged_stream_first_token_wins(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.latency(1500))
    stream = make_gateway().stream(intent(hedge=100))
    "".join(c.text for c in stream)
    assert stream.result is not None and stream.result.backend == "mid"
    outcomes = {a.backend: a.outcome for a in stream.result.attempts}
    assert outcomes == {"cheap": "cancelled", "mid": "ok"}


def test_stream_closed_after_finish_without_done_is_complete(tmp_path: Path) -> None:
    """Some servers end the body after the finish chunk and never send [DONE]."""
    events = [{"choices": [{"index": 0, "delta": {"content": w}}]} for w in ("no ", "done")]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})

    async def handler(request: FakeRequest) -> FakeResponse:
        async def body() -> AsyncIterator[bytes]:
            for event in events:
                yield f"data: {json.dumps(event)}\n\n".encode()

        return FakeResponse.streaming(body(), headers={"content-type": "text/event-stream"})

    with LoopbackServer(handler) as server:
        config = parse_config(
            f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
            + backend_toml("plain", server.base_url, input_price=0.1, output_price=0.1)
        )
        with Gateway(config) as gw:
            stream = gw.stream(intent())
            text = "".join(c.text for c in stream)
    assert text == "no done"
    assert stream.result is not None and stream.result.finish_reason == "stop"
    assert stream.result.usage.estimated
