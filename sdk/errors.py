"""The one error tree of intentmesh.

Every failure a user can see is one of these classes; vendor and transport exceptions are
translated once, at the adapter boundary (``adapters._http.map_transport_errors``). Each class
has a ``kind``, a stable machine-readable name (class attribute, shown in brackets below where
it is a backend call's ``error_kind``); a subclass without its own keeps its parent's. Classes
defined elsewhere are marked with their module.

    IntentmeshError
    ├── ConfigurationError          the config file or a Gateway argument is wrong
    │   └── EngineNotInstalled, LocalModelNotFound, PortInUse      (local_backend)
    ├── IntentValidationError       an Intent field is wrong (``.field``, ``.fix``); also ValueError
    ├── RoutingError
    │   └── NoRouteError            nothing feasible; ``.rejections`` says why for every backend
    ├── BackendError                one backend call failed (``.backend``, ``.status_code``)
    │   ├── TransientError          worth a retry on the same backend [transient]
    │   │   ├── BackendTimeout      [timeout]
    │   │   │   └── ServerStartTimeout                 (local_backend)
    │   │   ├── BackendConnectionError                 [connection]
    │   │   │   └── StreamTruncated SSE ended without [DONE] or a finish  (adapters._http)
    │   │   └── BackendUnavailable  5xx [unavailable]
    │   │       └── ServerStartFailed                  (local_backend)
    │   ├── RateLimited             429 / 529, ``.retry_after`` seconds [rate_limited]
    │   ├── PaymentRequired         402: out of credit on that backend [payment_required]
    │   ├── AuthenticationError     401 / 403 [auth]
    │   │   └── MissingApiKey       the key's variable is unset; nothing sent (``.key_env``)
    │   ├── ModelNotFound           404: the backend no longer serves this model [model_not_found]
    │   ├── InvalidRequest          400 / 422: no backend would accept it [invalid_request]
    │   ├── MalformedResponse       an answer we cannot parse [malformed_response]
    │   ├── VerificationFailed      its evidence did not check out [verification_failed]
    │   │   ├── AttestationFailed   nonce, structure, measurement, instance [attestation_failed]
    │   │   └── ProofFailed         proof missing, malformed, for other data [proof_failed]
    │   └── LevelUnavailable        claims a level it cannot show; never downgraded
    │                               [level_unavailable]
    ├── LimitExceeded               a named limit or key refused the request (``.limit``;
    │                               ``.kind``, per instance: budget / requests_per_min /
    │                               tokens_per_min / usd_per_day; ``.retry_after`` seconds)
    ├── StateUnavailable            the shared state store ([state] url) cannot be reached
    │                               [state_unavailable]
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
from typing import TYPE_CHECKING, Any, ClassVar

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

    kind: ClassVar[str] = "configuration"

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

    kind: ClassVar[str] = "invalid_intent"

    def __init__(self, errors: Sequence[tuple[str, str]]):
        self.errors = list(errors)
        self.field = self.errors[0][0] if self.errors else ""
        lines = [f"{field}: {message}" for field, message in self.errors]
        super().__init__("invalid intent: " + "; ".join(lines))


class LimitExceeded(IntentmeshError):
    """A named limit refused the request: its budget is spent or a rate window is full.

    Its ``kind`` is per instance: which limit (``budget``, ``requests_per_min``, ...).
    """

    def __init__(
        self, message: str, *, limit: str, kind: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.kind = kind
        self.retry_after = retry_after


class StateUnavailable(IntentmeshError):
    """The shared state store (``[state] url``) cannot be reached; budgets fail closed."""

    kind: ClassVar[str] = "state_unavailable"


class RoutingError(IntentmeshError):
    """The solver could not produce a usable plan."""

    kind: ClassVar[str] = "routing"


class NoRouteError(RoutingError):
    """No backend can serve the intent; ``rejections`` explains each one."""

    kind: ClassVar[str] = "no_route"

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

    kind: ClassVar[str] = "backend_error"
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


class TransientError(BackendError):
    """A passing failure: retry the same backend, then fail over."""

    kind: ClassVar[str] = "transient"
    retryable = True


class BackendTimeout(TransientError):
    """The backend did not answer in time."""

    kind: ClassVar[str] = "timeout"


class BackendConnectionError(TransientError):
    """The connection could not be made or broke."""

    kind: ClassVar[str] = "connection"


class BackendUnavailable(TransientError):
    """The backend answered 5xx."""

    kind: ClassVar[str] = "unavailable"


class RateLimited(BackendError):
    """429 or 529; ``retry_after`` is in seconds when the backend said so."""

    kind: ClassVar[str] = "rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PaymentRequired(BackendError):
    """402: the account on that backend cannot pay for this request."""

    kind: ClassVar[str] = "payment_required"


class AuthenticationError(BackendError):
    """401/403: the key is missing, wrong or not allowed."""

    kind: ClassVar[str] = "auth"


class MissingApiKey(AuthenticationError):
    """The environment variable ``key_env`` that holds this backend's key is not set.

    Raised before anything is sent, instead of the network's 401; fails over like one.
    """

    kind: ClassVar[str] = "auth"

    def __init__(self, key_env: str, *, backend: str = "") -> None:
        super().__init__(
            f"{key_env} is not set; export {key_env}=<your key> (the backend's api_key_env)",
            backend=backend,
        )
        self.key_env = key_env


class ModelNotFound(BackendError):
    """404: this backend no longer serves the model; it is marked and skipped."""

    kind: ClassVar[str] = "model_not_found"


class InvalidRequest(BackendError):
    """400/422: a request no backend would accept. Raised at once, never failed over."""

    kind: ClassVar[str] = "invalid_request"
    failover = False


class MalformedResponse(BackendError):
    """The backend's answer could not be parsed."""

    kind: ClassVar[str] = "malformed_response"


