"""The ``spot`` level: a sampled share of answers is re-executed on a trusted backend.

Every request at ``spot`` is sent with greedy decoding (``temperature = 0``, ``top_p`` unset)
and a fixed ``seed``, so that an honest backend running the named model can be reproduced.
With probability ``rate`` the same request then runs on the ``reference`` backend (the local
engine by default) and the two texts are compared **exactly**. A disagreement penalises the
answering backend, is recorded on the receipt, and fails the request when ``fail`` is set.

Pure parts here (the policy, the plan split, the record); the runner is in ``_levels``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from intentmesh.router import Candidate, Plan, Rejection

__all__ = ["SpotPlan", "SpotPolicy", "spot_plan", "spot_record"]


@dataclass(frozen=True, slots=True)
class SpotPolicy:
    """``rate``: share of requests re-executed (0–1); ``reference``: the trusted backend;
    ``fail``: raise on disagreement instead of only recording and penalising it."""

    rate: float = 0.1
    reference: str = "local"
    fail: bool = False
    seed: int = 0
    draw: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"spot_rate must be from 0 to 1, got {self.rate}")

    def sampled(self) -> bool:
        return self.rate > 0.0 and self.draw() < self.rate


@dataclass(frozen=True, slots=True)
class SpotPlan(Plan):
    """The plan without the reference backend, and the reference's own candidate."""

    reference: Candidate | None = None


def spot_plan(plan: Plan, policy: SpotPolicy) -> SpotPlan:
    """Split the reference backend out of ``plan``: it checks answers, it does not give them.

    Without a reference candidate for the requested model the level cannot be shown, so every
    candidate is rejected (never downgraded)."""
    reference = next((c for c in plan.candidates if c.backend == policy.reference), None)
    others = tuple(c for c in plan.candidates if c.backend != policy.reference)
    if reference is not None:
        why = Rejection(
            reference.backend,
            "verifiability_unsupported",
            f"{reference.backend}: the spot-check reference re-executes answers at 'spot'; "
            "it does not give them",
            reference.model,
        )
        return SpotPlan(plan.models, others, (*plan.rejections, why), plan.request, reference)
    dropped = tuple(
        Rejection(
            c.backend,
            "verifiability_unsupported",
            f"{c.backend}: verifiability 'spot' needs the reference backend "
            f"{policy.reference!r} to serve {c.model!r}, and it does not; not downgraded",
            c.model,
        )
        for c in plan.candidates
    )
    return SpotPlan(plan.models, (), (*plan.rejections, *dropped), plan.request, None)


def spot_record(
    policy: SpotPolicy,
    *,
    sampled: bool,
    answer_digest: str,
    reference_digest: str | None = None,
    outcome: str = "not_sampled",
    toploc: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The receipt's ``verification`` block for one ``spot`` request.

    ``toploc``: the reference's verdict on the answer's TOPLOC commitments, when it had them;
    the comparison is then ``"toploc"`` instead of ``"exact"``."""
    out: dict[str, Any] = {
        "level": "spot",
        "rate": policy.rate,
        "sampled": sampled,
        "reference": policy.reference,
        "comparison": "exact",
        "seed": policy.seed,
        "result": outcome,
        "response_digest": answer_digest,
    }
    if reference_digest is not None:
        out["reference_digest"] = reference_digest
    if toploc is not None:
        out["comparison"] = "toploc"
        out["toploc"] = dict(toploc)
    return out


def with_rate(policy: SpotPolicy, rate: float | None, fail: bool | None) -> SpotPolicy:
    """The policy with an intent's overrides."""
    changes: dict[str, Any] = {}
    if rate is not None:
        changes["rate"] = rate
    if fail is not None:
        changes["fail"] = fail
    return replace(policy, **changes) if changes else policy
