"""Circuit breakers and latency shared through Redis, off the request path.

A daemon thread wakes every ``[state] sync_interval_s`` (≤ 0.5 s): it pushes this process's
circuit changes and latency samples, then reads the fleet's verdict per backend in one script
(:data:`~intentmesh.fleet._lua.POLL_BREAKERS`). When an open circuit's cooldown has passed, the
script gives the half-open trial to exactly one process (a lease of ``trial_lease_s``); the
others stay open until that trial closes or reopens the circuit. Requests only read the last
view (:class:`~intentmesh.router.HealthBook` adopts it on its next read), so the shared path
costs no round trip. While Redis is unreachable the view is None and each process runs on its
own breakers (fail open); the thread keeps trying and resumes sharing when it returns.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from intentmesh.fleet._redis import RedisState
from intentmesh.router import FleetVerdict, FleetView

__all__ = ["RedisHealthShare"]

_log = logging.getLogger("intentmesh.fleet")
_WINDOW = 64


class RedisHealthShare:
    """:class:`~intentmesh.router.HealthShare` over Redis, synced by a daemon thread."""

    def __init__(self, state: RedisState, backends: Sequence[str]) -> None:
        self.state = state
        self.backends = list(backends)
        self.interval_s = state.config.sync_interval_s
        self._lease_ms = max(1, round(state.config.trial_lease_s * 1000))
        self.hold_margin_s = 2 * self.interval_s + 0.5
        self._events: deque[tuple[Any, ...]] = deque()
        self._seq = itertools.count(1)
        self._stop = threading.Event()
        self._view: FleetView | None = None
        self._pushed = 0
        self.available = True
        self._client = state.sync_client()
        self._poll_script = self._client.register_script(_load("POLL_BREAKERS"))
        self._set_script = self._client.register_script(_load("BREAKER_SET"))
        self._thread = threading.Thread(target=self._run, name="intentmesh-fleet", daemon=True)
        self._thread.start()

    @property
    def view(self) -> FleetView | None:
        return self._view

    def publish_breaker(self, backend: str, verdict: str, cooldown_s: float, message: str) -> int:
        seq = next(self._seq)
        self._events.append(("breaker", seq, backend, verdict, cooldown_s, message))
        return seq

    def publish_latency(self, backend: str, model: str, latency_ms: float) -> None:
        self._events.append(("latency", 0, backend, model, latency_ms))

    def sync_now(self) -> None:
        """One push-and-poll cycle now (the thread does this every ``sync_interval_s``)."""
        acked = self._push()
        self._view = self._poll(acked)

    def close(self) -> None:
        """Stop the thread, pushing what is still queued (best effort)."""
        self._stop.set()
        self._thread.join(timeout=5)
        if self._events:
            with contextlib.suppress(Exception):
                self._push()
        self._client.close()

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_now()
                if not self.available:
                    _log.warning("shared state store %s is back; sharing health", self.state.where)
                self.available = True
            except Exception as exc:  # noqa: BLE001 - any failure: fall back to local state
                self._view = None
                if self.available:
                    _log.warning(
                        "shared state store %s unavailable (%s); breakers run on local state",
                        self.state.where,
                        type(exc).__name__,
                    )
                self.available = False
            self._stop.wait(self.interval_s)

    def _push(self) -> int:
        """Write queued events; the highest circuit-change sequence the store now reflects."""
        acked = self._pushed
        pipe = self._client.pipeline(transaction=False)
        pending: list[tuple[Any, ...]] = []
        while self._events:
            pending.append(self._events.popleft())
        try:
            for event in pending:
                acked = max(acked, self._push_one(pipe, event))
            if pending:
                pipe.execute()
        except Exception:
            self._events.extendleft(reversed(pending))  # keep them for the next cycle
            raise
        self._pushed = acked
        return acked

    def _push_one(self, pipe: Any, event: tuple[Any, ...]) -> int:
        kind, seq, backend = event[0], event[1], event[2]
        if kind == "breaker":
            verdict, cooldown_s, message = event[3], event[4], event[5]
            keys = [self.state.key("breaker", backend), self.state.key("breaker", backend, "trial")]
            ms = max(1, round(cooldown_s * 1000))
            self._set_script(keys=keys, args=[verdict, ms, message[:200]], client=pipe)
            return int(seq)
        model, sample = event[3], event[4]
        key = self.state.key("latency", backend, model)
        pipe.rpush(key, f"{sample:.3f}")
        pipe.ltrim(key, -_WINDOW, -1)
        pipe.sadd(self.state.key("latency-index"), f"{backend}|{model}")
        return 0

    def _poll(self, acked: int) -> FleetView:
        keys: list[str] = []
        for name in self.backends:
            keys += [self.state.key("breaker", name), self.state.key("breaker", name, "trial")]
        flat = self._poll_script(keys=keys, args=[self.state.id, self._lease_ms]) if keys else []
        breakers = {}
        for i, name in enumerate(self.backends):
            verdict, ms, error = flat[3 * i : 3 * i + 3]
            said = _text(verdict)
            hold = int(ms) / 1000 + self.hold_margin_s if said == "open" else 0.0
            breakers[name] = FleetVerdict(said, hold, _text(error) or None)
        return FleetView(acked, breakers, self._latency())

    def _latency(self) -> dict[tuple[str, str], tuple[float, ...]]:
        wanted = set(self.backends)
        pairs = [
            tuple(_text(m).split("|", 1))
            for m in self._client.smembers(self.state.key("latency-index"))
        ]
        pairs = [p for p in pairs if len(p) == 2 and p[0] in wanted]
        if not pairs:
            return {}
        pipe = self._client.pipeline(transaction=False)
        for backend, model in pairs:
            pipe.lrange(self.state.key("latency", backend, model), 0, -1)
        out = {}
        for (backend, model), samples in zip(pairs, pipe.execute(), strict=True):
            if samples:
                out[(backend, model)] = tuple(float(s) for s in samples)
        return out


def _load(name: str) -> str:
    from intentmesh.fleet import _lua

    return str(getattr(_lua, name))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
