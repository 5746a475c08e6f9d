"""OpenAI-shaped errors, and the one place intentmesh exceptions become HTTP statuses.

400 invalid_request_error   bad body or intent (``param`` names the field), no route
401 authentication_error    missing or unknown gateway key
402 insufficient_quota      price cap no backend meets (cheapest quote), key budget spent
403 permission_error        model or network not allowed for this key
404 not_found_error         model no backend serves
413 invalid_request_error   body over ``max_body_bytes``
429 rate_limit_error        every backend rate-limited (``Retry-After`` passed through)
502 upstream_error          backends answered garbage or refused our credentials; or their
                            answers failed the intent's verifiability level (code
                            verification_failed: attestation, proof or consensus; the message
                            names the failed check)
503 service_unavailable     backends down or circuits open
504 timeout_error           ``max_latency_ms`` or upstream timeouts
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from intentmesh.errors import (
    BackendError,
    ConsensusError,
    DeadlineExceeded,
    ExecutionError,
    IntentValidationError,
    InvalidRequest,
    NoRouteError,
    RateLimited,
)
from intentmesh.router import Attempt, Plan

__all__ = ["ApiError", "translate"]


@dataclass(slots=True)
class ApiError(Exception):
    """An error response: status, OpenAI ``error`` fields and extra headers."""

    status: int
    message: str
    type: str
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }


# Replans an intent without its price cap (to quote the cheapest worst case): (plan, cap).
Requote = Callable[[], tuple[Plan | None, float | None]]


def translate(exc: BaseException, requote: Requote, fields_at_top: frozenset[str]) -> ApiError:
    """The HTTP answer for an exception raised while serving one request."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, IntentValidationError):
        return _bad_intent(exc, fields_at_top)
    if isinstance(exc, NoRouteError):
        return _no_route(exc, requote)
    if isinstance(exc, InvalidRequest):
        return ApiError(400, str(exc), "invalid_request_error", "upstream_rejected_request")
    if isinstance(exc, DeadlineExceeded):
        return ApiError(504, str(exc), "timeout_error", "deadline_exceeded")
    if isinstance(exc, ConsensusError):
        return _unverified(str(exc))
    if isinstance(exc, ExecutionError):
        return _failed(str(exc), exc.attempts, exc.__cause__)
    if isinstance(exc, BackendError):
        return _failed(str(exc), (), exc)
    return ApiError(500, "internal gateway error", "server_error", "internal_error")


def _bad_intent(exc: IntentValidationError, fields_at_top: frozenset[str]) -> ApiError:
    field_name = exc.field.split(".")[0]
    param = field_name if field_name in fields_at_top else f"intent.{exc.field}"
    return ApiError(400, str(exc), "invalid_request_error", "invalid_intent", param)


def _no_route(exc: NoRouteError, requote: Requote) -> ApiError:
    reasons = {r.reason for r in exc.rejections}
    if not exc.rejections or reasons <= {"model_not_served", "model_gone"}:
        return ApiError(404, str(exc), "not_found_error", "model_not_found", "model")
    if "over_price_cap" in reasons:
        plan, cap = requote()
        if plan is not None and plan.candidates:
            return _price_cap(exc, plan, cap)
    if reasons <= {"circuit_open", "model_not_served", "model_gone"}:
        return ApiError(503, str(exc), "service_unavailable", "circuits_open")
    return ApiError(400, str(exc), "invalid_request_error", "no_route", "intent")


def _price_cap(exc: NoRouteError, plan: Plan, cap: float | None) -> ApiError:
    best = min(plan.candidates, key=lambda c: c.worst_case_cost_usd)
    message = (
        f"no backend can serve {exc.model!r} within max_price_usd ${cap or 0:.6g}; the cheapest "
        f"quote is ${best.worst_case_cost_usd:.6g} worst case on {best.backend} "
        f"({best.offer.network}); raise intent.max_price_usd or lower max_tokens. {exc}"
    )
    return ApiError(402, message, "insufficient_quota", "price_cap_unmet", "intent.max_price_usd")


# Attempt error kinds that mean "answered, but its evidence for the level did not check out".
_VERIFICATION_KINDS = frozenset({"verification_failed", "attestation_failed", "proof_failed"})


def _unverified(message: str) -> ApiError:
    """No answer passed the intent's verifiability level: never served unverified."""
    return ApiError(502, message, "upstream_error", "verification_failed")


def _failed(message: str, attempts: Sequence[Attempt], cause: BaseException | None) -> ApiError:
    """Every backend failed: answer with the status that says the most about why."""
    kinds = {a.error_kind for a in attempts if a.outcome == "error"}
    if isinstance(cause, BackendError):
        kinds.add(cause.kind)
    if kinds & _VERIFICATION_KINDS:
        return _unverified(message)
    if kinds and kinds <= {"rate_limited"}:
        after = cause.retry_after if isinstance(cause, RateLimited) else None
        headers = {"retry-after": f"{max(after or 1.0, 1.0):.0f}"}
        return ApiError(429, message, "rate_limit_error", "upstream_rate_limited", None, headers)
    if kinds & {"timeout", "deadline"} and kinds <= {"timeout", "deadline", "rate_limited"}:
        return ApiError(504, message, "timeout_error", "upstream_timeout")
    if kinds and kinds <= {"malformed_response", "auth", "payment_required"}:
        return ApiError(502, message, "upstream_error", "bad_upstream")
    return ApiError(503, message, "service_unavailable", "upstream_unavailable")
