"""The discovery price cache in Redis: one fetch of a network's model list serves the fleet."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from intentmesh.adapters.base import ModelListing
from intentmesh.errors import StateUnavailable
from intentmesh.fleet._redis import RedisState

__all__ = ["RedisPriceCache"]

_log = logging.getLogger("intentmesh.fleet")


class RedisPriceCache:
    """:class:`~intentmesh._discovery.PriceCache` in Redis, entries expiring after ``ttl_s``.

    Fails open: when Redis is down each process fetches for itself.
    """

    def __init__(self, state: RedisState, ttl_s: float = 300.0) -> None:
        self.state = state
        self.ttl_ms = max(1, round(ttl_s * 1000))

    async def aget(self, backend: str) -> tuple[list[ModelListing], float] | None:
        try:
            with self.state.errors("price cache read"):
                raw = await self.state.conn().client.get(self.state.key("prices", backend))
        except StateUnavailable as exc:
            _log.warning("%s", exc)
            return None
        if raw is None:
            return None
        data = json.loads(raw)
        listings = [ModelListing(**item) for item in data["listings"]]
        return listings, max(time.time() - float(data["at"]), 0.0)

    async def aput(self, backend: str, listings: Sequence[ModelListing]) -> None:
        payload = {
            "at": time.time(),
            "listings": [
                {
                    "id": m.id,
                    "input_price": m.input_price,
                    "output_price": m.output_price,
                    "context_length": m.context_length,
                    "attributes": _plain(dict(m.attributes)),
                }
                for m in listings
            ],
        }
        try:
            with self.state.errors("price cache write"):
                await self.state.conn().client.set(
                    self.state.key("prices", backend), json.dumps(payload), px=self.ttl_ms
                )
        except StateUnavailable as exc:
            _log.warning("%s", exc)


def _plain(attributes: dict[str, object]) -> dict[str, object]:
    """JSON-safe attributes (sets and tuples become lists)."""
    return {
        k: sorted(v) if isinstance(v, (set, frozenset)) else list(v) if isinstance(v, tuple) else v
        for k, v in attributes.items()
    }
