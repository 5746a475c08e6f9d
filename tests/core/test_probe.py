"""Health probes feed the solver: breakers, latency priors and models gone."""

from __future__ import annotations

from core_support import MODEL, GatewayFactory

from intentmesh import Intent
from intentmesh.testing import FakeOpenAIProvider


def test_probe_success_raises_latency_prior(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(per_backend={n: {"latency_ms": 0.001} for n in ("cheap", "mid", "pricey")})
    results = gw.probe(timeout_s=5)
    assert all(r["ok"] and r["missing_models"] == [] for r in results.values())
    plan = gw.plan(Intent(model=MODEL, prompt="hi"))
    for cand in plan.candidates:
        assert cand.expected_latency_ms == results[cand.backend]["latency_ms"] > 0.001
    tight = min(r["latency_ms"] for r in results.values()) / 2
    plan = gw.plan(Intent(model=MODEL, prompt="hi", max_latency_ms=tight))
    assert {r.reason for r in plan.rejected.values()} == {"over_latency_target"}


def test_probe_failures_open_the_circuit(make_gateway: GatewayFactory,
                                         providers: dict[str, FakeOpenAIProvider]) -> None:
    gw = make_gateway(routing="failure_threshold = 2\n")
    providers["cheap"].stop()
    for _ in range(2):
        assert gw.probe(timeout_s=2)["cheap"]["ok"] is False
    assert gw.health.breaker("cheap").state == "open"
    assert gw.plan(Intent(model=MODEL, prompt="hi")).rejected["cheap"].reason == "circuit_open"


def test_probe_marks_unlisted_models_gone(make_gateway: GatewayFactory) -> None:
    gw = make_gateway(per_backend={"mid": {"model_id": "no-longer-served"}})
    result = gw.probe()["mid"]
    assert result["missing_models"] == ["no-longer-served"]
    assert gw.plan(Intent(model=MODEL, prompt="hi")).rejected["mid"].reason == "model_gone"
