"""The one error tree of intentmesh.

Every failure a user can see is one of these classes; vendor and transport exceptions are
translated once, at the adapter boundary (``adapters._http.map_transport_errors``).

    IntentmeshError
    ├── ConfigurationError          the config file or a Gateway argument is wrong
    ├── IntentValidationError       an Intent field is wrong (``.field``, ``.fix``); also ValueError
    ├── RoutingError
    │   └── NoRouteError            nothing feasible; ``.rejections`` says why for every backend
    ├── BackendError                one backend call failed (``.backend``, ``.status_code``)
    │   ├── TransientError          worth a retry on the same backend
    │   │   ├── BackendTimeout
    │   │   ├── BackendConnectionError
    │   │   └── BackendUnavailable  5xx
    │   ├── RateLimited             429 / 529, ``.retry_after`` seconds when the backend said
    │   ├── PaymentRequired         402: out of credit on that backend
    │   ├── AuthenticationError     401 / 403
    │   │   └── MissingApiKey       the key's variable is not set; nothing was sent (``.key_env``)
    │   ├── ModelNotFound           404: the backend no longer serves this model
    │   ├── InvalidRequest          400 / 422: no backend would accept it; never failed over
    │   ├── MalformedResponse       the backend answered something we cannot parse
    │   ├── VerificationFailed      its evidence for the intent's level did not check out
    │   │   ├── AttestationFailed   wrong/stale nonce, bad structure, measurement, instance
    │   │   └── ProofFailed         proof missing, malformed, for other data, or rejected
    │   └── LevelUnavailable        claims a level it has no means to show; never downgraded
    ├── LimitExceeded               a named limit or key refused the request (``.limit``,
    │                               ``.kind``: budget / requests_per_min / tokens_per_min /
    │                               usd_per_day, ``.retry_after`` seconds when it will pass)
    ├── StateUnavailable            the shared state store ([state] url) cannot be reached
    ├── ExecutionError              the plan ran and did not produce an answer
    │   ├── DeadlineExceeded        ``max_latency_ms`` passed across all attempts
    │   ├── AllBackendsFailed       every candidate failed; ``.attempts`` has each failure
    │   ├── MidStreamError          a stream broke after tokens were delivered; ``.delivered``
    │   └── ConsensusError          k independent answers disagreed; ``.answers`` has each
    └── ReceiptError                a receipt or the ledger failed verification
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from intentmesh.router import Attempt, Rejection

__all__ = [
    "AllBackendsFailed",
    "AttestationFailed",
    "AuthenticationError",
    "BackendConnectionError",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigurationError",
    "ConsensusAnswer",
    "ConsensusError",
    "DeadlineExceeded",
    "ExecutionError",
    "IntentValidationError",
    "IntentmeshError",
    "InvalidRequest",
    "LevelUnavailable",
    "MalformedResponse",
    "MidStreamError",
    "MissingApiKey",
    "ModelNotFound",
    "NoRouteError",
    "PaymentRequired",
    "ProofFailed",
    "RateLimited",
    "ReceiptError",
    "RoutingError",
    "TransientError",
    "VerificationFailed",
    "unreadable",
    "validation_message",
]


def unreadable(exc: OSError) -> str:
    """Why a file could not be read, in one wording everywhere: ``no such file``, ..."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    return (exc.strerror or type(exc).__name__).lower()

_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def validation_message(err: Mapping[str, Any]) -> str:
    """A pydantic error's ``msg`` in intentmesh's voice: without ``Value error, `` and the like."""
    message = str(err.get("msg", ""))
    for prefix in _PYDANTIC_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


class IntentmeshError(Exception):
    """Base class of every error intentmesh raises on purpose."""


class ConfigurationError(IntentmeshError):
    """The configuration is wrong; the message names the place and the fix.

    ``source`` (file), ``line`` and ``key`` (the offending key, e.g. ``base_url``) when known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ):
        where = source or ""
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line
        self.key = key
        self.detail = message


class IntentValidationError(IntentmeshError, ValueError):
    """An intent field is invalid. ``errors`` lists ``(field, message)`` pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]):
        self.errors = list(errors)
        self.field = self.errors[0][0] if self.errors else ""
        lines = [f"{field}: {message}" for field, message in self.errors]
        super().__init__("invalid intent: " + "; ".join(lines))


class LimitExceeded(IntentmeshError):
    """A named limit refused the request: its budget is spent or a rate window is full."""

    def __init__(
        self, message: str, *, limit: str, kind: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.kind = kind
        self.retry_after = retry_after


class StateUnavailable(IntentmeshError):
    """The shared state store (``[state] url``) cannot be reached; budgets fail closed."""


class RoutingError(IntentmeshError):
    """The solver could not produce a usable plan."""


class NoRouteError(RoutingError):
    """No backend can serve the intent; ``rejections`` explains each one."""

    def __init__(self, model: str, rejections: Sequence[Rejection], hint: str = ""):
        self.model = model
        self.rejections = list(rejections)
        if self.rejections:
            reasons = "; ".join(r.message for r in self.rejections)
        else:
            reasons = "no backend is configured (add [[backends]] to intentmesh.toml)"
        text = f"no backend can serve {model!r}: {reasons}"
        super().__init__(f"{text}. {hint}" if hint else text)


class BackendError(IntentmeshError):
    """A single backend call failed."""

    retryable = False
    failover = True

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        status_code: int | None = None,
        body: str = "",
        headers: Mapping[str, str] | None = None,
    ):
        prefix = f"{backend}: " if backend else ""
        super().__init__(prefix + message)
        self.backend = backend
        self.status_code = status_code
        self.body = body[:2000]
        self.headers = dict(headers or {})

    @property
    def kind(self) -> str:
        """A stable machine-readable name of the error class, e.g. ``rate_limited``."""
        return _KINDS.get(type(self), "backend_error")


