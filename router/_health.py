"""Observed latency per backend and model (EWMA and p95), circuit breakers, and models gone."""

from __future__ import annotations

import math
import time
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from intentmesh.router._breaker import BreakerPolicy, CircuitBreaker

__all__ = [
    "FleetVerdict",
    "FleetView",
    "HealthBook",
    "HealthShare",
    "LatencyEstimate",
    "LatencyStats",
]

_P95_MIN_SAMPLES = 8


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    """Expected (EWMA) and tail (p95) end-to-end latency in ms, and how many samples back it."""

    expected_ms: float
    p95_ms: float
    samples: int


@dataclass(frozen=True, slots=True)
class FleetVerdict:
    """What the fleet says of one backend: ``closed``, ``open`` (hold ``hold_s``) or ``trial``."""

    verdict: str
    hold_s: float = 0.0
    message: str | None = None


@dataclass(frozen=True, slots=True)
class FleetView:
    """One sync with the fleet; ``acked`` is the last of our publications it already reflects."""

    acked: int
    breakers: Mapping[str, FleetVerdict] = field(default_factory=dict)
    latency: Mapping[tuple[str, str], tuple[float, ...]] = field(default_factory=dict)


class HealthShare(Protocol):
    """Where processes share breakers and latency (``intentmesh.fleet``); None: this one only."""

    hold_margin_s: float
    """How much longer than its cooldown a circuit stays open locally, so the fleet (not this
    process's clock) decides who gets the half-open trial."""

    @property
    def view(self) -> FleetView | None:
        """The latest sync (a new object each time), None while the fleet is unreachable."""
        ...

    def publish_breaker(self, backend: str, verdict: str, cooldown_s: float, message: str) -> int:
        """Queue a circuit change (``open``/``closed``); returns its sequence number."""
        ...

    def publish_latency(self, backend: str, model: str, latency_ms: float) -> None: ...


class LatencyStats:
    """EWMA and a window of recent samples for one (backend, model)."""

    __slots__ = ("_alpha", "_cached", "_ewma", "_ordered", "_window", "count")

    def __init__(self, alpha: float = 0.2, window: int = 64) -> None:
        if window < 1:
            raise ValueError(f"LatencyStats window must hold at least 1 sample, not {window}")
        self._alpha = alpha
        self._ewma: float | None = None
        self._window: deque[float] = deque(maxlen=window)
        self._ordered: list[float] = []  # the window's samples, sorted (p95 without a sort)
        self._cached: LatencyEstimate | None = None
        self.count = 0

    @classmethod
    def from_samples(cls, samples: tuple[float, ...]) -> LatencyStats:
        stats = cls()
        for sample in samples:
            stats.observe(sample)
        return stats

    def observe(self, latency_ms: float) -> None:
        self._cached = None
        self.count += 1
        window, ordered = self._window, self._ordered
        if len(window) == window.maxlen:
            _discard(ordered, window[0])  # the sample append() evicts
        window.append(latency_ms)
        insort(ordered, latency_ms)
        if self._ewma is None:
            self._ewma = latency_ms
        else:
            self._ewma += self._alpha * (latency_ms - self._ewma)

    def estimate(self, prior_ms: float) -> LatencyEstimate:
        """Blend in the prior until there is data; p95 only once there are enough samples."""
        if self._ewma is None:
            return LatencyEstimate(prior_ms, prior_ms, 0)
        if self._cached is None:
            self._cached = self._compute(self._ewma)
        return self._cached

    def _compute(self, ewma: float) -> LatencyEstimate:
        ordered = self._ordered
        n = len(ordered)
        if n < _P95_MIN_SAMPLES:
            return LatencyEstimate(ewma, ordered[-1], n)
        p95 = ordered[min(n - 1, math.ceil(0.95 * n) - 1)]
        return LatencyEstimate(ewma, p95, n)


def _discard(ordered: list[float], sample: float) -> None:
    i = bisect_left(ordered, sample)
    if i < len(ordered) and ordered[i] == sample:
        del ordered[i]
    else:  # NaN: unordered, found by identity
        ordered.remove(sample)


