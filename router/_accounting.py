"""Honest usage: what an answer is charged as, and which integrity flags it earns. Pure.

The rules (docs/routing.md, "Usage and the price cap"):

* usage missing, ``{}``, or zero with a non-empty answer → our estimate, flagged
  ``usage_estimated``; the estimate never exceeds ``max_tokens``, and a ``finish_reason`` of
  ``"length"`` counts as exactly ``max_tokens``;
* claimed completion tokens far below the text (a token would have to average more than
  :data:`UNDERREPORT_CHARS_PER_TOKEN` characters) → ``usage_underreported``;
* claimed usage beyond the quote's worst case → ``usage_exceeds_quote``: the charge is capped
  at the worst case, the claim and the overcharge are kept apart for the receipt, and a backend
  that claims more completion tokens than ``max_tokens`` is quarantined.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from intentmesh.adapters.base import Completion, Usage
from intentmesh.router._plan import Candidate, RouteRequest
from intentmesh.router._tokens import estimate_text_tokens

__all__ = [
    "Audit",
    "MAX_CHARS_PER_TOKEN",
    "READ_MARGIN_CHARS",
    "Settled",
    "UNDERREPORT_CHARS_PER_TOKEN",
    "max_answer_chars",
    "settle_usage",
]

UNDERREPORT_CHARS_PER_TOKEN = 16
# Reading stops after max_tokens * MAX_CHARS_PER_TOKEN + READ_MARGIN_CHARS characters: no
# tokenizer in use has tokens that long on average, so an honest answer is never cut.
MAX_CHARS_PER_TOKEN = 32
READ_MARGIN_CHARS = 1024
_UNDERREPORT_MIN_CHARS = 64
_EPS = 1e-12


@dataclass(slots=True)
class Audit:
    """What one answer's reading noticed, for the receipt."""

    malformed_events: int = 0
    cut_at_chars: int | None = None
    continuation: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.malformed_events:
            out["malformed_events"] = self.malformed_events
        if self.cut_at_chars is not None:
            out["cut_at_chars"] = self.cut_at_chars
        if self.continuation is not None:
            out["continuation"] = self.continuation
        return out


@dataclass(slots=True)
class Settled:
    """The usage and cost we accept for an answer, its flags and what the receipt records."""

    usage: Usage
    cost_usd: float
    flags: list[str]
    audit: dict[str, Any] = field(default_factory=dict)
    penalise: bool = False
    quarantine: bool = False


def max_answer_chars(max_tokens: int) -> int:
    """The most characters read of an answer limited to ``max_tokens`` (then it is cut)."""
    return max_tokens * MAX_CHARS_PER_TOKEN + READ_MARGIN_CHARS


def answer_text(completion: Completion) -> str:
    """The generated output, tool calls included, as one string for estimates."""
    if not completion.tool_calls:
        return completion.text
    return completion.text + json.dumps(completion.tool_calls, separators=(",", ":"))


def estimate_completion(text: str, finish_reason: str | None, max_tokens: int) -> int:
    """Our guess of completion tokens, never above ``max_tokens``; "length" means all of it."""
    if finish_reason == "length":
        return max_tokens
    return min(estimate_text_tokens(text), max_tokens)


def settle_usage(
    request: RouteRequest, cand: Candidate, completion: Completion, audit: Audit
) -> Settled:
    """Decide the usage and cost of one answer (see the module docstring)."""
    text = answer_text(completion)
    claimed = completion.usage
    flags: list[str] = []
    out = audit.to_dict()
    if audit.cut_at_chars is not None:
        flags.append("answer_cut_at_max_tokens")
    if audit.malformed_events:
        flags.append("malformed_events")
    if completion.model and not _same_model(completion.model, cand.provider_model):
        flags.append("model_mismatch")
    if _missing(claimed, text):
        usage = _estimated(request, claimed, text, completion.finish_reason)
        flags.append("usage_estimated")
        cost = cand.offer.cost(usage.prompt_tokens, usage.completion_tokens)
        return Settled(usage, cost, flags, out, _penalised(flags))
    assert claimed is not None
    if len(text) >= _UNDERREPORT_MIN_CHARS and (
        claimed.completion_tokens * UNDERREPORT_CHARS_PER_TOKEN < len(text)
    ):
        flags.append("usage_underreported")
    usage = Usage(
        min(claimed.prompt_tokens, request.prompt_tokens_max),
        min(claimed.completion_tokens, request.max_tokens),
    )
    claimed_cost = cand.offer.cost(claimed.prompt_tokens, claimed.completion_tokens)
    cost = cand.offer.cost(usage.prompt_tokens, usage.completion_tokens)
    quarantine = claimed.completion_tokens > request.max_tokens
    if quarantine:
        flags.append("usage_exceeds_max_tokens")
    if usage != claimed:
        flags.append("usage_exceeds_quote")
        out["usage_claimed"] = claimed.to_dict()
        out["overcharge_usd"] = claimed_cost - cost
    if claimed_cost > cand.worst_case_cost_usd * (1 + 1e-9) + _EPS:
        flags.append("cost_exceeds_quote")
    return Settled(usage, cost, flags, out, _penalised(flags), quarantine)


def _penalised(flags: list[str]) -> bool:
    """Every finding but our own estimate and a skipped garbage event lowers the backend."""
    return any(f not in ("usage_estimated", "malformed_events") for f in flags)


def _same_model(reported: str, asked: str) -> bool:
    a, b = reported.lower(), asked.lower()
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)


def _missing(claimed: Usage | None, text: str) -> bool:
    if claimed is None or claimed.estimated:
        return True
    if claimed.prompt_tokens <= 0:
        return True
    return bool(text) and claimed.completion_tokens <= 0


def _estimated(
    request: RouteRequest, claimed: Usage | None, text: str, finish: str | None
) -> Usage:
    """Keep any count the backend did give; estimate the rest within the quote's bounds."""
    prompt = claimed.prompt_tokens if claimed is not None else 0
    done = claimed.completion_tokens if claimed is not None else 0
    if prompt <= 0 or prompt > request.prompt_tokens_max:
        prompt = request.prompt_tokens_expected
    if done <= 0 or done > request.max_tokens:
        done = estimate_completion(text, finish, request.max_tokens)
    return Usage(prompt, done, True)
