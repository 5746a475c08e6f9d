"""Pre-ranked offers: the head of a plan without looking at every backend.

:func:`~intentmesh.router._solver.solve` looks at every offer, which is right for a dry run but
grows with the number of backends. :class:`RouteIndex` keeps, per canonical model,

* the offers grouped by price (``(input, output)`` per 1M tokens), each group ordered by
  expected latency, and the groups ordered by input and by output price, and
* every offer ordered by expected latency,

updated incrementally: a changed offer list is diffed, and the :class:`HealthBook` reports
each latency it learns. A request then walks these orders lazily (Fagin's threshold algorithm
for expected cost and for ``balanced``), checks each offer it meets with the solver's own rules,
and stops once it has the first ``limit`` feasible candidates. The head is exactly the first
``limit`` candidates of ``solve`` for the same inputs, score for score.
"""

from __future__ import annotations

import heapq
import itertools
import math
import weakref
from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from intentmesh.router._health import HealthBook, LatencyEstimate
from intentmesh.router._plan import Candidate, Offer, RouteRequest
from intentmesh.router._solver import EXPECTED_OUTPUT_FRACTION, Quote, check_offer

__all__ = ["HEAD_SIZE", "RouteIndex"]

HEAD_SIZE = 4
"""Feasible candidates a call plans with (failover and hedging go down these, in order)."""
_INF = math.inf
_serial = itertools.count()


class _Entry:
    """One offer in the index, with the latency estimate it is ordered by."""

    __slots__ = ("key", "lat", "offer", "price", "serial")

    def __init__(self, offer: Offer, lat: LatencyEstimate) -> None:
        self.offer = offer
        self.price = (offer.input_price, offer.output_price)
        self.serial = next(_serial)  # last tie-break: two identical offers
        self.relate(lat)

    def relate(self, lat: LatencyEstimate) -> _Key:
        """Order the entry by ``lat`` from now on; returns its new key (also ``self.key``)."""
        self.lat = lat
        self.key = _Key(
            lat.expected_ms, self.offer.backend, self.offer.provider_model, self.serial, self
        )
        return self.key


class _Key(NamedTuple):
    """Latency order within a price group, and the solver's tie-breaks."""

    latency_ms: float
    backend: str
    provider_model: str
    serial: int
    entry: _Entry


class _Book:
    """The orders kept for one canonical model."""

    __slots__ = ("by_in", "by_latency", "by_out", "groups")

    def __init__(self) -> None:
        self.groups: dict[tuple[float, float], list[_Key]] = {}
        self.by_in: list[tuple[float, float]] = []  # price groups by (input, output)
        self.by_out: list[tuple[float, float]] = []  # price groups by (output, input)
        self.by_latency: list[_Key] = []

    def add(self, key: _Key) -> None:
        price = key.entry.price
        group = self.groups.get(price)
        if group is None:
            group = self.groups[price] = []
            insort(self.by_in, price)
            insort(self.by_out, (price[1], price[0]))
        insort(group, key)
        insort(self.by_latency, key)

    def rekey(self, old: _Key, new: _Key) -> None:
        """``old`` (same entry, same price) is now ordered by ``new``: swapped in place where
        the order holds (a latency estimate usually moves less than the gap to a neighbour)."""
        group = self.groups[old.entry.price]
        i, j = _slot(group, old, new), _slot(self.by_latency, old, new)
        if i is None or j is None:
            self.remove(old)
            self.add(new)
        else:
            group[i] = self.by_latency[j] = new

    def remove(self, key: _Key) -> None:
        price = key.entry.price
        group = self.groups[price]
        _drop(group, key)
        _drop(self.by_latency, key)
        if not group:
            del self.groups[price]
            _drop(self.by_in, price)
            _drop(self.by_out, (price[1], price[0]))


def _slot(ordered: list[_Key], old: _Key, new: _Key) -> int | None:
    """Where ``old`` is in ``ordered`` if ``new`` would sort into the same place, else None."""
    i = bisect_left(ordered, old)
    if i == len(ordered) or ordered[i] != old:
        return None
    if (i > 0 and not ordered[i - 1] < new) or (i + 1 < len(ordered) and not new < ordered[i + 1]):
        return None
    return i


def _drop(ordered: list, item: object) -> None:  # type: ignore[type-arg]
    i = bisect_left(ordered, item)
    if i < len(ordered) and ordered[i] == item:
        del ordered[i]


class _Stale(Exception):
    """The index's latency for an offer differs from the health book's (a missed update)."""


# One step of a walk: (score, latency_ms, backend, provider_model, serial, entry).
_Item = tuple[float, float, str, str, int, _Entry]


