"""Consensus: pure decisions for running one request on k independent backends.

Three small functions and their data, no I/O:

* :func:`consensus_plan` picks the panel: the first ``k`` candidates of a plan with distinct
  operators whose *summed* worst-case cost fits the intent's cap; the rest are spares.
* :func:`similarity` and :func:`verdict` compare the answers. ``exact`` (threshold 1.0) needs
  byte-equal text; a threshold below 1 compares normalised text (Unicode NFKC, case-folded,
  whitespace collapsed) with :class:`difflib.SequenceMatcher` and needs every answer's ratio to
  the reference answer to reach the threshold.
* The verdict names the backends that disagreed, so the executor can penalise them.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from intentmesh.router._plan import Candidate, Plan, Rejection

__all__ = [
    "ConsensusPlan",
    "ConsensusPolicy",
    "Verdict",
    "consensus_plan",
    "normalise",
    "similarity",
    "verdict",
]

Comparison = Literal["exact", "normalized"]
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ConsensusPolicy:
    """How many independent backends must agree, and how answers are compared.

    ``threshold`` 1.0 means ``exact`` comparison; below 1.0 the normalised-text ratio. Requests
    are sent with ``temperature=0`` and ``seed`` (the intent's seed when it has one).
    """

    k: int = 2
    threshold: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError("consensus needs k >= 2 backends")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("consensus threshold must be in (0, 1]")

    @property
    def comparison(self) -> Comparison:
        return "exact" if self.threshold >= 1.0 else "normalized"


@dataclass(frozen=True, slots=True)
class ConsensusPlan(Plan):
    """A plan for a consensus call: ``panel`` runs together, ``candidates`` holds the panel
    first and then the spares that may replace a member that fails.

    ``worst_case_cost_usd`` is the panel's summed worst case, checked against the cap.
    """

    k: int = 2
    panel: tuple[Candidate, ...] = ()
    worst_case_cost_usd: float = 0.0
    expected_cost_usd: float = 0.0
    comparison: str = "exact"
    threshold: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        data = super(ConsensusPlan, self).to_dict()  # noqa: UP008 - slots dataclass subclass
        data["consensus"] = {
            "k": self.k,
            "panel": [c.backend for c in self.panel],
            "operators": [operator_of(c) for c in self.panel],
            "worst_case_cost_usd": self.worst_case_cost_usd,
            "expected_cost_usd": self.expected_cost_usd,
            "comparison": self.comparison,
            "threshold": self.threshold,
        }
        return data


def operator_of(candidate: Candidate) -> str:
    return candidate.offer.operator or candidate.backend


def consensus_plan(plan: Plan, policy: ConsensusPolicy) -> ConsensusPlan:
    """The panel for ``plan``: k candidates of distinct operators (and distinct backends),
    in plan order, with the summed worst case within the cap; otherwise no candidates and a
    rejection that says why."""
    panel: list[Candidate] = []
    spares: list[Candidate] = []
    operators: set[str] = set()
    backends: set[str] = set()
    for cand in plan.candidates:
        op = operator_of(cand)
        if len(panel) < policy.k and op not in operators and cand.backend not in backends:
            panel.append(cand)
            operators.add(op)
            backends.add(cand.backend)
        else:
            spares.append(cand)
    worst = sum(c.worst_case_cost_usd for c in panel)
    expected = sum(c.expected_cost_usd for c in panel)
    problem = _panel_problem(plan, policy, panel, worst)
    rejections = plan.rejections
    candidates: tuple[Candidate, ...] = (*panel, *spares)
    if problem is not None:
        rejections = (*rejections, problem)
        candidates = ()
    return ConsensusPlan(
        plan.models,
        candidates,
        rejections,
        plan.request,
        k=policy.k,
        panel=tuple(panel) if problem is None else (),
        worst_case_cost_usd=worst,
        expected_cost_usd=expected,
        comparison=policy.comparison,
        threshold=policy.threshold,
    )


def _panel_problem(
    plan: Plan, policy: ConsensusPolicy, panel: list[Candidate], worst: float
) -> Rejection | None:
    model = plan.models[0] if plan.models else ""
    if len(panel) < policy.k:
        found = ", ".join(f"{c.backend} ({operator_of(c)})" for c in panel) or "none"
        return Rejection(
            "consensus",
            "verifiability_unsupported",
            f"consensus: needs {policy.k} feasible backends with distinct operators; "
            f"found {len(panel)}: {found}",
            model,
        )
    cap = plan.request.max_price_usd
    if cap is not None and worst > cap:
        return Rejection(
            "consensus",
            "over_price_cap",
            f"consensus: {policy.k} backends' summed worst case ${worst:.6g} exceeds cap "
            f"${cap:.6g}",
            model,
        )
    return None


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed and trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def similarity(a: str, b: str, comparison: Comparison) -> float:
    """1.0 for equal answers; under ``normalized``, the SequenceMatcher ratio of normalised
    texts (0..1); under ``exact``, 0.0 for any difference."""
    if a == b:
        return 1.0
    if comparison == "exact":
        return 0.0
    na, nb = normalise(a), normalise(b)
    if na == nb:
        return 1.0
    return difflib.SequenceMatcher(None, na, nb, autojunk=False).ratio()


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether ``k`` answers agree; ``scores[i]`` is answer i's similarity to the reference
    (answer 0); ``dissenters`` are indexes to penalise."""

    agreed: bool
    scores: tuple[float, ...]
    dissenters: tuple[int, ...] = field(default=())

    @property
    def agreement(self) -> float:
        return min(self.scores) if self.scores else 0.0


def verdict(texts: Sequence[str], policy: ConsensusPolicy) -> Verdict:
    """Agreement iff every answer is within the threshold of every other one.

    When they do not all agree, the largest group that agrees with its first member is the
    majority if it holds more than half of the answers, and everyone outside it dissents;
    with no majority, every backend dissents.
    """
    comp = policy.comparison
    scores = tuple(similarity(texts[0], t, comp) for t in texts)
    pairs = [
        similarity(a, b, comp) >= policy.threshold
        for i, a in enumerate(texts)
        for b in texts[i + 1 :]
    ]
    if all(pairs):
        return Verdict(True, scores)
    groups = [
        {j for j, t in enumerate(texts) if similarity(texts[i], t, comp) >= policy.threshold}
        for i in range(len(texts))
    ]
    best = max(groups, key=len)
    if len(best) * 2 > len(texts):
        return Verdict(False, scores, tuple(i for i in range(len(texts)) if i not in best))
    return Verdict(False, scores, tuple(range(len(texts))))
