"""intentmesh: route LLM inference by intent across decentralized networks.

    from intentmesh import Intent, Gateway
    res = Gateway().infer(Intent(model="llama-3.1-8b-instruct", prompt="Hi", max_price_usd=0.002))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intentmesh.errors import (
    AllBackendsFailed,
    AttestationFailed,
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    ConsensusError,
    DeadlineExceeded,
    ExecutionError,
    IntentmeshError,
    IntentValidationError,
    InvalidRequest,
    LevelUnavailable,
    LimitExceeded,
    MalformedResponse,
    MidStreamError,
    MissingApiKey,
    ModelNotFound,
    NoRouteError,
    PaymentRequired,
    ProofFailed,
    RateLimited,
    ReceiptError,
    RoutingError,
    StateUnavailable,
    TransientError,
    VerificationFailed,
)

if TYPE_CHECKING:
    from intentmesh._gateway import Gateway, ResultStream
    from intentmesh._intent import Intent, Message
    from intentmesh._result import InferenceResult
    from intentmesh.adapters.base import Chunk, Usage
    from intentmesh.config import GatewayConfig, load_config
    from intentmesh.receipts import InclusionProof, Receipt, verify_inclusion
    from intentmesh.router import Attempt, Candidate, Plan, Rejection

# Public names imported on first use (PEP 562), so `import intentmesh` and the CLI stay fast.
_LAZY: dict[str, str] = {
    "Gateway": "intentmesh._gateway",
    "ResultStream": "intentmesh._gateway",
    "Intent": "intentmesh._intent",
    "Message": "intentmesh._intent",
    "InferenceResult": "intentmesh._result",
    "Chunk": "intentmesh.adapters.base",
    "Usage": "intentmesh.adapters.base",
    "GatewayConfig": "intentmesh.config",
    "load_config": "intentmesh.config",
    "Receipt": "intentmesh.receipts",
    "InclusionProof": "intentmesh.receipts",
    "verify_inclusion": "intentmesh.receipts",
    "Attempt": "intentmesh.router",
    "Candidate": "intentmesh.router",
    "Plan": "intentmesh.router",
    "Rejection": "intentmesh.router",
}

__version__ = "0.1.0"

__all__ = [
    "AllBackendsFailed",
    "Attempt",
    "AttestationFailed",
    "AuthenticationError",
    "BackendConnectionError",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "Candidate",
    "Chunk",
    "ConfigurationError",
    "ConsensusError",
    "DeadlineExceeded",
    "ExecutionError",
    "Gateway",
    "GatewayConfig",
    "InclusionProof",
    "InferenceResult",
    "Intent",
    "IntentValidationError",
    "IntentmeshError",
    "InvalidRequest",
    "LevelUnavailable",
    "LimitExceeded",
    "MalformedResponse",
    "Message",
    "MidStreamError",
    "MissingApiKey",
    "ModelNotFound",
    "NoRouteError",
    "PaymentRequired",
    "Plan",
    "ProofFailed",
    "RateLimited",
    "Receipt",
    "ReceiptError",
    "Rejection",
    "ResultStream",
    "RoutingError",
    "StateUnavailable",
    "TransientError",
    "Usage",
    "VerificationFailed",
    "ainfer",
    "default_gateway",
    "infer",
    "load_config",
    "verify_inclusion",
    "verify_receipt",
    "__version__",
]

_default: Gateway | None = None


def default_gateway() -> Gateway:
    """The shared ``Gateway()`` used by module-level :func:`infer` and :func:`ainfer`."""
    global _default
    if _default is None:
        from intentmesh._gateway import Gateway

        _default = Gateway()
    return _default


def infer(intent: Intent | None = None, **fields: Any) -> InferenceResult:
    """Serve an intent with the default gateway (config discovered as ``Gateway()`` does)."""
    return default_gateway().infer(intent, **fields)


async def ainfer(intent: Intent | None = None, **fields: Any) -> InferenceResult:
    """Async :func:`infer`."""
    return await default_gateway().ainfer(intent, **fields)


def verify_receipt(receipt: Any, public_key: Any) -> bool:
    """True iff ``receipt`` is signed by ``public_key`` and unaltered."""
    from intentmesh.receipts import verify_receipt as _verify

    return _verify(receipt, public_key)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'intentmesh' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
