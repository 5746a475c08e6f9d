"""Opt-in exact-match response cache for deterministic intents (temperature 0 and a seed)."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import TYPE_CHECKING

from cachetools import TTLCache

if TYPE_CHECKING:
    from intentmesh._catalog import Catalog
    from intentmesh._intent import Intent
    from intentmesh._result import InferenceResult

__all__ = ["ResponseCache"]

# Everything that changes the answer; limits and routing preferences do not.
_KEY_FIELDS = (
    "messages",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "networks",
    "exclude",
)


class ResponseCache:
    """A TTL cache of results keyed by a digest of the answer-determining intent fields."""

    def __init__(self, maxsize: int, ttl_s: float) -> None:
        self._store: TTLCache[str, InferenceResult] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl_s) if maxsize > 0 else None
        )
        self._lock = threading.Lock()

    def key_for(self, intent: Intent, catalog: Catalog) -> str | None:
        """The cache key, or None when the intent is not deterministic (never cached)."""
        if self._store is None or not intent.deterministic:
            return None
        data = intent.model_dump(mode="json", include=set(_KEY_FIELDS))
        data["models"] = [catalog.resolve(m) for m in intent.models]
        raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()

    def get(self, key: str) -> InferenceResult | None:
        if self._store is None:
            return None
        with self._lock:
            return self._store.get(key)

    def put(self, key: str, result: InferenceResult) -> None:
        if self._store is not None:
            with self._lock:
                self._store[key] = result
