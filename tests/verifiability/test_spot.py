"""spot: a sampled share of answers re-executed on the trusted reference backend with greedy
decoding and a fixed seed, compared exactly; disagreement penalises, is recorded on the
receipt, and fails the request when asked."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from verif_support import MODEL, backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Intent, IntentValidationError, NoRouteError
from intentmesh.testing import FakeOpenAIProvider
from intentmesh.verify import SpotPlan, SpotPolicy


def intent(**kw: Any) -> Intent:
    base: dict[str, Any] = {
        "model": MODEL,
        "prompt": "2+2?",
        "max_tokens": 8,
        "verifiability": "spot",
        "seed": 3,
    }
    return Intent(**{**base, **kw})


def gateway(
    start: Callable[..., Any], tmp_path: Path, answer: str, reference: str = "four", **policy: Any
) -> tuple[Any, FakeOpenAIProvider, FakeOpenAIProvider]:
    remote = start(FakeOpenAIProvider(["fake-llama"], reply=lambda _p: answer))
    local = start(FakeOpenAIProvider(["fake-llama"], reply=lambda _p: reference))
    entries = [
        backend_toml("remote", remote.base_url, price=0.1),
        backend_toml("local", local.base_url, price=0.0),
    ]
    gw = make_gateway(tmp_path, entries)
    gw.verification.spot = SpotPolicy(**{"rate": 1.0, **policy})
    return gw, remote, local


def test_an_agreeing_sampled_answer_is_recorded(start: Callable[..., Any], tmp_path: Path) -> None:
    gw, remote, local = gateway(start, tmp_path, "four")
    with gw:
        res = gw.infer(intent(temperature=0.9))
        assert res.backend == "remote" and res.text == "four"
        block = res.receipt.body["verification"]
        assert block["level"] == "spot" and block["sampled"] is True
        assert block["result"] == "agreed" and block["reference"] == "local"
        assert block["response_digest"] == block["reference_digest"]
        assert gw.health.penalty("remote") == 0
        assert gw.verify_ledger()
    for p in (remote, local):  # both ran greedy with the seed
        body = json.loads(p.requests[-1].body)
        assert body["temperature"] == 0.0 and body["seed"] == 3


def test_a_disagreement_penalises_and_is_recorded(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    gw, _, _ = gateway(start, tmp_path, "five")
    with gw:
        res = gw.infer(intent())
        assert res.text == "five"  # answered, but the receipt says what was found
        block = res.receipt.body["verification"]
        assert block["result"] == "disagreed"
        assert block["response_digest"] != block["reference_digest"]
        assert gw.health.penalty("remote") > 0


def test_a_disagreement_fails_the_request_when_asked(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    gw, _, _ = gateway(start, tmp_path, "five")
    with gw:
        with pytest.raises(AllBackendsFailed, match="spot check") as err:
            gw.infer(intent(spot_fail=True))
        first = err.value.attempts[0]
        assert first.backend == "remote" and first.error_kind == "verification_failed"
    gw, _, _ = gateway(start, tmp_path, "five", fail=True)
    with gw, pytest.raises(AllBackendsFailed, match="spot check"):
        gw.infer(intent())


def test_the_rate_samples(start: Callable[..., Any], tmp_path: Path) -> None:
    draws = itertools.cycle([0.05, 0.5, 0.95])  # with rate 0.3 only the first is sampled
    gw, _, local = gateway(start, tmp_path, "five", rate=0.3, draw=lambda: next(draws))
    with gw:
        results = [gw.infer(intent()).receipt.body["verification"] for _ in range(3)]
        assert [b["sampled"] for b in results] == [True, False, False]
        assert results[1]["result"] == "not_sampled" and "reference_digest" not in results[1]
        assert local.calls["/v1/chat/completions"] == 1
        none = gw.infer(intent(spot_rate=0.0)).receipt.body["verification"]
        assert none["sampled"] is False and none["rate"] == 0.0


def test_the_reference_checks_but_does_not_answer(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    gw, _, _ = gateway(start, tmp_path, "four")
    with gw:
        plan = gw.plan(intent())
        assert isinstance(plan, SpotPlan) and [c.backend for c in plan.candidates] == ["remote"]
        assert plan.reference is not None and plan.reference.backend == "local"
        gw.verification.spot = SpotPolicy(reference="nowhere")
        with pytest.raises(NoRouteError, match="reference backend 'nowhere'"):
            gw.infer(intent())


def test_bad_spot_values_are_named() -> None:
    with pytest.raises(IntentValidationError, match="spot_rate"):
        intent(spot_rate=1.5)
    with pytest.raises(ValueError, match="spot_rate must be from 0 to 1"):
        SpotPolicy(rate=-0.1)


@pytest.mark.parametrize("streamed", [False, True])
def test_spot_behaves_the_same_streamed(
    start: Callable[..., Any], tmp_path: Path, streamed: bool
) -> None:
    gw, _, _ = gateway(start, tmp_path, "five")
    with gw:
        if streamed:
            chunks = list(gw.stream(intent()))
            assert "".join(c.text for c in chunks) == "five"
        else:
            assert gw.infer(intent()).text == "five"
        assert gw.health.penalty("remote") > 0  # the sampled disagreement was seen either way
        with pytest.raises(AllBackendsFailed, match="spot check"):
            if streamed:
                list(gw.stream(intent(spot_fail=True)))
            else:
                gw.infer(intent(spot_fail=True))
        assert len(gw.ledger) == 1  # the refused answer has no receipt
