"""The receipt body of one answer: what the gateway asked, what came back, and what it cost.

``docs/receipts.md`` defines these fields; the ledger adds the chain fields when it signs them,
and the verification level may add a ``verification`` block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intentmesh.receipts._canonical import digest

if TYPE_CHECKING:
    from intentmesh._intent import Intent
    from intentmesh._result import InferenceResult
    from intentmesh.router import Candidate

__all__ = ["receipt_fields"]

_ATTEMPT_KEYS = (
    "backend",
    "network",
    "model",
    "provider_model",
    "outcome",
    "error_kind",
    "status_code",
    "latency_ms",
    "cost_usd",
    "retry",
    "hedge",
)


def receipt_fields(intent: Intent, result: InferenceResult, endpoint_host: str) -> dict[str, Any]:
    """The body fields of ``result`` (answer to ``intent``, served from ``endpoint_host``)."""
    return {
        "intent_digest": digest(intent.model_dump(mode="json", exclude_none=True)),
        "request_digest": digest(
            {
                "model": result.provider_model,
                "messages": intent.chat_messages(),
                "max_tokens": intent.max_tokens,
                "temperature": intent.temperature,
                "seed": intent.seed,
                "stop": intent.stop,
            }
        ),
        "response_digest": digest(
            {
                "text": result.text,
                "tool_calls": result.tool_calls,
                "finish_reason": result.finish_reason,
            }
        ),
        "backend": result.backend,
        "network": result.network,
        "endpoint_host": endpoint_host,
        "model": result.model,
        "provider_model": result.provider_model,
        "usage": result.usage.to_dict(),
        "price": _price(result.quote),
        "cost_usd": result.cost_usd,
        "latency_ms": round(result.latency_ms, 3),
        "attempts": [_attempt_summary(a) for a in result.attempts],
        "verifiability": intent.verifiability,
        "cached": result.cached,
        "flags": list(result.flags),
        **result.audit,
    }


def _price(quote: Candidate | None) -> dict[str, Any]:
    if quote is None:
        return {}
    offer = quote.offer
    return {
        "input_per_1m": offer.input_price,
        "output_per_1m": offer.output_price,
        "source": offer.price_source,
        "age_s": offer.price_age_s,
    }


def _attempt_summary(a: Any) -> dict[str, Any]:
    data = a.to_dict()
    summary = {k: data.get(k) for k in _ATTEMPT_KEYS}
    if "continues" in data:
        summary["continues"] = data["continues"]
    return summary
