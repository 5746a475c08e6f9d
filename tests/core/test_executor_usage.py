"""Usage honesty, reading limits and malformed events (issue 12, items 8 and 11-14)."""

from __future__ import annotations

import pytest
from core_support import MODEL, GatewayFactory

from intentmesh import Intent, NoRouteError
from intentmesh.router import max_answer_chars
from intentmesh.testing import FakeOpenAIProvider, Fault


def intent(**kw: object) -> Intent:
    base: dict[str, object] = {"model": MODEL, "prompt": "hello there", "max_tokens": 16}
    base.update(kw)
    return Intent(**base)


def worst_case(gw: object, i: Intent) -> float:
    return gw.plan(i).candidates[0].worst_case_cost_usd  # type: ignore[attr-defined]


# -- 8. one malformed SSE event -----------------------------------------------------------------


def test_one_malformed_event_is_skipped_and_counted(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.malformed_json(after_chunks=2))
    run = make_gateway().stream(intent())
    text = "".join(c.text for c in run)
    res = run.result
    assert res is not None and res.backend == "cheap" and text == "echo: hello there"
    assert "malformed_events" in res.flags
    assert res.receipt is not None and res.receipt["malformed_events"] == 1


def test_a_stream_of_nothing_but_garbage_still_fails(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.garbage_stream())
    run = make_gateway().stream(intent())
    list(run)
    assert run.result is not None and run.result.backend == "mid"
    assert run.result.attempts[0].error_kind == "malformed_response"


# -- 11. read no more than was paid for -----------------------------------------------------------


def test_runaway_stream_is_cut_at_max_tokens_and_not_overcharged(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.runaway(chars=1_000_000))
    gw = make_gateway()
    i = intent(max_tokens=64)
    cap = worst_case(gw, i)
    run = gw.stream(i)
    text = "".join(c.text for c in run)
    res = run.result
    assert res is not None and res.backend == "cheap"
    assert len(text) == len(res.text) == max_answer_chars(64)
    assert res.finish_reason == "length"
    assert "answer_cut_at_max_tokens" in res.flags
    assert res.cost_usd <= cap * (1 + 1e-9)


def test_runaway_body_is_not_read_whole(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.runaway(chars=1_000_000))
    res = make_gateway().infer(intent(max_tokens=64))
    assert res.backend == "mid"
    first = res.attempts[0]
    assert first.error_kind == "malformed_response" and "max_tokens" in (first.error or "")


# -- 12. estimated usage honours max_tokens and finish_reason="length" --------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_estimate_of_an_answer_stopped_at_the_limit_is_max_tokens(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider], stream: bool
) -> None:
    providers["cheap"].fill = True  # repeat the reply past max_tokens: ends by "length"
    providers["cheap"].fail_next(1, Fault.usage(None))
    gw = make_gateway()
    i = intent(max_tokens=8, prompt="many words " * 40)
    if stream:
        run = gw.stream(i)
        list(run)
        res = run.result
    else:
        res = gw.infer(i)
    assert res is not None and res.finish_reason == "length"
    assert res.usage.estimated and res.usage.completion_tokens == 8
    assert "usage_estimated" in res.flags
    assert not {"usage_exceeds_max_tokens", "usage_exceeds_quote", "cost_exceeds_quote"} & set(
        res.flags
    )
    assert gw.health.penalty("cheap") == 0


# -- 13. empty, zero or missing usage -------------------------------------------------------------


@pytest.mark.parametrize(
    "reported",
    [{}, {"prompt_tokens": 0, "completion_tokens": 0}, {"prompt_tokens": 5}],
)
def test_empty_or_zero_usage_is_estimated_and_flagged(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider], reported: dict
) -> None:
    providers["cheap"].fail_next(1, Fault.usage(reported))
    res = make_gateway().infer(intent())
    assert res.text == "echo: hello there"
    assert res.usage.estimated and res.usage.completion_tokens > 0
    assert res.cost_usd > 0
    assert "usage_estimated" in res.flags
    assert res.receipt is not None and res.receipt["usage"]["estimated"] is True


# -- 14. under- and over-reporting ----------------------------------------------------------------


def test_underreported_usage_is_flagged(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.usage({"prompt_tokens": 40, "completion_tokens": 1}))
    gw = make_gateway()
    res = gw.infer(intent(prompt="a long enough question " * 8, max_tokens=64))
    assert "usage_underreported" in res.flags
    assert gw.health.penalty("cheap") > 0


def test_overreported_usage_is_capped_recorded_and_quarantined(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.wrong_usage(factor=100))
    gw = make_gateway()
    i = intent()
    cap = worst_case(gw, i)
    res = gw.infer(i)
    assert {"usage_exceeds_quote", "usage_exceeds_max_tokens"} <= set(res.flags)
    assert res.cost_usd <= cap * (1 + 1e-9)
    assert res.usage.completion_tokens <= i.max_tokens
    receipt = res.receipt
    assert receipt is not None
    assert receipt["usage_claimed"]["completion_tokens"] > i.max_tokens
    assert receipt["overcharge_usd"] > 0
    assert receipt["cost_usd"] == pytest.approx(res.cost_usd)
    assert gw.health.breaker("cheap").state == "open"
    with pytest.raises(NoRouteError):
        gw.infer(intent(networks=["cheap"]))
    assert gw.infer(i).backend == "mid"
