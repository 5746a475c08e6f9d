"""consensus: k distinct operators, greedy + fixed seed, agreement rule, typed disagreement,
penalties, the summed cost in the plan before the call."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from verif_support import MODEL, backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Intent, NoRouteError
from intentmesh.router._consensus import normalise, similarity, verdict
from intentmesh.testing import FakeOpenAIProvider, Fault
from intentmesh.verify import ConsensusError, ConsensusPlan, ConsensusPolicy


def intent(**kw: Any) -> Intent:
    base: dict[str, Any] = {
        "model": MODEL,
        "prompt": "2+2?",
        "max_tokens": 16,
        "verifiability": "consensus",
        "seed": 7,
    }
    return Intent(**{**base, **kw})


def providers(start: Callable[..., Any], *replies: str) -> list[FakeOpenAIProvider]:
    return [start(FakeOpenAIProvider(["fake-llama"], reply=lambda _p, r=r: r)) for r in replies]


def gateway(tmp_path: Path, provs: list[FakeOpenAIProvider], operators: list[str]) -> Any:
    entries = [
        backend_toml(f"b{i}", p.base_url, price=0.1 * (i + 1), operator=op, levels=("consensus",))
        for i, (p, op) in enumerate(zip(provs, operators, strict=True))
    ]
    return make_gateway(tmp_path, entries)


def test_agreeing_backends_answer_with_a_receipt(start: Callable[..., Any], tmp_path: Path) -> None:
    provs = providers(start, "four", "four", "five")
    with gateway(tmp_path, provs, ["op-a", "op-b", "op-c"]) as gw:
        res = gw.infer(intent(temperature=0.7))
        assert res.text == "four" and res.backend == "b0"
        assert {a.backend for a in res.attempts} == {"b0", "b1"}
        assert res.cost_usd == pytest.approx(sum(a.cost_usd for a in res.attempts))
        block = res.receipt.body["verification"]
        assert block["level"] == "consensus" and block["k"] == 2
        assert [m["backend"] for m in block["members"]] == ["b0", "b1"]
        assert block["members"][0]["response_digest"] == res.receipt.body["response_digest"]
        assert gw.verify_ledger()
    for p in provs[:2]:
        body = json.loads(p.requests[-1].body)
        assert body["temperature"] == 0.0 and body["seed"] == 7
    assert provs[2].calls["/v1/chat/completions"] == 0


def test_disagreement_raises_with_every_answer_and_penalises(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    provs = providers(start, "four", "five", "four")
    with gateway(tmp_path, provs, ["op-a", "op-b", "op-c"]) as gw:
        with pytest.raises(ConsensusError) as err:
            gw.infer(intent())
        e = err.value
        assert [(a.backend, a.text) for a in e.answers] == [("b0", "four"), ("b1", "five")]
        assert set(e.dissenters) == {"b0", "b1"} and e.comparison == "exact"
        assert gw.health.penalty("b0") > 0 and gw.health.penalty("b1") > 0
        assert len(e.attempts) == 2
        gw.verification.consensus = ConsensusPolicy(k=3)
        with pytest.raises(ConsensusError) as err3:
            gw.infer(intent())
        assert err3.value.dissenters == ["b1"]


def test_normalised_threshold(start: Callable[..., Any], tmp_path: Path) -> None:
    provs = providers(start, "The answer is  Four.", "the answer is four")
    with gateway(tmp_path, provs, ["a", "b"]) as gw:
        with pytest.raises(ConsensusError):
            gw.infer(intent())
        gw.verification.consensus = ConsensusPolicy(threshold=0.9)
        res = gw.infer(intent())
        assert res.receipt.body["verification"]["comparison"] == "normalized"
        assert res.receipt.body["verification"]["agreement"] >= 0.9


def test_same_operator_does_not_count_twice(start: Callable[..., Any], tmp_path: Path) -> None:
    provs = providers(start, "x", "x")
    with gateway(tmp_path, provs, ["same", "same"]) as gw:
        plan = gw.plan(intent())
        assert not plan.candidates
        assert "distinct operators" in plan.rejections[-1].message
        with pytest.raises(NoRouteError, match="distinct operators"):
            gw.infer(intent())


def test_summed_worst_case_is_in_the_plan_and_must_fit_the_cap(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    provs = providers(start, "x", "x")
    with gateway(tmp_path, provs, ["a", "b"]) as gw:
        plan = gw.plan(intent())
        assert isinstance(plan, ConsensusPlan)
        total = sum(c.worst_case_cost_usd for c in plan.panel)
        assert plan.worst_case_cost_usd == pytest.approx(total)
        assert plan.to_dict()["consensus"]["worst_case_cost_usd"] == pytest.approx(total)
        one = plan.panel[1].worst_case_cost_usd
        assert one < total
        with pytest.raises(NoRouteError, match="summed worst case"):
            gw.infer(intent(max_price_usd=(one + total) / 2))
        assert provs[0].calls["/v1/chat/completions"] == 0


def test_a_failing_member_is_replaced_by_another_operator(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    provs = providers(start, "ok", "ok", "ok")
    provs[1].always(Fault.status(503))
    with gateway(tmp_path, provs, ["a", "b", "c"]) as gw:
        res = gw.infer(intent())
        members = [m["backend"] for m in res.receipt.body["verification"]["members"]]
        assert members == ["b0", "b2"]
        provs[2].always(Fault.status(503))
        with pytest.raises(AllBackendsFailed, match="consensus needs 2"):
            gw.infer(intent())


def test_streaming_a_consensus_intent_is_verified_before_it_is_shown(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    provs = providers(start, "same", "other")
    with gateway(tmp_path, provs, ["a", "b"]) as gw, pytest.raises(ConsensusError):
        list(gw.stream(intent()))


def test_comparison_rules() -> None:
    assert normalise("  Hello\n\tWORLD ") == "hello world"
    assert similarity("a", "a", "exact") == 1.0 and similarity("a", "A", "exact") == 0.0
    assert similarity("Hello world", "hello  world", "normalized") == 1.0
    policy = ConsensusPolicy(k=3)
    assert verdict(["x", "x", "x"], policy).agreed
    assert verdict(["x", "y", "z"], policy).dissenters == (0, 1, 2)
    with pytest.raises(ValueError):
        ConsensusPolicy(k=1)
