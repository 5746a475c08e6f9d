"""The solver: a pure function from a route request, offers and health to an ordered plan."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import NamedTuple

from intentmesh.router._health import HealthBook, LatencyEstimate
from intentmesh.router._plan import Candidate, Offer, Plan, Rejection, RouteRequest

__all__ = ["EXPECTED_OUTPUT_FRACTION", "Quote", "check_offer", "solve", "usd"]

# Expected cost assumes this share of max_tokens is generated; the cap uses all of it.
EXPECTED_OUTPUT_FRACTION = 0.5
_LEVEL_NEEDS_OFFER = frozenset({"attested", "consensus", "proof"})


def usd(amount: float) -> str:
    """Format a USD amount readably: ``$0.0031``, ``$12.5``, ``$0``."""
    if amount == 0:
        return "$0"
    text = f"{amount:.6g}" if amount >= 1e-4 else f"{amount:.3e}"
    return "$" + text


class Quote(NamedTuple):
    """A feasible offer priced for one request: worst-case and expected cost, latency."""

    offer: Offer
    worst: float
    expected: float
    latency: LatencyEstimate


def solve(
    request: RouteRequest,
    offers: Iterable[Offer],
    health: HealthBook,
    backends: Mapping[str, str],
) -> Plan:
    """Order every feasible offer for ``request`` and explain every infeasible backend.

    ``backends`` maps each configured backend name to its network, so that backends serving
    none of the requested models are reported too. Equal inputs give equal plans.
    """
    rank_of = {model: i for i, model in enumerate(request.models)}
    quotes: list[Quote] = []
    rejections: list[Rejection] = []
    serving: set[str] = set()
    for offer in offers:
        rank = rank_of.get(offer.model)
        if rank is None:
            continue
        serving.add(offer.backend)
        rejection = check_offer(request, offer, health)
        if isinstance(rejection, Rejection):
            rejections.append(rejection)
        else:
            quotes.append(rejection)
    if len(serving) < len(backends):
        rejections.extend(_unserved(request, backends, serving))
    candidates = _rank(request, quotes, health)
    if len(rejections) > 1:
        rejections.sort(key=lambda r: (rank_of.get(r.model, len(rank_of)), r.backend))
    return Plan(request.models, tuple(candidates), tuple(rejections), request)


def check_offer(request: RouteRequest, offer: Offer, health: HealthBook) -> Rejection | Quote:
    """Apply every hard constraint in order; the first one broken is the reason."""
    name, model = offer.backend, offer.model
    if request.networks is not None and not (
        offer.network in request.networks or name in request.networks
    ):
        allowed = ", ".join(sorted(request.networks))
        return Rejection(
            name,
            "network_not_allowed",
            f"{name}: network {offer.network!r} is not in networks [{allowed}]",
            model,
        )
    if request.exclude and (offer.network in request.exclude or name in request.exclude):
        return Rejection(name, "excluded", f"{name}: excluded by the intent", model)
    level = request.verifiability
    if level in _LEVEL_NEEDS_OFFER and level not in offer.verifiability:
        shown = ", ".join(sorted(offer.verifiability - {"none"})) or "none"
        why = f"no proof system for {model!r}; " if level == "proof" else ""
        return Rejection(
            name,
            "verifiability_unsupported",
            f"{name}: {why}cannot show verifiability {level!r} (offers: {shown})",
            model,
        )
    if health.any_gone and health.is_gone(name, offer.provider_model):
        return Rejection(
            name, "model_gone", f"{name}: answered 404 for {offer.provider_model!r} recently", model
        )
    breaker = health.breaker_if_tripped(name)
    if breaker is not None and not breaker.allows():
        return Rejection(
            name,
            "circuit_open",
            f"{name}: circuit open after repeated failures (retry in {breaker.retry_in_s():.0f} s)",
            model,
        )
    worst = offer.worst_case_cost(request.prompt_tokens_max, request.max_tokens)
    if request.max_price_usd is not None and worst > request.max_price_usd:
        return Rejection(
            name,
            "over_price_cap",
            f"{name}: worst case {usd(worst)} exceeds cap {usd(request.max_price_usd)}",
            model,
        )
    latency = health.latency(name, offer.provider_model, offer.latency_prior_ms)
    if request.max_latency_ms is not None and latency.p95_ms > request.max_latency_ms:
        return Rejection(
            name,
            "over_latency_target",
            f"{name}: expected p95 latency {latency.p95_ms:.0f} ms exceeds "
            f"target {request.max_latency_ms:.0f} ms",
            model,
        )
    expected_out = int(request.max_tokens * EXPECTED_OUTPUT_FRACTION)
    expected = offer.cost(request.prompt_tokens_expected, expected_out)
    return Quote(offer, worst, expected, latency)


def _unserved(
    request: RouteRequest, backends: Mapping[str, str], serving: set[str]
) -> list[Rejection]:
    wanted = " or ".join(repr(m) for m in request.models)
    return [
        Rejection(name, "model_not_served", f"{name}: does not serve {wanted}", request.models[0])
        for name in sorted(backends)
        if name not in serving
    ]


def _rank(request: RouteRequest, quotes: list[Quote], health: HealthBook) -> list[Candidate]:
    """Score by the intent's goal, break ties by latency, name, then provider model id;
    penalties push down."""
    if not quotes:
        return []
    score_of = _scorer(request.optimize, quotes)
    rank_of = {model: i for i, model in enumerate(request.models)}
    keyed = []
    for q in quotes:
        score = score_of(q)
        penalty = health.penalty(q.offer.backend)
        if penalty:
            score *= 1.0 + 0.25 * penalty
        o, latency = q.offer, q.latency.expected_ms
        keyed.append((rank_of[o.model], score, latency, o.backend, o.provider_model, q))
    keyed.sort(key=_ORDER)
    return [
        Candidate(q.offer, q.worst, q.expected, q.latency.expected_ms, q.latency.p95_ms, score)
        for _, score, _, _, _, q in keyed
    ]


_ORDER = itemgetter(0, 1, 2, 3, 4)


def _scorer(optimize: str, quotes: list[Quote]) -> Callable[[Quote], float]:
    """The score (lower is better) for the intent's goal; balanced normalises both axes."""
    if optimize == "latency":
        return lambda q: q.latency.expected_ms
    if optimize == "balanced":
        min_cost = min(q.expected for q in quotes) or 1e-12
        min_latency = min(q.latency.expected_ms for q in quotes) or 1e-3
        return lambda q: (q.expected or 1e-12) / min_cost + q.latency.expected_ms / min_latency
    return lambda q: q.expected
