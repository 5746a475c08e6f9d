"""Time limits and failover order (issue 12, items 1-7 and 9) against loopback providers.

No timing assertions: each test checks which attempt ended how and why; a limit that did not
fire would leave the fault's backend serving (or the test waiting far past its fault).
"""

from __future__ import annotations

import pytest
from core_support import MODEL, GatewayFactory

from intentmesh import Intent, InvalidRequest, MidStreamError, NoRouteError
from intentmesh.testing import FakeOpenAIProvider, Fault
from intentmesh.testing._faults import error_body


def intent(**kw: object) -> Intent:
    base: dict[str, object] = {"model": MODEL, "prompt": "hello there", "max_tokens": 16}
    base.update(kw)
    return Intent(**base)


def first(result_or_error: object) -> tuple[str, str, str]:
    a = result_or_error.attempts[0]  # type: ignore[attr-defined]
    return a.backend, a.error_kind or "", a.error or ""


# -- 1. timeout_s is a ceiling on a whole attempt -------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_trickling_upstream_cannot_hold_an_attempt(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider], stream: bool
) -> None:
    providers["cheap"].always(Fault.trickle(interval_ms=250))  # ~75 s for the whole body
    gw = make_gateway(per_backend={"cheap": {"timeout_s": 1}})
    if stream:
        run = gw.stream(intent())
        text = "".join(c.text for c in run)
        res = run.result
        assert res is not None and text == res.text
    else:
        res = gw.infer(intent())
    assert res.backend == "mid"
    backend, kind, error = first(res)
    assert (backend, kind) == ("cheap", "timeout") and "timeout_s" in error


# -- 2. first-token deadline ------------------------------------------------------------------


def test_max_ttft_ms_abandons_a_slow_first_token(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.latency(60_000))
    run = make_gateway().stream(intent(max_ttft_ms=300))
    chunks = [c.text for c in run]
    assert run.result is not None and run.result.backend == "mid"
    assert "".join(chunks) == "echo: hello there"
    backend, kind, error = first(run.result)
    assert (backend, kind) == ("cheap", "timeout") and "max_ttft_ms" in error


def test_first_token_timeout_s_is_the_backend_default(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.latency(60_000))
    gw = make_gateway(per_backend={"cheap": {"extra": "first_token_timeout_s = 0.3"}})
    res = gw.infer(intent())
    assert res.backend == "mid"
    assert "first_token_timeout_s" in first(res)[2]


# -- 3. stall deadline ------------------------------------------------------------------------


def test_stall_ms_ends_a_silent_stream_as_midstream_failure(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.stall(after_chunks=2))  # role + one word, then silence
    with pytest.raises(MidStreamError) as info:
        for _ in make_gateway().stream(intent(stall_ms=300)):
            pass
    assert info.value.delivered == "echo:"
    assert info.value.backend == "cheap"
    assert "stall_ms" in str(info.value.cause)


def test_stall_timeout_s_is_the_backend_default(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.stall(after_chunks=2))
    gw = make_gateway(per_backend={"cheap": {"extra": "stall_timeout_s = 0.3"}})
    with pytest.raises(MidStreamError) as info:
        list(gw.stream(intent()))
    assert "stall_timeout_s" in str(info.value.cause)


# -- 4. a deadline alone is shared between candidates ----------------------------------------


def test_silent_backend_does_not_eat_the_whole_deadline(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.hang())
    gw = make_gateway(per_backend={"cheap": {"timeout_s": 600}, "mid": {"timeout_s": 600}})
    res = gw.infer(intent(max_latency_ms=3000, networks=["cheap", "mid"]))
    assert res.backend == "mid"
    backend, kind, error = first(res)
    assert (backend, kind) == ("cheap", "timeout") and "deadline share" in error


# -- 5. fail over first -----------------------------------------------------------------------


