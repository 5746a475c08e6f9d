"""RouteIndex: the head it plans is exactly the head of the full solve, whatever happens."""

from __future__ import annotations

import random

import pytest

from intentmesh.router import Candidate, HealthBook, Offer, RouteRequest
from intentmesh.router._index import RouteIndex
from intentmesh.router._solver import solve

MODELS = ("m1", "m2", "m3")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def random_offers(rng: random.Random, n: int) -> list[Offer]:
    prices = [(0.1, 0.2), (0.1, 0.4), (0.3, 0.1), (1.0, 1.0), (0.0, 0.0), (0.05, 0.9)]
    offers = []
    for i in range(n):
        inp, out = rng.choice(prices) if rng.random() < 0.6 else (rng.random(), rng.random())
        offers.append(
            Offer(
                backend=f"b{rng.randrange(max(1, n // 2))}",
                network=rng.choice(["chutes", "targon", "akash"]),
                model=rng.choice(MODELS),
                provider_model=f"p{i}",
                input_price=inp,
                output_price=out,
                latency_prior_ms=rng.choice([100.0, 800.0, 800.0, 2000.0]),
                verifiability=rng.choice(
                    [frozenset({"none", "receipt"}), frozenset({"none", "receipt", "attested"})]
                ),
            )
        )
    return offers


def random_request(rng: random.Random) -> RouteRequest:
    models = tuple(rng.sample(MODELS, rng.randint(1, 3)))
    return RouteRequest(
        models=models,
        prompt_tokens_max=rng.randint(1, 3000),
        prompt_tokens_expected=rng.randint(1, 2000),
        max_tokens=rng.randint(1, 1000),
        max_price_usd=rng.choice([None, None, 0.0005, 0.002]),
        max_latency_ms=rng.choice([None, None, 900.0, 150.0]),
        verifiability=rng.choice(["none", "receipt"]),
        optimize=rng.choice(["cost", "latency", "balanced"]),
        networks=rng.choice([None, None, frozenset({"chutes", "akash"})]),
        exclude=rng.choice([frozenset(), frozenset({"targon"}), frozenset({"b1"})]),
    )


def shake_health(rng: random.Random, health: HealthBook, offers: list[Offer], clock: Clock) -> None:
    for _ in range(rng.randint(0, 20)):
        o = rng.choice(offers)
        roll = rng.random()
        if roll < 0.5:
            health.observe_latency(o.backend, o.provider_model, rng.choice([50.0, 300.0, 900.0]))
        elif roll < 0.6:
            health.observe_probe(o.backend, rng.choice([100.0, 1000.0]))
        elif roll < 0.7:
            health.penalize(o.backend)
        elif roll < 0.8:
            for _ in range(5):
                health.record_failure(o.backend, "transient")
        elif roll < 0.9:
            health.mark_gone(o.backend, o.provider_model)
        else:
            health.record_success(o.backend)
    clock.now += rng.choice([0.0, 0.0, 31.0])


def same(head: tuple[Candidate, ...], full: tuple[Candidate, ...]) -> None:
    assert [(c.backend, c.provider_model, c.score) for c in head] == [
        (c.backend, c.provider_model, c.score) for c in full
    ]
    assert head == full


@pytest.mark.parametrize("seed", range(40))
def test_head_equals_the_first_candidates_of_solve(seed: int) -> None:
    rng = random.Random(seed)
    clock = Clock()
    health = HealthBook(clock=clock)
    index = RouteIndex(health)
    offers = random_offers(rng, rng.choice([3, 40, 120]))
    backends = {o.backend: o.network for o in offers}
    for _ in range(15):
        if rng.random() < 0.2:  # prices change: a new list, some offers replaced
            offers = [
                o if rng.random() < 0.8 else Offer(**{**_fields(o), "input_price": rng.random()})
                for o in offers
            ]
        shake_health(rng, health, offers, clock)
        request = random_request(rng)
        limit = rng.choice([1, 3, 16])
        head = index.head(request, offers, limit)
        full = solve(request, offers, health, backends).candidates[:limit]
        same(head, full)


def test_two_thousand_equal_offers_walk_only_the_head() -> None:
    offers = [Offer(f"b{i:04d}", "chutes", "m1", "p", 0.1, 0.2) for i in range(2000)]
    health = HealthBook()
    index = RouteIndex(health)
    health.observe_latency("b1999", "p", 5.0)
    request = RouteRequest(("m1",), 100, 50, 100)
    checked: list[str] = []
    original = health.latency

    def counting(backend: str, model: str, prior: float):  # type: ignore[no-untyped-def]
        checked.append(backend)
        return original(backend, model, prior)

    index.sync(offers)
    health.latency = counting  # type: ignore[method-assign]
    head = index.head(request, offers, 4)
    assert [c.backend for c in head] == ["b1999", "b0000", "b0001", "b0002"]
    assert len(checked) <= 8
    health.latency = original  # type: ignore[method-assign]
    same(head, solve(request, offers, health, {}).candidates[:4])


