"""The executor end to end through Gateway against loopback providers."""

from __future__ import annotations

import asyncio
import time

import pytest
from core_support import MODEL, GatewayFactory

from intentmesh import (
    AllBackendsFailed,
    DeadlineExceeded,
    Intent,
    InvalidRequest,
    NoRouteError,
    verify_receipt,
)
from intentmesh.testing import FakeOpenAIProvider, Fault


def intent(**kw: object) -> Intent:
    base: dict[str, object] = {"model": MODEL, "prompt": "hello there", "max_tokens": 16}
    base.update(kw)
    return Intent(**base)


def outcomes(result_or_error: object) -> list[tuple[str, str, str | None]]:
    attempts = result_or_error.attempts
    return [(a.backend, a.outcome, a.error_kind) for a in attempts]


def test_cheapest_backend_serves_with_receipt(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    res = gw.infer(intent())
    assert res.backend == "cheap"
    assert res.text.startswith("echo")
    assert res.model == MODEL and res.provider_model == "fake-llama"
    assert res.usage.prompt_tokens > 0 and not res.usage.estimated
    expected = (res.usage.prompt_tokens * 0.1 + res.usage.completion_tokens * 0.2) / 1e6
    assert res.cost_usd == pytest.approx(expected)
    assert res.receipt is not None
    assert verify_receipt(res.receipt, gw.signing_key.public_key_bytes())
    assert verify_receipt(res.receipt.to_json(), gw.public_key)
    other = make_gateway().signing_key  # same key file: same key
    assert other.public_key_hex() == gw.public_key
    assert res.receipt["backend"] == "cheap"
    assert gw.verify_ledger()


def test_alias_resolves_to_canonical(make_gateway: GatewayFactory) -> None:
    res = make_gateway().infer(intent(model="meta-llama/Llama-3.1-8B-Instruct"))
    assert res.model == MODEL


def test_failover_on_5xx_first_when_an_alternative_exists(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.status(503))
    res = make_gateway().infer(intent())
    assert res.backend == "mid"
    assert outcomes(res) == [("cheap", "error", "unavailable"), ("mid", "ok", None)]
    assert providers["cheap"].calls["/v1/chat/completions"] == 1


def test_retry_recovers_on_same_backend_when_it_is_the_only_one(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.status(500))
    res = make_gateway().infer(intent(networks=["cheap"]))
    assert res.backend == "cheap"
    assert [a.retry for a in res.attempts] == [0, 1]


def test_short_retry_after_retries_same_backend_despite_alternatives(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.status(503, headers={"retry-after": "0"}))
    res = make_gateway().infer(intent())
    assert res.backend == "cheap"
    assert [(a.backend, a.retry) for a in res.attempts] == [("cheap", 0), ("cheap", 1)]


def test_rate_limit_honours_retry_after(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.rate_limit(retry_after=0.3))
    started = time.perf_counter()
    res = make_gateway().infer(intent())
    assert res.backend == "cheap"
    assert time.perf_counter() - started >= 0.3
    assert outcomes(res)[0] == ("cheap", "error", "rate_limited")


def test_long_retry_after_fails_over_instead_of_waiting(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.rate_limit(retry_after=60))
    started = time.perf_counter()
    res = make_gateway().infer(intent())
    assert res.backend == "mid"
    assert time.perf_counter() - started < 5


@pytest.mark.parametrize("code", [401, 402, 403])
def test_auth_and_payment_fail_over_and_open_circuit(
    code: int, make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.status(code))
    gw = make_gateway()
    res = gw.infer(intent())
    assert res.backend == "mid"
    assert len([a for a in res.attempts if a.backend == "cheap"]) == 1  # not retried
    assert gw.health.breaker("cheap").state == "open"
    assert gw.plan(intent()).rejected["cheap"].reason == "circuit_open"


def test_model_gone_is_marked_and_skipped(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.status(404))
    gw = make_gateway()
    assert gw.infer(intent()).backend == "mid"
    assert gw.plan(intent()).rejected["cheap"].reason == "model_gone"


@pytest.mark.parametrize("code", [400, 422])
def test_caller_error_is_raised_without_failover(
    code: int, make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.status(code))
    with pytest.raises(InvalidRequest) as info:
        make_gateway().infer(intent())
    assert info.value.status_code == code
    assert providers["mid"].calls["/v1/chat/completions"] == 0


def test_malformed_response_fails_over(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.malformed_json())
    res = make_gateway().infer(intent())
    assert res.backend == "mid"
    assert outcomes(res)[0][2] == "malformed_response"


def test_connection_refused_fails_over(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    gw = make_gateway()
    providers["cheap"].stop()
    res = gw.infer(intent())
    assert res.backend == "mid"
    assert outcomes(res)[0][2] == "connection"


def test_all_failed_lists_every_attempt(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    for p in providers.values():
        p.always(Fault.status(503))
    with pytest.raises(AllBackendsFailed) as info:
        make_gateway().infer(intent())
    assert {a.backend for a in info.value.attempts} == {"cheap", "mid", "pricey"}
    assert "all 3 backend(s) failed" in str(info.value)


def test_deadline_holds_across_attempts(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    for p in providers.values():
        p.always(Fault.hang())
    gw = make_gateway(per_backend={n: {"latency_ms": 100} for n in providers})
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded) as info:
        gw.infer(intent(max_latency_ms=400))
    elapsed = time.perf_counter() - started
    assert 0.35 < elapsed < 2.0
    # Each silent backend got its share of the deadline, then the next one was tried.
    attempts = info.value.attempts
    assert [a.backend for a in attempts] == ["cheap", "mid", "pricey"]
    assert attempts[0].error_kind == "timeout" and "deadline share" in (attempts[0].error or "")
    assert attempts[-1].outcome == "cancelled"


def test_price_cap_holds_under_retries(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    """Connection resets may be billed: the cap leaves room for one try only."""
    providers["cheap"].always(Fault.refuse())
    gw = make_gateway()
    plan = gw.plan(intent())
    cheap = plan.candidates[0]
    cap = cheap.worst_case_cost_usd * 1.5  # one worst case fits, two do not
    with pytest.raises((AllBackendsFailed, NoRouteError)) as info:
        gw.infer(intent(max_price_usd=cap))
    attempts = getattr(info.value, "attempts", [])
    assert sum(a.cost_usd for a in attempts) <= cap
    assert all(a.backend == "cheap" for a in attempts if a.outcome != "skipped")


def test_no_route_lists_every_backend(make_gateway: GatewayFactory) -> None:
    with pytest.raises(NoRouteError) as info:
        make_gateway().infer(intent(max_price_usd=1e-9))
    text = str(info.value)
    for name in ("cheap", "mid", "pricey"):
        assert f"{name}: worst case" in text
    assert {r.reason for r in info.value.rejections} == {"over_price_cap"}


def test_unknown_model_suggests_close_match(make_gateway: GatewayFactory) -> None:
    with pytest.raises(NoRouteError, match="did you mean 'llama-3.1-8b-instruct'"):
        make_gateway().infer(intent(model="llama-3.1-8b-instruc"))


def test_hedge_starts_backup_when_first_is_slow(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.latency(1500))
    started = time.perf_counter()
    res = make_gateway().infer(intent(hedge=100))
    assert time.perf_counter() - started < 1.2
    assert res.backend == "mid"
    by_backend = {a.backend: a for a in res.attempts}
    assert by_backend["mid"].hedge and by_backend["mid"].outcome == "ok"
    assert by_backend["cheap"].outcome == "cancelled"


def test_no_hedge_when_first_is_fast(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    res = make_gateway().infer(intent(hedge=1000))
    assert [a.backend for a in res.attempts] == ["cheap"]
    assert providers["mid"].calls["/v1/chat/completions"] == 0


def test_hedge_respects_price_cap(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].always(Fault.latency(600))
    gw = make_gateway()
    plan = gw.plan(intent())
    cheap, mid = plan.candidates[0], plan.candidates[1]
    cap = cheap.worst_case_cost_usd + mid.worst_case_cost_usd * 0.5  # no room for both at once
    res = gw.infer(intent(hedge=50, max_price_usd=cap))
    assert res.backend == "cheap"
    assert providers["mid"].calls["/v1/chat/completions"] == 0


def test_lying_backend_is_flagged_and_penalised(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.wrong_model("some-other-model"))
    gw = make_gateway()
    res = gw.infer(intent())
    assert "model_mismatch" in res.flags
    assert res.receipt is not None and "model_mismatch" in res.receipt["flags"]
    assert gw.health.penalty("cheap") > 0


def test_inflated_usage_is_flagged(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    providers["cheap"].fail_next(1, Fault.wrong_usage(factor=100))
    res = make_gateway().infer(intent())
    assert "usage_exceeds_max_tokens" in res.flags


def test_verifiability_none_skips_receipt(make_gateway: GatewayFactory) -> None:
    res = make_gateway().infer(intent(verifiability="none"))
    assert res.receipt is None


def test_cache_hit_is_free_and_receipted(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    gw = make_gateway()
    first = gw.infer(intent(seed=7, cache=True))
    second = gw.infer(intent(seed=7, cache=True))
    assert providers["cheap"].calls["/v1/chat/completions"] == 1
    assert second.cached and second.cost_usd == 0 and second.text == first.text
    assert second.receipt is not None and second.receipt["cached"] is True
    assert second.receipt.id != first.receipt.id  # type: ignore[union-attr]
    gw.infer(intent(seed=None, cache=True))  # not deterministic: never cached
    assert providers["cheap"].calls["/v1/chat/completions"] == 2


async def test_async_and_sync_inside_running_loop(make_gateway: GatewayFactory) -> None:
    gw = make_gateway()
    res = await gw.ainfer(intent())
    assert res.backend == "cheap"
    sync_res = gw.infer(intent())  # sync API from a thread whose loop is running
    assert sync_res.text == res.text
    results = await asyncio.gather(*(gw.ainfer(intent(prompt=f"n {i}")) for i in range(20)))
    assert [r.text for r in results] == [f"echo: n {i}" for i in range(20)]
    await gw.aclose()


def test_receipts_chain_and_detect_tampering(make_gateway: GatewayFactory) -> None:
    import sqlite3

    gw = make_gateway()
    receipts = [gw.infer(intent(prompt=f"q{i}")).receipt for i in range(3)]
    assert receipts[1]["prev_hash"] == receipts[0].hash  # type: ignore[index,union-attr]
    assert gw.verify_ledger()
    path = gw.config.receipts.ledger
    assert path is not None
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER receipts_no_update")  # an attacker with the file can do this
        body = db.execute("SELECT body FROM receipts WHERE seq = 2").fetchone()[0]
        db.execute(
            "UPDATE receipts SET body = ? WHERE seq = 2",
            (body.replace('"backend":"cheap"', '"backend":"pricey"'),),
        )
    report = gw.verify_ledger()
    assert not report
    assert report.first_bad_id == receipts[1].id  # type: ignore[union-attr]


def test_api_key_never_in_receipt(
    make_gateway: GatewayFactory,
    monkeypatch: pytest.MonkeyPatch,
    providers: dict[str, FakeOpenAIProvider],
) -> None:
    monkeypatch.setenv("CHEAP_KEY", "sk-very-secret-value")
    providers["cheap"].api_key = "sk-very-secret-value"
    gw = make_gateway(per_backend={"cheap": {"extra": 'api_key_env = "CHEAP_KEY"'}})
    res = gw.infer(intent())
    assert res.backend == "cheap"
    assert res.receipt is not None
    assert "sk-very-secret-value" not in res.receipt.to_json()


def test_error_object_with_status_200_is_classified(
    make_gateway: GatewayFactory, providers: dict[str, FakeOpenAIProvider]
) -> None:
    body = {"error": {"message": "overloaded", "type": "server_error", "code": 503}}
    providers["cheap"].fail_next(1, Fault.status(200, body=body))
    res = make_gateway().infer(intent())
    assert outcomes(res)[0] == ("cheap", "error", "unavailable")
    assert res.backend == "mid"  # 503 is transient: failed over first, an alternative exists