def test_refused_connection_fails_over_without_retrying(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    gw = make_gateway(per_backend={"cheap": {"retries": 3}})
    providers["cheap"].stop()
    res = gw.infer(intent())
    assert [(a.backend, a.outcome) for a in res.attempts] == [("cheap", "error"), ("mid", "ok")]


def test_last_candidate_is_retried_when_no_alternative_remains(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.status(503))
    providers["mid"].fail_next(1, Fault.status(503))
    res = make_gateway().infer(intent(networks=["cheap", "mid"]))
    assert res.backend == "mid"
    assert [(a.backend, a.retry) for a in res.attempts] == [("cheap", 0), ("mid", 0), ("mid", 1)]


# -- 6. hedging never removes failover --------------------------------------------------------


def test_hedge_that_cannot_start_keeps_the_backend_for_failover(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].latency_ms = 300
    providers["cheap"].always(Fault.status(503))
    gw = make_gateway(per_backend={"cheap": {"retries": 0}})
    plan = gw.plan(intent())
    cheap, mid = plan.candidates[0], plan.candidates[1]
    cap = mid.worst_case_cost_usd * 1.05  # one at a time only
    assert cheap.worst_case_cost_usd + mid.worst_case_cost_usd > cap
    res = gw.infer(intent(hedge=100, max_price_usd=cap))
    assert res.backend == "mid"
    assert [(a.backend, a.outcome) for a in res.attempts] == [("cheap", "error"), ("mid", "ok")]


# -- 7. context length exceeded ----------------------------------------------------------------

_TOO_LONG = error_body(
    "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
    400,
)


def test_context_length_fails_over_to_a_larger_window(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.status(400, _TOO_LONG))
    gw = make_gateway(
        per_backend={
            "cheap": {"context_length": 8192},
            "mid": {"context_length": 8192},
            "pricey": {"context_length": 131072},
        }
    )
    res = gw.infer(intent())
    assert res.backend == "pricey"
    assert [a.backend for a in res.attempts] == ["cheap", "pricey"]
    assert providers["mid"].calls["/v1/chat/completions"] == 0


def test_context_length_without_a_larger_window_names_the_limit(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.status(400, _TOO_LONG))
    gw = make_gateway(per_backend={n: {"context_length": 8192} for n in providers})
    with pytest.raises(InvalidRequest, match="8192 tokens") as info:
        gw.infer(intent())
    assert "shorten the prompt or lower max_tokens" in str(info.value)
    assert providers["mid"].calls["/v1/chat/completions"] == 0


def test_content_filter_refusal_stays_a_clean_error(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    body = error_body("The response was filtered due to the content management policy", 400)
    providers["cheap"].always(Fault.status(400, body))
    gw = make_gateway(per_backend={n: {"context_length": 131072} for n in providers})
    with pytest.raises(InvalidRequest, match="content management policy"):
        gw.infer(intent())
    assert providers["mid"].calls["/v1/chat/completions"] == 0


# -- 9. mid-stream failures count toward the breaker -----------------------------------------


def test_midstream_breaks_count_toward_the_circuit_breaker(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.reset_mid_stream(after_chunks=2))
    gw = make_gateway(routing="backoff_s = 0.01\nfailure_threshold = 20\n")
    for _ in range(8):
        with pytest.raises(MidStreamError):
            list(gw.stream(intent(networks=["cheap"])))
    assert gw.health.breaker("cheap").consecutive_failures == 8


def test_midstream_breaks_open_the_circuit(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.reset_mid_stream(after_chunks=2))
    gw = make_gateway(routing="backoff_s = 0.01\nfailure_threshold = 3\n")
    for _ in range(3):
        with pytest.raises(MidStreamError):
            list(gw.stream(intent(networks=["cheap"])))
    with pytest.raises(NoRouteError):
        list(gw.stream(intent(networks=["cheap"])))
    assert gw.health.breaker("cheap").state == "open"


# -- 10. mid-stream continuation ---------------------------------------------------------------


def test_continue_splices_the_next_backend_without_duplicates(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.reset_mid_stream(after_chunks=3))
    gw = make_gateway()
    prompt = "one two three four five six"
    run = gw.stream(intent(prompt=prompt, on_midstream="continue"))
    pieces = [c.text for c in run]
    res = run.result
    assert res is not None
    assert "".join(pieces) == res.text == f"echo: {prompt}"
    assert [(a.backend, a.outcome) for a in res.attempts] == [("cheap", "error"), ("mid", "ok")]
    # The splice is where the broken stream stopped delivering: usually after "echo: one" (3
    # events), earlier if the client's kernel dropped unread bytes when the RST came.
    receipt = res.receipt
    assert receipt is not None
    at = receipt["continuation"]["splice_at_chars"]
    assert 0 < at < len(res.text)
    sent = providers["mid"].requests[-1].json()
    assert sent["continue_final_message"] is True
    assert sent["messages"][-1] == {"role": "assistant", "content": res.text[:at]}
    assert receipt["continuation"]["from_backend"] == "cheap"
    assert receipt["attempts"][1]["continues"] == {"backend": "cheap", "at_chars": at}
    assert res.cost_usd == pytest.approx(sum(a.cost_usd for a in res.attempts))
    assert res.attempts[0].cost_usd > 0  # the broken attempt's delivered tokens are paid for


def test_continue_with_no_candidate_left_raises_midstream_error(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.reset_mid_stream(after_chunks=3))
    with pytest.raises(MidStreamError) as info:
        list(make_gateway().stream(intent(networks=["cheap"], on_midstream="continue")))
    delivered = info.value.delivered  # all 3 events, unless the RST beat the client's reads
    assert delivered and "echo: hello".startswith(delivered)


def test_on_midstream_error_is_the_default(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.reset_mid_stream(after_chunks=3))
    with pytest.raises(MidStreamError):
        list(make_gateway().stream(intent()))
    assert providers["mid"].calls["/v1/chat/completions"] == 0
