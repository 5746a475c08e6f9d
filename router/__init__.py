"""Routing: the pure decision core (solver, health, circuit breakers) and the executor."""

from intentmesh.router._breaker import BreakerPolicy, CircuitBreaker, CircuitState
from intentmesh.router._health import (
    FleetVerdict,
    FleetView,
    HealthBook,
    HealthShare,
    LatencyEstimate,
    LatencyStats,
)
from intentmesh.router._plan import (
    Attempt,
    Candidate,
    Offer,
    Plan,
    Rejection,
    RejectReason,
    RouteRequest,
)

__all__ = [
    "Attempt",
    "BreakerPolicy",
    "Candidate",
    "CircuitBreaker",
    "CircuitState",
    "FleetVerdict",
    "FleetView",
    "HealthBook",
    "HealthShare",
    "LatencyEstimate",
    "LatencyStats",
    "Offer",
    "Plan",
    "RejectReason",
    "Rejection",
    "RouteRequest",
]
