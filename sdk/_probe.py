"""Health probes: a cheap call per backend whose outcome feeds breakers and latency priors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from intentmesh.adapters.base import Backend
from intentmesh.errors import BackendError

__all__ = ["probe_backend"]


async def probe_backend(backend: Backend, wanted: Iterable[str], limit_s: float) -> dict[str, Any]:
    """Probe with the backend's model list (or its ``ahealth``); never raises for a bad backend.

    Returns ``ok`` (None when the type cannot be probed), ``latency_ms``, and for model lists
    ``models_listed`` and ``missing_models`` (configured ids the backend no longer lists).
    """
    lister = getattr(backend, "alist_models", None)
    health = getattr(backend, "ahealth", None)
    if lister is None and health is None:
        return {"ok": None, "latency_ms": None, "error": "this backend type cannot be probed"}
    started = time.perf_counter()
    try:
        answer = await asyncio.wait_for((lister or health)(), limit_s)  # type: ignore[misc]
    except TimeoutError:
        return {"ok": False, "latency_ms": None, "error_kind": "timeout",
                "error": f"no answer in {limit_s:g} s"}
    except BackendError as exc:
        return {"ok": False, "latency_ms": None, "error_kind": exc.kind, "error": str(exc)}
    latency = round((time.perf_counter() - started) * 1000, 3)
    if lister is None:
        healthy = bool(answer)
        return {"ok": healthy, "latency_ms": latency,
                **({} if healthy else {"error_kind": "unavailable", "error": "reports unhealthy"})}
    listed = {m.id for m in answer}
    return {"ok": True, "latency_ms": latency, "models_listed": len(listed),
            "missing_models": [m for m in wanted if m not in listed]}
