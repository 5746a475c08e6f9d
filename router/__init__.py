"""Routing: the pure decision core (solver, health, circuit breakers) and the executor.

Entry points: :func:`solve` turns a :class:`RouteRequest` and offers into a :class:`Plan`;
:class:`Executor` runs a :class:`Call` (``complete``, ``stream``) with one public per-attempt
step, :meth:`Executor.attempt`, typed :data:`AttemptFn` and driven by :class:`Try`.
"""

from intentmesh.router._accounting import Audit, max_answer_chars
from intentmesh.router._breaker import BreakerPolicy, CircuitBreaker, CircuitState
from intentmesh.router._consensus import (
    ConsensusPlan,
    ConsensusPolicy,
    consensus_plan,
    operator_of,
    verdict,
)
from intentmesh.router._executor import (
    AttemptFn,
    AttemptLimits,
    Budget,
    Call,
    Executor,
    Outcome,
    RetryPolicy,
    Try,
)
from intentmesh.router._health import (
    FleetVerdict,
    FleetView,
    HealthBook,
    HealthShare,
    LatencyEstimate,
    LatencyStats,
)
from intentmesh.router._index import HEAD_SIZE, RouteIndex
from intentmesh.router._plan import (
    Attempt,
    Candidate,
    Offer,
    Plan,
    Rejection,
    RejectReason,
    RouteRequest,
)
from intentmesh.router._solver import EXPECTED_OUTPUT_FRACTION, solve
from intentmesh.router._streaming import StreamRun, continuation_request
from intentmesh.router._tokens import estimate_prompt_tokens, estimate_text_tokens

__all__ = [
    "EXPECTED_OUTPUT_FRACTION",
    "HEAD_SIZE",
    "Attempt",
    "AttemptFn",
    "AttemptLimits",
    "Audit",
    "BreakerPolicy",
    "Budget",
    "Call",
    "Candidate",
    "CircuitBreaker",
    "CircuitState",
    "ConsensusPlan",
    "ConsensusPolicy",
    "Executor",
    "FleetVerdict",
    "FleetView",
    "HealthBook",
    "HealthShare",
    "LatencyEstimate",
    "LatencyStats",
    "Offer",
    "Outcome",
    "Plan",
    "RejectReason",
    "Rejection",
    "RetryPolicy",
    "RouteIndex",
    "RouteRequest",
    "StreamRun",
    "Try",
    "consensus_plan",
    "continuation_request",
    "estimate_prompt_tokens",
    "estimate_text_tokens",
    "max_answer_chars",
    "operator_of",
    "solve",
    "verdict",
]