class RouteIndex:
    """Offers pre-ranked per model; :meth:`head` plans a call in time independent of their count.

    Register the offers with :meth:`sync` (cheap when the list is the same object as last time);
    latency the ``health`` book learns reaches the index through :meth:`HealthBook.subscribe`.
    """

    def __init__(self, health: HealthBook) -> None:
        self.health = health
        self._books: dict[str, _Book] = {}
        self._entries: dict[Offer, list[_Entry]] = {}
        self._by_backend: dict[str, list[_Entry]] = {}
        self._source: Sequence[Offer] | None = None
        ref = weakref.ref(self)

        def changed(backend: str, provider_model: str | None) -> bool:
            index = ref()
            if index is None:
                return False
            index._relatency(backend, provider_model)
            return True

        health.subscribe(changed)

    # -- keeping it current ---------------------------------------------------------------

    def sync(self, offers: Sequence[Offer]) -> None:
        """Make the index hold exactly ``offers``: only what changed is moved."""
        if offers is self._source:
            return
        wanted = set(offers)
        for gone in [o for o in self._entries if o not in wanted]:
            self._remove(gone)
        for offer in wanted:
            if offer not in self._entries:
                self._add(offer)
        self._source = offers

    def rebuild(self, offers: Sequence[Offer]) -> None:
        """Forget everything and index ``offers`` afresh."""
        self._books.clear()
        self._entries.clear()
        self._by_backend.clear()
        self._source = None
        self.sync(offers)

    def _add(self, offer: Offer) -> None:
        lat = self.health.latency(offer.backend, offer.provider_model, offer.latency_prior_ms)
        entry = _Entry(offer, lat)
        self._books.setdefault(offer.model, _Book()).add(entry.key)
        self._entries.setdefault(offer, []).append(entry)
        self._by_backend.setdefault(offer.backend, []).append(entry)

    def _remove(self, offer: Offer) -> None:
        for entry in self._entries.pop(offer):
            book = self._books[offer.model]
            book.remove(entry.key)
            if not book.groups:
                del self._books[offer.model]
            entries = self._by_backend[offer.backend]
            entries.remove(entry)
            if not entries:
                del self._by_backend[offer.backend]

    def _relatency(self, backend: str, provider_model: str | None) -> None:
        """The health book learned a latency for ``backend`` (one model, or all when None)."""
        for entry in self._by_backend.get(backend, ()):
            offer = entry.offer
            if provider_model is not None and offer.provider_model != provider_model:
                continue
            lat = self.health.latency(backend, offer.provider_model, offer.latency_prior_ms)
            if lat.expected_ms == entry.lat.expected_ms:
                entry.lat = lat
                continue
            old = entry.key
            self._books[offer.model].rekey(old, entry.relate(lat))  # entry.key is the new one

    # -- planning ---------------------------------------------------------------------------

    def head(
        self, request: RouteRequest, offers: Sequence[Offer], limit: int = HEAD_SIZE
    ) -> tuple[Candidate, ...]:
        """The first ``limit`` candidates ``solve(request, offers, ...)`` would order."""
        self.sync(offers)
        try:
            return _Walk(self, request, limit).run()
        except _Stale:
            self.rebuild(offers)
            return _Walk(self, request, limit).run()


