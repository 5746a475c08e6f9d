"""Plain data of routing: offers in, a plan out, attempts recorded along the way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "Attempt",
    "Candidate",
    "Offer",
    "Plan",
    "Rejection",
    "RejectReason",
    "RouteRequest",
]

RejectReason = Literal[
    "model_not_served",
    "model_gone",
    "over_price_cap",
    "over_latency_target",
    "verifiability_unsupported",
    "network_not_allowed",
    "excluded",
    "circuit_open",
]

PriceSource = Literal["configured", "live", "estimated", "stale", "catalog"]


@dataclass(frozen=True, slots=True)
class Offer:
    """One backend serving one canonical model at a price (USD per 1M tokens)."""

    backend: str
    network: str
    model: str
    provider_model: str
    input_price: float
    output_price: float
    price_source: PriceSource = "configured"
    price_age_s: float | None = None
    latency_prior_ms: float = 800.0
    verifiability: frozenset[str] = frozenset({"none", "receipt"})
    operator: str = ""
    context_length: int | None = None

    def worst_case_cost(self, prompt_tokens: int, max_tokens: int) -> float:
        return (prompt_tokens * self.input_price + max_tokens * self.output_price) / 1e6

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1e6


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What the solver needs to know of an intent; built once per call."""

    models: tuple[str, ...]
    prompt_tokens_max: int
    prompt_tokens_expected: int
    max_tokens: int
    max_price_usd: float | None = None
    max_latency_ms: float | None = None
    verifiability: str = "receipt"
    optimize: str = "cost"
    networks: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A feasible offer with its quote: worst-case and expected cost, expected latency."""

    offer: Offer
    worst_case_cost_usd: float
    expected_cost_usd: float
    expected_latency_ms: float
    p95_latency_ms: float
    score: float

    @property
    def backend(self) -> str:
        return self.offer.backend

    @property
    def provider_model(self) -> str:
        return self.offer.provider_model

    @property
    def model(self) -> str:
        return self.offer.model

    def to_dict(self) -> dict[str, Any]:
        offer = asdict(self.offer)
        offer["verifiability"] = sorted(self.offer.verifiability)
        return {
            **offer,
            "worst_case_cost_usd": self.worst_case_cost_usd,
            "expected_cost_usd": self.expected_cost_usd,
            "expected_latency_ms": round(self.expected_latency_ms, 3),
            "p95_latency_ms": round(self.p95_latency_ms, 3),
        }


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one backend cannot serve the intent: a stable code and a sentence for people."""

    backend: str
    reason: RejectReason
    message: str
    model: str = ""

    def to_dict(self) -> dict[str, str]:
        return {
            "backend": self.backend,
            "model": self.model,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Plan:
    """The solver's answer: candidates in the order they will be tried, and every rejection.

    ``rejected`` maps a backend name to its rejection for the most preferred model;
    ``rejections`` holds all of them.
    """

    models: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    rejections: tuple[Rejection, ...]
    request: RouteRequest

    @property
    def rejected(self) -> Mapping[str, Rejection]:
        out: dict[str, Rejection] = {}
        served = {c.backend for c in self.candidates}
        for r in self.rejections:
            if r.backend not in served:
                out.setdefault(r.backend, r)
        return out

    @property
    def feasible(self) -> bool:
        return bool(self.candidates)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": list(self.models),
            "candidates": [c.to_dict() for c in self.candidates],
            "rejected": {name: r.to_dict() for name, r in self.rejected.items()},
            "rejections": [r.to_dict() for r in self.rejections],
        }


@dataclass(slots=True)
class Attempt:
    """One try against one backend, successful or not, as recorded in results and receipts."""

    backend: str
    network: str
    model: str
    provider_model: str
    started_ms: float
    latency_ms: float = 0.0
    outcome: Literal["ok", "error", "cancelled", "skipped"] = "ok"
    error_kind: str | None = None
    error: str | None = None
    status_code: int | None = None
    cost_usd: float = 0.0
    retry: int = 0
    hedge: bool = False
    ttft_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "backend": self.backend,
            "network": self.network,
            "model": self.model,
            "provider_model": self.provider_model,
            "started_ms": round(self.started_ms, 3),
            "latency_ms": round(self.latency_ms, 3),
            "outcome": self.outcome,
            "error_kind": self.error_kind,
            "error": self.error,
            "status_code": self.status_code,
            "cost_usd": self.cost_usd,
            "retry": self.retry,
            "hedge": self.hedge,
        }
        if self.ttft_ms is not None:
            data["ttft_ms"] = round(self.ttft_ms, 3)
        if "continues" in self.extra:
            data["continues"] = self.extra["continues"]
        return data