class ExecutionError(IntentmeshError):
    """The plan ran but produced no answer; ``attempts`` records every try."""

    kind: ClassVar[str] = "execution"

    def __init__(self, message: str, attempts: Sequence[Attempt] = ()):
        super().__init__(message)
        self.attempts = list(attempts)


class DeadlineExceeded(ExecutionError):
    """The intent's ``max_latency_ms`` ran out across all attempts."""

    kind: ClassVar[str] = "deadline"


class AllBackendsFailed(ExecutionError):
    """Every candidate in the plan failed."""

    kind: ClassVar[str] = "all_backends_failed"


class MidStreamError(ExecutionError):
    """A stream failed after tokens reached the caller; they are never repeated or spliced.

    ``delivered`` is the text already yielded, ``backend`` the backend that broke.
    """

    kind: ClassVar[str] = "mid_stream"

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

    kind: ClassVar[str] = "receipt"

    def __init__(self, message: str, *, receipt_id: str | None = None):
        super().__init__(message)
        self.receipt_id = receipt_id


class VerificationFailed(BackendError):
    """The backend answered, but its evidence for the requested level did not verify."""

    kind: ClassVar[str] = "verification_failed"
    check = "verification"

    def __init__(self, message: str, *, backend: str = "", check: str | None = None) -> None:
        super().__init__(message, backend=backend)
        if check is not None:
            self.check = check


class AttestationFailed(VerificationFailed):
    """Attestation evidence failed a check (``.check`` names it: ``nonce``, ``freshness``,
    ``structure``, ``instance``, ``measurement``, ``quote_signature``, ``fetch``)."""

    kind: ClassVar[str] = "attestation_failed"


class ProofFailed(VerificationFailed):
    """The proof of computation was missing, malformed, for other data, or did not verify."""

    kind: ClassVar[str] = "proof_failed"


class LevelUnavailable(BackendError):
    """The backend is configured with a level it has no means to show; never downgraded."""

    kind: ClassVar[str] = "level_unavailable"


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

    kind: ClassVar[str] = "consensus"

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