def test_latency_learned_after_indexing_reorders_the_head() -> None:
    offers = [Offer(f"b{i}", "n", "m1", "p", 0.1, 0.2) for i in range(50)]
    health = HealthBook()
    index = RouteIndex(health)
    request = RouteRequest(("m1",), 10, 10, 10, optimize="latency")
    assert index.head(request, offers, 1)[0].backend == "b0"
    health.observe_latency("b42", "p", 1.0)
    assert index.head(request, offers, 1)[0].backend == "b42"


def _fields(o: Offer) -> dict[str, object]:
    return {name: getattr(o, name) for name in Offer.__slots__}  # type: ignore[attr-defined]


def test_a_call_plans_with_the_head_of_plan_and_fails_with_every_reason(tmp_path: object) -> None:
    """Through the gateway: the backend a call uses is plan()'s first; a cap nothing meets
    still names every backend (the full solve runs when the head is empty)."""
    from intentmesh import Gateway
    from intentmesh.config import parse_config
    from intentmesh.errors import NoRouteError
    from intentmesh.testing import FakeOpenAIProvider

    provider = FakeOpenAIProvider(["fake-llama"], record=False)
    provider.start()
    try:
        toml = "".join(
            f'[[backends]]\nname = "b{i:02d}"\nbase_url = "{provider.base_url}"\n'
            f'[[backends.models]]\nname = "llama-3.1-8b-instruct"\nid = "fake-llama"\n'
            f"input_price = {1.0 + (i * 7) % 30 / 10}\noutput_price = {2.0 + (i * 11) % 30 / 10}\n"
            for i in range(30)
        )
        with Gateway(parse_config(toml)) as gw:
            ask = {"model": "llama-3.1-8b-instruct", "prompt": "hi", "max_tokens": 8}
            for optimize in ("cost", "latency", "balanced"):
                planned = gw.plan(**ask, optimize=optimize, verifiability="none")
                res = gw.infer(**ask, optimize=optimize, verifiability="none")
                assert res.backend == planned.candidates[0].backend
            with pytest.raises(NoRouteError) as caught:
                gw.infer(**ask, verifiability="none", max_price_usd=1e-12)
            assert len({r.backend for r in caught.value.rejections}) == 30
    finally:
        provider.stop()


def test_failover_goes_past_the_head_to_the_rest_of_the_ranking() -> None:
    """The head holds the first few candidates; when every one fails, the call fails over
    down the rest of the ranking rather than giving up (failover is never cut short)."""
    from intentmesh import Gateway
    from intentmesh.config import parse_config
    from intentmesh.router import HEAD_SIZE
    from intentmesh.testing import FakeOpenAIProvider, refused_url

    provider = FakeOpenAIProvider(["fake-llama"], record=False)
    provider.start()
    try:
        dead = HEAD_SIZE + 2  # the cheapest backends all refuse the connection
        toml = "".join(
            f'[[backends]]\nname = "b{i:02d}"\n'
            f'base_url = "{refused_url() if i < dead else provider.base_url}"\nretries = 0\n'
            f'[[backends.models]]\nname = "llama-3.1-8b-instruct"\nid = "fake-llama"\n'
            f"input_price = {1.0 + i}\noutput_price = {1.0 + i}\n"
            for i in range(dead + 1)
        )
        with Gateway(parse_config(toml)) as gw:
            res = gw.infer(
                model="llama-3.1-8b-instruct", prompt="hi", max_tokens=8, verifiability="none"
            )
            assert res.backend == f"b{dead:02d}"
            assert [a.backend for a in res.attempts] == [f"b{i:02d}" for i in range(dead + 1)]
    finally:
        provider.stop()


@pytest.mark.parametrize("seed", range(6))
def test_latency_moves_keep_every_order_sorted_and_the_head_exact(seed: int) -> None:
    """Small moves are swapped in place, large ones re-inserted: either way, no key is lost or
    duplicated, every order stays sorted, and the head is still the solve's."""
    rng = random.Random(seed)
    health = HealthBook()
    index = RouteIndex(health)
    offers = random_offers(rng, 60)
    backends = {o.backend: o.network for o in offers}
    index.sync(offers)
    for step in range(600):
        o = rng.choice(offers)
        base = 300.0 if rng.random() < 0.7 else rng.choice([20.0, 3000.0])
        health.observe_latency(o.backend, o.provider_model, base * rng.uniform(0.97, 1.03))
        if step % 50 == 0:
            _check_orders(index, len(offers))
            request = random_request(rng)
            head = index.head(request, offers, 4)
            same(head, solve(request, offers, health, backends).candidates[:4])
    _check_orders(index, len(offers))


def _check_orders(index: RouteIndex, offers: int) -> None:
    total = 0
    for book in index._books.values():
        assert book.by_latency == sorted(book.by_latency)
        assert len({id(k.entry) for k in book.by_latency}) == len(book.by_latency)
        grouped = [k for group in book.groups.values() for k in group]
        assert all(group == sorted(group) for group in book.groups.values())
        assert sorted(grouped) == book.by_latency
        total += len(book.by_latency)
    assert total == offers
    for entries in index._entries.values():
        for entry in entries:
            assert entry.key.latency_ms == entry.lat.expected_ms and entry.key.entry is entry
            assert entry.key in index._books[entry.offer.model].by_latency
