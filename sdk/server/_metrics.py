"""Prometheus text exposition of the gateway's counters, written by hand (no client library)."""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping

__all__ = ["Metrics"]

_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests, errors by type, latency histogram, cost and tokens; cheap to update."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[tuple[str, str]] = Counter()
        self.cost: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.tokens: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self._buckets: Counter[tuple[str, int]] = Counter()
        self._latency_sum: defaultdict[str, float] = defaultdict(float)
        self._latency_count: Counter[str] = Counter()

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, status)] += 1
        self._buckets[(endpoint, bisect.bisect_left(_BUCKETS_S, seconds))] += 1
        self._latency_sum[endpoint] += seconds
        self._latency_count[endpoint] += 1

    def error(self, endpoint: str, error_type: str) -> None:
        self.errors[(endpoint, error_type)] += 1

    def spend(self, backend: str, network: str, cost_usd: float, prompt: int, out: int) -> None:
        self.cost[(backend, network)] += cost_usd
        self.tokens[(backend, "prompt")] += prompt
        self.tokens[(backend, "completion")] += out

    def render(self) -> str:
        lines: list[str] = []
        lines += _family(
            "intentmesh_requests_total",
            "counter",
            "Requests by endpoint and HTTP status.",
            ((f'endpoint="{e}",status="{s}"', n) for (e, s), n in sorted(self.requests.items())),
        )
        lines += _family(
            "intentmesh_errors_total",
            "counter",
            "Error responses by endpoint and error type.",
            ((f'endpoint="{e}",type="{t}"', n) for (e, t), n in sorted(self.errors.items())),
        )
        lines += _family(
            "intentmesh_cost_usd_total",
            "counter",
            "USD charged by backends.",
            ((f'backend="{b}",network="{w}"', c) for (b, w), c in sorted(self.cost.items())),
        )
        lines += _family(
            "intentmesh_tokens_total",
            "counter",
            "Tokens by backend and kind.",
            ((f'backend="{b}",kind="{k}"', n) for (b, k), n in sorted(self.tokens.items())),
        )
        lines += _family(
            "intentmesh_in_flight_requests",
            "gauge",
            "Requests being served now.",
            [("", self.in_flight)],
        )
        lines += self._histogram()
        return "\n".join(lines) + "\n"

    def _histogram(self) -> list[str]:
        name = "intentmesh_request_duration_seconds"
        lines = [f"# HELP {name} End-to-end request latency.", f"# TYPE {name} histogram"]
        for endpoint in sorted(self._latency_count):
            lines += _buckets(name, endpoint, self._buckets)
            lines.append(f'{name}_sum{{endpoint="{endpoint}"}} {self._latency_sum[endpoint]}')
            lines.append(f'{name}_count{{endpoint="{endpoint}"}} {self._latency_count[endpoint]}')
        return lines


def _buckets(name: str, endpoint: str, counts: Mapping[tuple[str, int], int]) -> list[str]:
    lines: list[str] = []
    total = 0
    for i, bound in enumerate((*_BUCKETS_S, float("inf"))):
        total += counts.get((endpoint, i), 0)
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{endpoint="{endpoint}",le="{le}"}} {total}')
    return lines


def _family(
    name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        lines.append(f"{name}{{{labels}}} {value}" if labels else f"{name} {value}")
    return lines
