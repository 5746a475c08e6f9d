"""The receipt body of one answer: what the gateway asked, what came back, and what it cost.

``docs/receipts.md`` defines these fields; the ledger adds the chain fields when it signs them,
and the verification level may add a ``verification`` block.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

from intentmesh.errors import ReceiptError
from intentmesh.receipts._canonical import SLOTS, _encode, _encode_str, _fast, _utf8, digest

if TYPE_CHECKING:
    from intentmesh._intent import Intent
    from intentmesh._result import InferenceResult
    from intentmesh.router import Attempt, Candidate

__all__ = ["RequestDigests", "receipt_fields"]


class RequestDigests:
    """The digests a receipt takes from the intent alone, worked out once.

    The gateway computes them while the upstream works on the answer (:meth:`compute` is
    idempotent); ``request_digest`` only adds the answering model's name to the encoded rest.
    """

    __slots__ = ("_head", "_intent", "_intent_digest", "_tail")

    def __init__(self, intent: Intent) -> None:
        self._intent = intent
        self._intent_digest: str | None = None

    def compute(self) -> None:
        """Work the digests out now if they can be; a problem is raised by the getters."""
        with contextlib.suppress(ReceiptError):
            self._work()

    def _work(self) -> str:
        if self._intent_digest is not None:
            return self._intent_digest
        intent = self._intent
        request = {
            "max_tokens": intent.max_tokens,
            "messages": intent.chat_messages(),
            "model": SLOTS[0] if SLOTS else None,  # the answering model's name goes here
            "seed": intent.seed,
            "stop": intent.stop,
            "temperature": intent.temperature,
        }
        self._head, self._tail = _around_model(request)
        self._intent_digest = digest(intent.model_dump(mode="json", exclude_none=True))
        return self._intent_digest

    def intent_digest(self) -> str:
        return self._work()

    def request_digest(self, provider_model: str) -> str:
        """``digest`` of ``{"model": provider_model, "messages": ..., "max_tokens": ...,
        "temperature": ..., "seed": ..., "stop": ...}`` for this intent."""
        self._work()
        model = _utf8(_encode_str(provider_model))
        return "sha256:" + hashlib.sha256(self._head + model + self._tail).hexdigest()


def _around_model(request: dict[str, Any]) -> tuple[bytes, bytes]:
    """Canonical JSON of ``request`` before and after the value of its ``model`` key."""
    fast = _fast(request)
    if fast is not None:
        before, _, after = fast.partition(b"\x000\x00")
        return before, after
    # the keys sort as max_tokens, messages, model, seed, stop, temperature
    head = f'{{"max_tokens":{_encode(request["max_tokens"])},"messages":'
    head += f'{_encode(request["messages"])},"model":'
    tail = f',"seed":{_encode(request["seed"])},"stop":{_encode(request["stop"])},'
    tail += f'"temperature":{_encode(request["temperature"])}}}'
    return _utf8(head), _utf8(tail)


def receipt_fields(
    intent: Intent,
    result: InferenceResult,
    endpoint_host: str,
    digests: RequestDigests | None = None,
) -> dict[str, Any]:
    """The body fields of ``result`` (answer to ``intent``, served from ``endpoint_host``);
    ``digests`` are the intent's own, when worked out already."""
    known = digests or RequestDigests(intent)
    return {
        "intent_digest": known.intent_digest(),
        "request_digest": known.request_digest(result.provider_model),
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


def _attempt_summary(a: Attempt) -> dict[str, Any]:
    """The receipt's summary of one attempt (``docs/receipts.md``)."""
    summary = {
        "backend": a.backend,
        "network": a.network,
        "model": a.model,
        "provider_model": a.provider_model,
        "outcome": a.outcome,
        "error_kind": a.error_kind,
        "status_code": a.status_code,
        "latency_ms": round(a.latency_ms, 3),
        "cost_usd": a.cost_usd,
        "retry": a.retry,
        "hedge": a.hedge,
    }
    if "continues" in a.extra:
        summary["continues"] = a.extra["continues"]
    return summary
