"""What a call returns: the answer, where it came from, what it cost, and its receipt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from intentmesh.adapters.base import Usage
from intentmesh.router import Attempt, Candidate

if TYPE_CHECKING:
    from intentmesh.receipts import Receipt

__all__ = ["InferenceResult"]


@dataclass(frozen=True, slots=True)
class InferenceResult:
    """The answer to an intent.

    ``cost_usd`` is what the call cost across all attempts (failed attempts that may have been
    billed are included as estimates, see ``attempts``); ``latency_ms`` is end to end.
    ``flags`` lists integrity findings such as ``usage_estimated`` or ``model_mismatch``.
    ``audit`` holds what the receipt records beyond usage: the backend's own usage claim and
    the overcharge when it billed beyond its quote (``usage_claimed``, ``overcharge_usd``),
    skipped ``malformed_events``, ``cut_at_chars``, and a mid-stream ``continuation``.
    """

    text: str
    backend: str
    network: str
    model: str
    provider_model: str
    usage: Usage
    cost_usd: float
    latency_ms: float
    attempts: tuple[Attempt, ...]
    receipt: Receipt | None
    finish_reason: str | None = None
    cached: bool = False
    ttft_ms: float | None = None
    quote: Candidate | None = None
    flags: tuple[str, ...] = ()
    tool_calls: list[dict[str, Any]] | None = field(default=None)
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def receipt_id(self) -> str | None:
        return self.receipt.id if self.receipt is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the receipt as its dict form)."""
        return {
            "text": self.text,
            "backend": self.backend,
            "network": self.network,
            "model": self.model,
            "provider_model": self.provider_model,
            "usage": self.usage.to_dict(),
            "cost_usd": self.cost_usd,
            "latency_ms": round(self.latency_ms, 3),
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 3),
            "finish_reason": self.finish_reason,
            "cached": self.cached,
            "flags": list(self.flags),
            "attempts": [a.to_dict() for a in self.attempts],
            "receipt": self.receipt.to_dict() if self.receipt is not None else None,
            "tool_calls": self.tool_calls,
            **({"audit": self.audit} if self.audit else {}),
        }


def _attach_receipt(result: InferenceResult, receipt: Receipt) -> InferenceResult:
    """``result`` with its ``receipt`` set, in place. Only for a result that nothing else holds
    yet (the gateway's own, just built): ``dataclasses.replace`` would build a second one, at
    several µs a request."""
    object.__setattr__(result, "receipt", receipt)
    return result
