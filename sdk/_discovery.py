"""Live price and model discovery: cached, refreshed off the hot path, stale-safe.

Backends that are :class:`~intentmesh.adapters.DiscoversPrices` (``alist_models`` with
``discovers_prices`` true) are asked for their model list (with USD-per-1M prices where the
network publishes them). Results are cached in a ``cachetools.TTLCache``; after the first
(warm-up) fetch, an expired entry is refreshed by a background task while calls go on with the
cached prices. When a fetch fails, the last good prices are used and marked ``stale``; with
none, the configured prices are used, marked ``stale``. :meth:`PriceBook.offers` turns all
this into the solver's offers:

* a configured model the network lists with prices → live prices (``live``/``estimated``);
* a backend with no ``[[backends.models]]`` (zero-config) → one offer per listed, priced model,
  under its catalog name when the id or one of the listing's aliases is in the catalog;
* a listing that says which models run in a TEE (Chutes) withdraws ``attested`` from the
  others; ``attested`` itself comes only from config (``verifiability`` + ``attestation``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import anyio
from cachetools import TTLCache

from intentmesh._catalog import Catalog
from intentmesh.adapters.base import Backend, DiscoversPrices, ListsModels, ModelListing
from intentmesh.config import BackendConfig
from intentmesh.router import Offer

__all__ = ["PriceBook", "PriceCache", "Snapshot"]


class PriceCache(Protocol):
    """Model lists shared between processes (``intentmesh.fleet``), so one fetch serves all.

    Both methods swallow their own failures: a cache that is down means "fetch it yourself".
    """

    async def aget(self, backend: str) -> tuple[list[ModelListing], float] | None:
        """A listing fetched by any process within the TTL, with its age in seconds."""
        ...

    async def aput(self, backend: str, listings: Sequence[ModelListing]) -> None: ...


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One backend's model list as fetched at ``fetched_at`` (the book's clock)."""

    listings: Mapping[str, ModelListing]
    fetched_at: float


class PriceBook:
    """Discovered prices for the backends that publish them."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        entries: Sequence[BackendConfig],
        catalog: Catalog,
        *,
        ttl_s: float = 300.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        shared: PriceCache | None = None,
    ) -> None:
        self.shared = shared
        self.sources: dict[str, ListsModels] = {
            name: b
            for name, b in backends.items()
            if isinstance(b, DiscoversPrices) and b.discovers_prices
        }
        self.entries = {e.name: e for e in entries if e.name in self.sources}
        self.catalog = catalog
        self.timeout_s = timeout_s
        self.clock = clock
        self._fresh: TTLCache[str, Snapshot] = TTLCache(
            maxsize=max(1, len(self.sources)), ttl=ttl_s, timer=clock
        )
        self._last: dict[str, Snapshot] = {}
        self.errors: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.version = 0

    @property
    def active(self) -> bool:
        return bool(self.sources)

    @property
    def warmed(self) -> bool:
        """Every source was asked at least once (successfully or not)."""
        return all(n in self._last or n in self.errors for n in self.sources)

    def expired(self) -> list[str]:
        return [n for n in self.sources if n not in self._fresh]

    async def arefresh(self, names: Sequence[str] | None = None) -> None:
        """Fetch the lists of ``names`` (default: every source) concurrently."""
        todo = list(names) if names is not None else list(self.sources)
        async with anyio.create_task_group() as group:
            for name in todo:
                group.start_soon(self._fetch, name)
        self.version += 1

    async def _fetch(self, name: str) -> None:
        cached = await self.shared.aget(name) if self.shared is not None else None
        if cached is not None:
            listings, age = cached
            self._store(name, Snapshot({m.id: m for m in listings}, self.clock() - age))
            return
        try:
            with anyio.fail_after(self.timeout_s):
                listings = await self.sources[name].alist_models()
        except Exception as exc:  # noqa: BLE001 - any failure means "use what we had"
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            return
        self._store(name, Snapshot({m.id: m for m in listings}, self.clock()))
        if self.shared is not None:
            await self.shared.aput(name, listings)

    def _store(self, name: str, snap: Snapshot) -> None:
        self._fresh[name] = snap
        self._last[name] = snap
        self.errors.pop(name, None)

    async def ensure(self) -> None:
        """Warm up once (awaited); later, refresh expired lists in the background."""
        if not self.active:
            return
        if not self.warmed:
            await self.arefresh()
            return
        stale = self.expired()
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self.arefresh(stale))

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # -- offers ---------------------------------------------------------------------------

    def offers(self, configured: Sequence[Offer]) -> list[Offer]:
        """``configured`` with discovered prices applied, plus zero-config offers."""
        now = self.clock()
        out = [self._priced(offer, now) for offer in configured]
        for name, entry in self.entries.items():
            if not entry.models and entry.enabled:
                out.extend(self._discovered(name, entry, now))
        return out

    def _snapshot(self, name: str) -> tuple[Snapshot | None, bool]:
        fresh = self._fresh.get(name)
        return (fresh, True) if fresh is not None else (self._last.get(name), False)

    def _priced(self, offer: Offer, now: float) -> Offer:
        if offer.backend not in self.sources:
            return offer
        snap, fresh = self._snapshot(offer.backend)
        if snap is None:
            failed = offer.backend in self.errors
            return replace(offer, price_source="stale") if failed else offer
        listing = snap.listings.get(offer.provider_model)
        if listing is None:
            return offer
        levels = _narrowed(offer.verifiability, listing)
        if listing.input_price is None or listing.output_price is None:
            return replace(offer, verifiability=levels)
        return replace(
            offer,
            input_price=listing.input_price,
            output_price=listing.output_price,
            price_source=_source(listing) if fresh else "stale",
            price_age_s=round(now - snap.fetched_at, 3),
            verifiability=levels,
        )

    def _discovered(self, name: str, entry: BackendConfig, now: float) -> list[Offer]:
        snap, fresh = self._snapshot(name)
        if snap is None:
            return []
        base = _levels(entry)
        offers = []
        for listing in snap.listings.values():
            if listing.input_price is None or listing.output_price is None:
                continue
            offers.append(
                Offer(
                    backend=name,
                    network=entry.label,
                    model=self._canonical(listing),
                    provider_model=listing.id,
                    input_price=listing.input_price,
                    output_price=listing.output_price,
                    price_source=_source(listing) if fresh else "stale",
                    price_age_s=round(now - snap.fetched_at, 3),
                    latency_prior_ms=entry.latency_ms,
                    verifiability=_narrowed(base, listing),
                    operator=entry.operator or name,
                )
            )
        return offers

    def _canonical(self, listing: ModelListing) -> str:
        for name in (listing.id, *listing.attributes.get("aliases", ())):
            known = self.catalog.canonical(name)
            if known:
                return known
        return listing.id


def _levels(entry: BackendConfig) -> frozenset[str]:
    """What the entry claims; ``attested`` only with an ``attestation`` table to check it."""
    levels = {"none", "receipt", *entry.verifiability}
    if getattr(entry, "attestation", None) is None and "attestation" not in entry.options:
        levels.discard("attested")
    return frozenset(levels)


def _narrowed(levels: frozenset[str], listing: ModelListing) -> frozenset[str]:
    """A network that says per model which run in a TEE (Chutes' ``confidential_compute``)
    takes ``attested`` away from the others; a listing never adds a level on its own."""
    said = listing.attributes.get("verifiability")
    if said is None or "attested" in said:
        return levels
    return levels - {"attested"}


def _source(listing: ModelListing) -> Any:
    return "estimated" if listing.attributes.get("price_source") == "estimated" else "live"
