"""A circuit breaker per backend: closed → open → half-open → closed, with time injected."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerPolicy", "CircuitBreaker", "CircuitState"]

CircuitState = Literal["closed", "open", "half_open"]

# Failures that say the backend itself is broken for everyone (not a bad request of ours).
_COUNTED = frozenset(
    {"transient", "timeout", "connection", "unavailable", "rate_limited", "malformed_response"}
)
# Failures that will not heal by themselves soon: open at once.
_FATAL = frozenset({"auth", "payment_required"})


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """``failure_threshold`` consecutive failures open the circuit for ``cooldown_s``."""

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    fatal_cooldown_s: float = 300.0


class CircuitBreaker:
    """Tracks one backend's recent failures and says whether it may be tried now."""

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state: CircuitState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._cooldown = self.policy.cooldown_s
        self._trial_in_flight = False
        self.ever_failed = False
        self.last_error: str | None = None

    @property
    def state(self) -> CircuitState:
        """The current state; an open circuit turns half-open once its cooldown has passed."""
        if self._state == "open" and self._clock() - self._opened_at >= self._cooldown:
            self._state = "half_open"
            self._trial_in_flight = False
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a trial through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - self._opened_at))

    def allows(self) -> bool:
        """Whether the planner may pick this backend now."""
        return self.state != "open"

    def acquire(self) -> bool:
        """Take the right to send one request; in half-open only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._state = "closed"
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self, kind: str, message: str = "") -> None:
        """Count a failure of the given error kind; caller errors do not count."""
        if kind not in _COUNTED and kind not in _FATAL:
            self._trial_in_flight = False
            return
        self.last_error = message or kind
        self.ever_failed = True
        self._failures += 1
        fatal = kind in _FATAL
        if fatal or self._state == "half_open" or self._failures >= self.policy.failure_threshold:
            self._open(self.policy.fatal_cooldown_s if fatal else self.policy.cooldown_s)

    def trip(self, reason: str) -> None:
        """Open at once for the long cooldown (a backend caught lying about its bill)."""
        self.last_error = reason
        self.ever_failed = True
        self._open(self.policy.fatal_cooldown_s)
    def follow(self, verdict: str, hold_s: float, message: str | None = None) -> None:
        """Adopt the fleet's verdict (``closed``, ``open`` for ``hold_s``, or ``trial``: ours).

        An ``open`` verdict holds the circuit for ``hold_s``; if the fleet goes quiet, the
        circuit turns half-open when that runs out (local state takes over).
        """
        if verdict == "closed":
            if self._state != "closed":
                self.record_success()
        elif verdict == "open":
            self.ever_failed = True
            self.last_error = message or self.last_error
            self._open(hold_s)
        elif verdict == "trial" and self._state != "half_open":
            self.ever_failed = True
            self._state = "half_open"
            self._trial_in_flight = False

    def _open(self, cooldown: float) -> None:
        self._state = "open"
        self._opened_at = self._clock()
        self._cooldown = cooldown
        self._trial_in_flight = False

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "retry_in_s": round(self.retry_in_s(), 3),
            "last_error": self.last_error,
        }