class TransientError(BackendError):
    """A passing failure: retry the same backend, then fail over."""

    retryable = True


class BackendTimeout(TransientError):
    """The backend did not answer in time."""


class BackendConnectionError(TransientError):
    """The connection could not be made or broke."""


class BackendUnavailable(TransientError):
    """The backend answered 5xx."""


class RateLimited(BackendError):
    """429 or 529; ``retry_after`` is in seconds when the backend said so."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PaymentRequired(BackendError):
    """402: the account on that backend cannot pay for this request."""


class AuthenticationError(BackendError):
    """401/403: the key is missing, wrong or not allowed."""


class MissingApiKey(AuthenticationError):
    """The environment variable ``key_env`` that holds this backend's key is not set.

    Raised before anything is sent, instead of the network's 401; fails over like one.
    """

    def __init__(self, key_env: str, *, backend: str = "") -> None:
        super().__init__(
            f"{key_env} is not set; export {key_env}=<your key> (the backend's api_key_env)",
            backend=backend,
        )
        self.key_env = key_env


class ModelNotFound(BackendError):
    """404: this backend no longer serves the model; it is marked and skipped."""


class InvalidRequest(BackendError):
    """400/422: a request no backend would accept. Raised at once, never failed over."""

    failover = False


class MalformedResponse(BackendError):
    """The backend's answer could not be parsed."""


_KINDS: dict[type[BackendError], str] = {
    BackendError: "backend_error",
    TransientError: "transient",
    BackendTimeout: "timeout",
    BackendConnectionError: "connection",
    BackendUnavailable: "unavailable",
    RateLimited: "rate_limited",
    PaymentRequired: "payment_required",
    AuthenticationError: "auth",
    MissingApiKey: "auth",
    ModelNotFound: "model_not_found",
    InvalidRequest: "invalid_request",
    MalformedResponse: "malformed_response",
}


class ExecutionError(IntentmeshError):
    """The plan ran but produced no answer; ``attempts`` records every try."""

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()):
        super().__init__(message)
        self.attempts = list(attempts)


class DeadlineExceeded(ExecutionError):
    """The intent's ``max_latency_ms`` ran out across all attempts."""


class AllBackendsFailed(ExecutionError):
    """Every candidate in the plan failed."""


class MidStreamError(ExecutionError):
    """A stream failed after tokens reached the caller; they are never repeated or spliced.

    ``delivered`` is the text already yielded, ``backend`` the backend that broke.
    """

    def __init__(
        self,
        message: str,
        *,
        delivered: str,
        backend: str,
        attempts: Sequence[Attempt] = (),
        cause: BaseException | None = None,
    ):
        super().__init__(message, attempts)
        self.delivered = delivered
        self.backend = backend
        self.cause = cause


class ReceiptError(IntentmeshError):
    """A receipt or the ledger failed verification; the message names the first bad receipt."""

    def __init__(self, message: str, *, receipt_id: str | None = None):
        super().__init__(message)
        self.receipt_id = receipt_id


class VerificationFailed(BackendError):
    """The backend answered, but its evidence for the requested level did not verify."""

    check = "verification"

    def __init__(self, message: str, *, backend: str = "", check: str | None = None) -> None:
        super().__init__(message, backend=backend)
        if check is not None:
            self.check = check

    @property
    def kind(self) -> str:
        return "verification_failed"


class AttestationFailed(VerificationFailed):
    """Attestation evidence failed a check (``.check`` names it: ``nonce``, ``freshness``,
    ``structure``, ``instance``, ``measurement``, ``quote_signature``, ``fetch``)."""

    @property
    def kind(self) -> str:
        return "attestation_failed"


class ProofFailed(VerificationFailed):
    """The proof of computation was missing, malformed, for other data, or did not verify."""

    @property
    def kind(self) -> str:
        return "proof_failed"


class LevelUnavailable(BackendError):
    """The backend is configured with a level it has no means to show; never downgraded."""

    @property
    def kind(self) -> str:
        return "level_unavailable"


@dataclass(frozen=True, slots=True)
class ConsensusAnswer:
    """One panel member's answer, as carried by :class:`ConsensusError`."""

    backend: str
    operator: str
    text: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "operator": self.operator,
            "text": self.text,
            "similarity": self.similarity,
        }


class ConsensusError(ExecutionError):
    """The k independent answers did not agree; no answer is returned.

    ``answers`` lists every backend's answer (with its similarity to the first), ``dissenters``
    the backends that were penalised, ``threshold`` and ``comparison`` the rule applied.
    """

    def __init__(
        self,
        answers: Sequence[ConsensusAnswer],
        *,
        dissenters: Sequence[str],
        comparison: str,
        threshold: float,
        attempts: Sequence[Attempt] = (),
    ) -> None:
        shown = "; ".join(f"{a.backend}: {a.text[:60]!r} ({a.similarity:.2f})" for a in answers)
        super().__init__(
            f"consensus failed: {len(answers)} backends disagree under {comparison} comparison "
            f"(threshold {threshold}): {shown}",
            attempts,
        )
        self.answers = list(answers)
        self.dissenters = list(dissenters)
        self.comparison = comparison
        self.threshold = threshold