class _Walk:
    """One request's lazy walk over the index."""

    def __init__(self, index: RouteIndex, request: RouteRequest, limit: int) -> None:
        self.index = index
        self.health = index.health
        self.request = request
        self.limit = limit
        self.prompt = request.prompt_tokens_expected
        self.output = int(request.max_tokens * EXPECTED_OUTPUT_FRACTION)
        self.quotes: dict[int, Quote | None] = {}

    def run(self) -> tuple[Candidate, ...]:
        rank_of = {model: i for i, model in enumerate(self.request.models)}
        models = sorted(rank_of, key=rank_of.__getitem__)
        books = [b for m in models if (b := self.index._books.get(m)) is not None]
        optimize = self.request.optimize
        scored: Callable[[_Book], Iterator[_Item]]
        if optimize == "latency":
            scored = self._by_latency
        elif optimize == "balanced":
            mins = self._minima(books)
            if mins is None:
                return ()
            scored = lambda book: self._balanced(book, *mins)  # noqa: E731
        else:
            scored = self._by_cost
        out: list[Candidate] = []
        for book in books:
            for item in scored(book):
                q = self.quotes[item[4]]
                assert q is not None
                lat = q.latency
                out.append(
                    Candidate(q.offer, q.worst, q.expected, lat.expected_ms, lat.p95_ms, item[0])
                )
                if len(out) >= self.limit:
                    return tuple(out)
        return tuple(out)

    # -- the solver's checks, once per offer ----------------------------------------------

    def quote(self, key: _Key) -> Quote | None:
        """The solver's verdict on one offer (None when infeasible), remembered for the walk."""
        serial = key.serial
        if serial in self.quotes:
            return self.quotes[serial]
        found = check_offer(self.request, key.entry.offer, self.health)
        q = found if isinstance(found, Quote) else None
        if q is not None and q.latency.expected_ms != key.latency_ms:
            raise _Stale
        self.quotes[serial] = q
        return q

    def _penalized(self, raw: float, key: _Key) -> _Item:
        penalty = self.health.penalty(key.backend)
        score = raw * (1.0 + 0.25 * penalty) if penalty else raw
        return (score, key.latency_ms, key.backend, key.provider_model, key.serial, key.entry)

    # -- orders -----------------------------------------------------------------------------

    def _costs(self, book: _Book) -> Iterator[tuple[float, _Key]]:
        """Every offer of ``book`` by expected cost, then latency, backend, provider model."""
        p, o = self.prompt, self.output
        groups = book.groups
        heap: list[tuple[float, _Key, int, list[_Key]]] = []

        def discover(price: tuple[float, float]) -> None:
            group = groups[price]
            heapq.heappush(heap, ((p * price[0] + o * price[1]) / 1e6, group[0], 0, group))

        by_in, by_out = book.by_in, book.by_out
        n = len(by_in)
        i = j = 0
        seen: set[tuple[float, float]] = set()
        while True:
            # No group not yet discovered can cost less than this bound.
            bound = (p * by_in[i][0] + o * by_out[j][0]) / 1e6 if i < n and j < n else _INF
            while heap and heap[0][0] < bound:
                cost, key, at, group = heapq.heappop(heap)
                yield cost, key
                if at + 1 < len(group):
                    heapq.heappush(heap, (cost, group[at + 1], at + 1, group))
            if bound == _INF:
                return
            for price in (by_in[i], (by_out[j][1], by_out[j][0])):
                if price not in seen:
                    seen.add(price)
                    discover(price)
            i, j = i + 1, j + 1

    def _by_cost(self, book: _Book) -> Iterator[_Item]:
        return self._ranked((cost, key) for cost, key in self._costs(book))

    def _by_latency(self, book: _Book) -> Iterator[_Item]:
        return self._ranked((key.latency_ms, key) for key in book.by_latency)

    def _ranked(self, raw: Iterator[tuple[float, _Key]]) -> Iterator[_Item]:
        """Feasible offers of a stream ordered by raw score, re-ordered by penalised score.

        A penalty only raises a score, so an offer waits in a heap until no later offer of
        the stream can come before it.
        """
        held: list[_Item] = []
        for score, key in raw:
            if self.quote(key) is None:
                continue
            while held and held[0][:5] <= (score, *key[:4]):
                yield heapq.heappop(held)
            item = self._penalized(score, key)
            if item[0] == score:
                yield item
            else:
                heapq.heappush(held, item)
        while held:
            yield heapq.heappop(held)

    # -- balanced ---------------------------------------------------------------------------

    def _minima(self, books: list[_Book]) -> tuple[float, float] | None:
        """The smallest feasible expected cost and latency over every requested model."""
        costs = [c for b in books for c in itertools.islice(self._first_cost(b), 1)]
        lats = [key.latency_ms for b in books for key in _first_feasible(self, b.by_latency)]
        if not costs:
            return None
        return (min(costs) or 1e-12), (min(lats) or 1e-3)

    def _first_cost(self, book: _Book) -> Iterator[float]:
        for _, key in self._costs(book):
            q = self.quote(key)
            if q is not None:
                yield q.expected
                return

    def _balanced(self, book: _Book, min_cost: float, min_lat: float) -> Iterator[_Item]:
        """Threshold algorithm over the cost and the latency order of one model."""
        costs, lats = self._costs(book), iter(book.by_latency)
        seen: set[int] = set()
        held: list[_Item] = []
        next_cost: tuple[float, _Key] | None = next(costs, None)
        next_lat: _Key | None = next(lats, None)
        while next_cost is not None and next_lat is not None:
            # Nothing not yet seen can come before this (score, then the latency order).
            bound = next_cost[0] / min_cost + next_lat.latency_ms / min_lat
            floor = (bound, *next_lat[:4])
            while held and held[0][:5] < floor:
                yield heapq.heappop(held)
            for key in (next_cost[1], next_lat):
                if key.serial in seen:
                    continue
                seen.add(key.serial)
                q = self.quote(key)
                if q is not None:
                    raw = (q.expected or 1e-12) / min_cost + q.latency.expected_ms / min_lat
                    heapq.heappush(held, self._penalized(raw, key))
            next_cost, next_lat = next(costs, None), next(lats, None)
        while held:  # one order is exhausted: every offer has been seen
            yield heapq.heappop(held)


def _first_feasible(walk: _Walk, ordered: list[_Key]) -> Iterator[_Key]:
    """The first feasible offer of ``ordered``, if any."""
    for key in ordered:
        if walk.quote(key) is not None:
            yield key
            return
