from __future__ import annotations

import math
import random

import pytest

from intentmesh.router import HealthBook, LatencyStats, Offer, RouteRequest
from intentmesh.router._solver import solve, usd


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def offer(name: str, inp: float, out: float, **kw: object) -> Offer:
    defaults: dict[str, object] = {"network": name, "model": "m", "provider_model": f"{name}-m"}
    defaults.update(kw)
    return Offer(backend=name, input_price=inp, output_price=out, **defaults)  # type: ignore[arg-type]


OFFERS = [
    offer("a", 1.0, 2.0, latency_prior_ms=900),
    offer("b", 0.1, 0.2, latency_prior_ms=2000),
    offer("c", 5.0, 10.0, latency_prior_ms=100),
]
BACKENDS = {"a": "a", "b": "b", "c": "c", "d": "d"}


def req(**kw: object) -> RouteRequest:
    base: dict[str, object] = {
        "models": ("m",),
        "prompt_tokens_max": 100,
        "prompt_tokens_expected": 30,
        "max_tokens": 100,
    }
    base.update(kw)
    return RouteRequest(**base)  # type: ignore[arg-type]


def test_cost_ranking_and_unserved_backend_reported() -> None:
    plan = solve(req(), OFFERS, HealthBook(), BACKENDS)
    assert [c.backend for c in plan.candidates] == ["b", "a", "c"]
    assert plan.rejected["d"].reason == "model_not_served"
    assert "does not serve 'm'" in plan.rejected["d"].message


def test_latency_ranking() -> None:
    plan = solve(req(optimize="latency"), OFFERS, HealthBook(), BACKENDS)
    assert [c.backend for c in plan.candidates] == ["c", "a", "b"]


def test_balanced_ranking_is_between() -> None:
    plan = solve(req(optimize="balanced"), OFFERS, HealthBook(), BACKENDS)
    assert plan.candidates[0].backend in {"a", "b"}
    assert [c.backend for c in plan.candidates][-1] == "c"


def test_worst_case_cost_uses_upper_bound_and_max_tokens() -> None:
    plan = solve(req(), OFFERS, HealthBook(), BACKENDS)
    a = next(c for c in plan.candidates if c.backend == "a")
    assert a.worst_case_cost_usd == pytest.approx((100 * 1.0 + 100 * 2.0) / 1e6)
    assert a.expected_cost_usd == pytest.approx((30 * 1.0 + 50 * 2.0) / 1e6)


def test_price_cap_rejects_with_sentence() -> None:
    cap = (100 * 1.0 + 100 * 2.0) / 1e6  # exactly a's worst case: allowed
    plan = solve(req(max_price_usd=cap), OFFERS, HealthBook(), BACKENDS)
    assert {c.backend for c in plan.candidates} == {"a", "b"}
    rejection = plan.rejected["c"]
    assert rejection.reason == "over_price_cap"
    assert rejection.message == "c: worst case $0.0015 exceeds cap $0.0003"


def test_latency_target_uses_prior_then_observations() -> None:
    health = HealthBook()
    plan = solve(req(max_latency_ms=1000), OFFERS, health, BACKENDS)
    assert plan.rejected["b"].reason == "over_latency_target"
    for _ in range(10):
        health.observe_latency("b", "b-m", 300)
    plan = solve(req(max_latency_ms=1000), OFFERS, health, BACKENDS)
    assert "b" in [c.backend for c in plan.candidates]


def test_p95_from_observations_rejects_slow_tail() -> None:
    health = HealthBook()
    for ms in [100] * 8 + [5000, 5000]:
        health.observe_latency("c", "c-m", ms)
    plan = solve(req(max_latency_ms=1000), OFFERS, health, BACKENDS)
    assert plan.rejected["c"].reason == "over_latency_target"


def test_allow_and_deny_lists() -> None:
    plan = solve(req(networks=frozenset({"a"})), OFFERS, HealthBook(), BACKENDS)
    assert [c.backend for c in plan.candidates] == ["a"]
    assert plan.rejected["b"].reason == "network_not_allowed"
    plan = solve(req(exclude=frozenset({"b"})), OFFERS, HealthBook(), BACKENDS)
    assert plan.rejected["b"].reason == "excluded"


def test_verifiability_levels() -> None:
    attested = offer("t", 1.0, 1.0, verifiability=frozenset({"none", "receipt", "attested"}))
    plan = solve(req(verifiability="attested"), [*OFFERS, attested], HealthBook(), BACKENDS)
    assert [c.backend for c in plan.candidates] == ["t"]
    assert plan.rejected["a"].reason == "verifiability_unsupported"
    assert "attested" in plan.rejected["a"].message


def test_open_circuit_and_gone_model_are_rejected() -> None:
    clock = Clock()
    health = HealthBook(clock=clock)
    health.record_failure("a", "auth", "bad key")
    health.mark_gone("b", "b-m")
    plan = solve(req(), OFFERS, health, BACKENDS)
    assert plan.rejected["a"].reason == "circuit_open"
    assert plan.rejected["b"].reason == "model_gone"
    clock.now += 10_000
    plan = solve(req(), OFFERS, health, BACKENDS)
    assert {c.backend for c in plan.candidates} == {"a", "b", "c"}


def test_model_preference_order_wins_over_cost() -> None:
    other = offer("z", 0.0, 0.0, model="m2")
    plan = solve(req(models=("m", "m2")), [*OFFERS, other], HealthBook(), BACKENDS | {"z": "z"})
    assert plan.candidates[-1].backend == "z"
    plan = solve(req(models=("m2", "m")), [*OFFERS, other], HealthBook(), BACKENDS | {"z": "z"})
    assert plan.candidates[0].backend == "z"


def test_deterministic_for_equal_inputs() -> None:
    twins = [offer("x", 1.0, 1.0), offer("y", 1.0, 1.0)]
    plans = [
        solve(req(), list(order), HealthBook(), {"x": "x", "y": "y"})
        for order in (twins, twins[::-1])
    ]
    assert [c.backend for c in plans[0].candidates] == [c.backend for c in plans[1].candidates]
    assert plans[0].to_dict() == plans[1].to_dict()


def test_penalty_pushes_backend_down() -> None:
    health = HealthBook()
    health.penalize("b", 100)
    plan = solve(req(), OFFERS, health, BACKENDS)
    assert plan.candidates[0].backend == "a"


def test_usd_format() -> None:
    assert usd(0.0031) == "$0.0031"
    assert usd(0) == "$0"
    assert usd(12.5) == "$12.5"


@pytest.mark.parametrize("window", [8, 64])
def test_latency_stats_p95_is_the_window_sorted(window: int) -> None:
    """The sorted window is kept as samples arrive and leave (ties and repeats included)."""
    rng = random.Random(window)
    stats = LatencyStats(window=window)
    seen: list[float] = []
    for i in range(5 * window):
        ms = rng.choice([100.0, 250.0, rng.uniform(1, 4000)])
        stats.observe(ms)
        seen.append(ms)
        recent = sorted(seen[-window:])
        n = len(recent)
        want = recent[-1] if n < 8 else recent[min(n - 1, math.ceil(0.95 * n) - 1)]
        got = stats.estimate(0.0)
        assert (got.p95_ms, got.samples) == (want, n), i


def test_latency_stats_need_a_window() -> None:
    with pytest.raises(ValueError, match="at least 1 sample"):
        LatencyStats(window=0)
