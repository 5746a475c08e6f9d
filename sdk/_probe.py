"""Health probes: a cheap call per backend whose outcome feeds breakers and latency priors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from intentmesh.adapters.base import Backend, HealthCheck, ListsModels, ModelListing
from intentmesh.errors import BackendError

__all__ = ["probe_backend"]

T = TypeVar("T")


async def probe_backend(backend: Backend, wanted: Iterable[str], limit_s: float) -> dict[str, Any]:
    """Probe with the backend's model list (or its ``ahealth``); never raises for a bad backend.

    Returns ``ok`` (None when the type cannot be probed), ``latency_ms``, and for model lists
    ``models_listed`` and ``missing_models`` (configured ids the backend no longer lists).
    """
    if isinstance(backend, ListsModels):
        return await _timed(backend.alist_models(), limit_s, lambda found: _listed(found, wanted))
    if isinstance(backend, HealthCheck):
        return await _timed(backend.ahealth(), limit_s, _healthy)
    return {"ok": None, "latency_ms": None, "error": "this backend type cannot be probed"}


async def _timed(
    call: Awaitable[T], limit_s: float, judge: Callable[[T], dict[str, Any]]
) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        answer = await asyncio.wait_for(call, limit_s)
    except TimeoutError:
        return {"ok": False, "latency_ms": None, "error_kind": "timeout",
                "error": f"no answer in {limit_s:g} s"}
    except BackendError as exc:
        return {"ok": False, "latency_ms": None, "error_kind": exc.kind, "error": str(exc)}
    verdict = judge(answer)
    latency = round((time.perf_counter() - started) * 1000, 3)
    return {"ok": verdict.pop("ok"), "latency_ms": latency, **verdict}


def _healthy(answer: bool) -> dict[str, Any]:
    if answer:
        return {"ok": True}
    return {"ok": False, "error_kind": "unavailable", "error": "reports unhealthy"}


def _listed(found: list[ModelListing], wanted: Iterable[str]) -> dict[str, Any]:
    listed = {m.id for m in found}
    return {"ok": True, "models_listed": len(listed),
            "missing_models": [m for m in wanted if m not in listed]}