class HealthBook:
    """Everything the solver learns from executions; shared by sync and async calls."""

    def __init__(
        self,
        breaker_policy: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        gone_ttl_s: float = 600.0,
        share: HealthShare | None = None,
    ) -> None:
        self._policy = breaker_policy or BreakerPolicy()
        self._clock = clock
        self._gone_ttl_s = gone_ttl_s
        self._latency: dict[tuple[str, str], LatencyStats] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._gone: dict[tuple[str, str], float] = {}
        self._penalty: dict[str, float] = {}
        self._priors: dict[float, LatencyEstimate] = {}
        self._probe_ms: dict[str, float] = {}
        self._listeners: list[Callable[[str, str | None], bool]] = []
        self.share = share
        self._view: FleetView | None = None
        self._published: dict[str, int] = {}

    def subscribe(self, listener: Callable[[str, str | None], bool]) -> None:
        """Call ``listener(backend, provider_model)`` whenever a latency estimate may change
        (``provider_model`` None: every model of the backend); it returns False to unsubscribe.
        """
        self._listeners.append(listener)

    def _changed(self, backend: str, model: str | None) -> None:
        if self._listeners:
            self._listeners = [fn for fn in self._listeners if fn(backend, model)]

    @property
    def any_gone(self) -> bool:
        """Cheap pre-check for the solver's hot loop."""
        return bool(self._gone)

    def breaker_if_tripped(self, backend: str) -> CircuitBreaker | None:
        """The backend's breaker when it has ever failed, else None (closed by definition)."""
        if self.share is not None:
            self._sync(self.share.view)
        found = self._breakers.get(backend)
        return found if found is not None and found.ever_failed else None

    def breaker(self, backend: str) -> CircuitBreaker:
        if self.share is not None:
            self._sync(self.share.view)
        return self._breaker(backend)

    def _breaker(self, backend: str) -> CircuitBreaker:
        found = self._breakers.get(backend)
        if found is None:
            found = self._breakers[backend] = CircuitBreaker(self._policy, self._clock)
        return found

    def latency(self, backend: str, model: str, prior_ms: float) -> LatencyEstimate:
        stats = self._latency.get((backend, model))
        if stats is not None:
            return stats.estimate(prior_ms)
        if self._probe_ms:
            prior_ms = max(prior_ms, self._probe_ms.get(backend, 0.0))
        prior = self._priors.get(prior_ms)
        if prior is None:
            prior = self._priors[prior_ms] = LatencyEstimate(prior_ms, prior_ms, 0)
        return prior

    def observe_latency(self, backend: str, model: str, latency_ms: float) -> None:
        key = (backend, model)
        stats = self._latency.get(key)
        if stats is None:
            stats = self._latency[key] = LatencyStats()
        stats.observe(latency_ms)
        self._changed(backend, model)
        if self.share is not None:
            self.share.publish_latency(backend, model, latency_ms)

    def observe_probe(self, backend: str, latency_ms: float) -> None:
        """A probe's round trip: no request can be faster, so it raises the latency prior."""
        self._probe_ms[backend] = latency_ms
        self._changed(backend, None)

    def mark_gone(self, backend: str, model: str) -> None:
        """The backend answered 404 for this model: skip it until the mark expires."""
        self._gone[(backend, model)] = self._clock()

    def is_gone(self, backend: str, model: str) -> bool:
        marked = self._gone.get((backend, model))
        if marked is None:
            return False
        if self._clock() - marked > self._gone_ttl_s:
            del self._gone[(backend, model)]
            return False
        return True

    def penalize(self, backend: str, amount: float = 1.0) -> None:
        """Lower a backend in rankings (it lied about usage or model); decays on success."""
        self._penalty[backend] = self._penalty.get(backend, 0.0) + amount

    def quarantine(self, backend: str, reason: str) -> None:
        """Exclude a backend that billed beyond its own quote: heavy penalty, circuit open for
        the breaker's long (fatal) cooldown."""
        self.penalize(backend, 10.0)
        self.breaker(backend).trip(reason)

    def penalty(self, backend: str) -> float:
        return self._penalty.get(backend, 0.0)

    def record_success(self, backend: str) -> None:
        breaker = self.breaker(backend)
        before = breaker.state
        breaker.record_success()
        if backend in self._penalty:
            self._penalty[backend] *= 0.9
        if self.share is not None and before != "closed":
            self._published[backend] = self.share.publish_breaker(backend, "closed", 0.0, "")

    def record_failure(self, backend: str, kind: str, message: str = "") -> None:
        breaker = self.breaker(backend)
        before = breaker.state
        breaker.record_failure(kind, message)
        if self.share is not None and before != "open" and breaker.state == "open":
            cooldown = breaker.retry_in_s()
            self._published[backend] = self.share.publish_breaker(
                backend, "open", cooldown, breaker.last_error or kind
            )
            breaker.follow("open", cooldown + self.share.hold_margin_s)

    def _sync(self, view: FleetView | None) -> None:
        """Adopt a new fleet view (cheap when nothing changed: one identity check)."""
        if view is None or view is self._view:
            return
        self._view = view
        for backend, said in view.breakers.items():
            if self._published.get(backend, 0) <= view.acked:
                self._breaker(backend).follow(said.verdict, said.hold_s, said.message)
        for key, samples in view.latency.items():
            self._latency[key] = LatencyStats.from_samples(samples)

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per-backend breaker state and observed latency, for CLIs and dashboards."""
        out: dict[str, dict[str, object]] = {}
        for name, breaker in self._breakers.items():
            out[name] = {"circuit": breaker.snapshot(), "penalty": self.penalty(name)}
        for (backend, model), stats in self._latency.items():
            est = stats.estimate(0.0)
            entry = out.setdefault(backend, {"circuit": self.breaker(backend).snapshot()})
            latency = entry.setdefault("latency", {})
            assert isinstance(latency, dict)
            latency[model] = {
                "ewma_ms": round(est.expected_ms, 3),
                "p95_ms": round(est.p95_ms, 3),
                "samples": stats.count,
            }
        return out
