"""A few Prometheus metrics in text exposition format, with no client library.

Names mirror vLLM's (``vllm:generation_tokens_total`` becomes
``intentmesh_local:generation_tokens_total``); every series carries ``model_name``.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

__all__ = ["ServerMetrics"]

_PREFIX = "intentmesh_local:"
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class _Histogram:
    buckets: tuple[float, ...] = _LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(_LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f'{name}_bucket{{{labels},le="{le}"}} {running}')
        lines.append(f"{name}_sum{{{labels}}} {self.total}")
        lines.append(f"{name}_count{{{labels}}} {self.count}")
        return lines


class ServerMetrics:
    """Counters, gauges and histograms of one server; safe to update from any thread."""

    def __init__(self, model_name: str):
        self._labels = f'model_name="{model_name}"'
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.running = 0
        self.waiting = 0
        self.ttft = _Histogram()
        self.latency = _Histogram()

    def count_request(self, endpoint: str, status: int) -> None:
        with self._lock:
            key = (endpoint, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1

    def record_answer(self, prompt_tokens: int, generation_tokens: int, latency_s: float) -> None:
        with self._lock:
            self.prompt_tokens += prompt_tokens
            self.generation_tokens += generation_tokens
            self.latency.observe(latency_s)

    def record_first_token(self, ttft_s: float) -> None:
        with self._lock:
            self.ttft.observe(ttft_s)

    def queue_changed(self, *, running: int, waiting: int) -> None:
        with self._lock:
            self.running, self.waiting = running, waiting

    def render(self) -> str:
        """The exposition text for ``GET /metrics``."""
        with self._lock:
            return "\n".join(self._lines()) + "\n"

    def _lines(self) -> list[str]:
        p, labels = _PREFIX, self._labels
        lines = [f"# TYPE {p}requests_total counter"]
        for (endpoint, status), count in sorted(self.requests.items()):
            lines.append(
                f'{p}requests_total{{{labels},endpoint="{endpoint}",status="{status}"}} {count}'
            )
        for name, kind, value in (
            ("prompt_tokens_total", "counter", self.prompt_tokens),
            ("generation_tokens_total", "counter", self.generation_tokens),
            ("num_requests_running", "gauge", self.running),
            ("num_requests_waiting", "gauge", self.waiting),
        ):
            lines += [f"# TYPE {p}{name} {kind}", f"{p}{name}{{{labels}}} {value}"]
        for name, hist in (
            ("time_to_first_token_seconds", self.ttft),
            ("e2e_request_latency_seconds", self.latency),
        ):
            lines.append(f"# TYPE {p}{name} histogram")
            lines += hist.render(p + name, labels)
        return lines
