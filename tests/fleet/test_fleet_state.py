"""Fleet state on a real Redis, in one process: accounts, rate limits, breakers, prices."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from fleet_support import MODEL, REDIS_URL, TcpProxy, backend_toml, state_toml, wait_for

from intentmesh import ExecutionError, Gateway, LimitExceeded, StateUnavailable
from intentmesh.config import StateConfig, parse_config
from intentmesh.fleet import (
    AccountStore,
    Fleet,
    Limits,
    LocalAccounts,
    RedisAccounts,
    RedisHealthShare,
    RedisState,
    open_fleet,
)
from intentmesh.testing import FakeOpenAIProvider, Fault, refused_url

BUDGET = Limits(budget_usd=1.0)


def _redis_accounts(prefix: str, ttl_s: float = 300.0) -> RedisAccounts:
    config = StateConfig(url=REDIS_URL, prefix=prefix, reservation_ttl_s=ttl_s)
    return RedisAccounts(RedisState(config, REDIS_URL))


@pytest.fixture(params=["local", "redis"])
def store(request: pytest.FixtureRequest) -> AccountStore:
    """Both implementations of the interface behave the same."""
    if request.param == "local":
        return LocalAccounts()
    return _redis_accounts(request.getfixturevalue("prefix"))


# -- budgets ----------------------------------------------------------------------------------


async def test_concurrent_reservations_never_exceed_the_budget(store: AccountStore) -> None:
    holds = await asyncio.gather(
        *(store.aadmit("team", BUDGET, 0.3, 0.1) for _ in range(20)), return_exceptions=True
    )
    granted = [h.amount for h in holds if not isinstance(h, BaseException)]
    refused = [h for h in holds if isinstance(h, LimitExceeded)]
    assert sum(a or 0 for a in granted) <= 1.0 + 1e-9
    assert len(granted) + len(refused) == 20 and refused
    assert all(r.kind == "budget" and "budget left" in str(r) for r in refused)
    await store.aclose()


async def test_settlement_charges_actual_cost_capped_at_the_hold(store: AccountStore) -> None:
    hold = await store.aadmit("team", BUDGET, 0.5, 0.1)
    assert hold.amount == pytest.approx(0.5)
    await store.asettle(hold, 0.2, 10)
    hold2 = await store.aadmit("team", BUDGET, 0.5, 0.1)
    await store.asettle(hold2, 9.0, 10)  # over its hold: capped
    balance = await store.abalance("team", BUDGET)
    assert (balance.spent, balance.reserved) == (pytest.approx(0.7), pytest.approx(0.0))
    await store.aclose()


async def test_a_partial_reservation_takes_what_is_left(store: AccountStore) -> None:
    first = await store.aadmit("team", BUDGET, 0.9, 0.1)
    second = await store.aadmit("team", BUDGET, 0.5, 0.05)
    assert (first.amount, second.amount) == (pytest.approx(0.9), pytest.approx(0.1))
    with pytest.raises(LimitExceeded):
        await store.aadmit("team", BUDGET, 0.5, 0.05)
    await store.aclose()


async def test_redis_settlement_retried_is_charged_once(prefix: str) -> None:
    store = _redis_accounts(prefix)
    hold = await store.aadmit("team", BUDGET, 0.5, 0.1)
    await store.asettle(hold, 0.25, 0)
    await store.asettle(hold, 0.25, 0)
    assert (await store.abalance("team", BUDGET)).spent == pytest.approx(0.25)
    await store.aclose()


async def test_redis_reservation_of_a_dead_process_expires(prefix: str) -> None:
    dead = _redis_accounts(prefix, ttl_s=0.5)
    await dead.aadmit("team", BUDGET, 1.0, 0.5)  # never settled: its process "died"
    alive = _redis_accounts(prefix, ttl_s=0.5)
    with pytest.raises(LimitExceeded):
        await alive.aadmit("team", BUDGET, 1.0, 0.5)

    async def released() -> bool:
        return (await alive.abalance("team", BUDGET)).reserved == 0

    for _ in range(200):
        if await released():
            break
        await asyncio.sleep(0.05)
    assert await released()
    assert (await alive.aadmit("team", BUDGET, 1.0, 0.5)).amount == pytest.approx(1.0)
    await dead.aclose()
    await alive.aclose()


async def test_a_late_settlement_after_expiry_still_counts(prefix: str) -> None:
    store = _redis_accounts(prefix, ttl_s=0.2)
    hold = await store.aadmit("team", BUDGET, 0.5, 0.1)
    await asyncio.sleep(0.4)
    await store.asettle(hold, 0.3, 0)
    balance = await store.abalance("team", BUDGET)
    assert (balance.spent, balance.reserved) == (pytest.approx(0.3), 0)
    await store.aclose()


# -- rate limits ------------------------------------------------------------------------------


async def test_requests_per_minute(store: AccountStore) -> None:
    limits = Limits(requests_per_min=3)
    for _ in range(3):
        await store.aadmit("rpm", limits, 0.0, 0.0)
    with pytest.raises(LimitExceeded) as info:
        await store.aadmit("rpm", limits, 0.0, 0.0)
    assert info.value.kind == "requests_per_min"
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 60
    await store.aclose()


async def test_tokens_per_minute_counts_settled_tokens(store: AccountStore) -> None:
    limits = Limits(tokens_per_min=100)
    first = await store.aadmit("tpm", limits, 0.0, 0.0)
    await store.asettle(first, 0.0, 60)
    second = await store.aadmit("tpm", limits, 0.0, 0.0)  # 60 < 100: admitted
    await store.asettle(second, 0.0, 60)
    with pytest.raises(LimitExceeded) as info:
        await store.aadmit("tpm", limits, 0.0, 0.0)
    assert info.value.kind == "tokens_per_min" and info.value.retry_after
    await store.aclose()


async def test_usd_per_day(store: AccountStore) -> None:
    limits = Limits(usd_per_day=0.5)
    hold = await store.aadmit("daily", limits, 0.4, 0.1)
    await store.asettle(hold, 0.4, 0)
    with pytest.raises(LimitExceeded) as info:
        await store.aadmit("daily", limits, 0.4, 0.2)
    assert info.value.kind == "usd_per_day"
    assert info.value.retry_after is not None and 0 < info.value.retry_after <= 86_400
    await store.aclose()


# -- the store being down ---------------------------------------------------------------------


def test_unreachable_store_is_a_clear_error_at_start_up() -> None:
    url = refused_url().replace("http://", "redis://")
    with pytest.raises(StateUnavailable, match="unavailable during start-up"):
        open_fleet(StateConfig(url=url, timeout_s=0.5))


async def test_budgets_fail_closed_when_the_store_is_down() -> None:
    url = refused_url().replace("http://", "redis://")
    store = RedisAccounts(RedisState(StateConfig(url=url, timeout_s=0.5), url))
    with pytest.raises(StateUnavailable):
        await store.aadmit("team", BUDGET, 0.1, 0.1)
    await store.aclose()


def test_state_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INTENTMESH_STATE_URL", "redis://127.0.0.1:1/0")
    assert StateConfig().resolved_url() == "redis://127.0.0.1:1/0"
    monkeypatch.setenv("INTENTMESH_STATE_URL", "http://nope")
    with pytest.raises(Exception, match="INTENTMESH_STATE_URL must start with redis://"):
        StateConfig().resolved_url()


def test_state_url_is_validated_in_the_config() -> None:
    with pytest.raises(Exception, match=r"state\.url: .*redis://"):
        parse_config('[state]\nurl = "http://localhost:6379"\n')


# -- breakers and latency ---------------------------------------------------------------------


def _gateway(provider: FakeOpenAIProvider, prefix: str, **routing: Any) -> Gateway:
    knobs = "\n".join(f"{k} = {v}" for k, v in {"backoff_s": 0, **routing}.items())
    text = (
        state_toml(prefix, sync_interval_s=0.05, trial_lease_s=5)
        + "[receipts]\nenabled = false\n"
        + f"[routing]\n{knobs}\n"
        + backend_toml("fake", provider.base_url)
    )
    return Gateway(parse_config(text))


def test_an_open_breaker_is_seen_by_another_gateway(
    provider: FakeOpenAIProvider, prefix: str
) -> None:
    provider.always(Fault.status(503))
    with (
        _gateway(provider, prefix, failure_threshold=1) as one,
        _gateway(provider, prefix, failure_threshold=1) as two,
    ):
        with pytest.raises(ExecutionError):
            one.infer(model=MODEL, prompt="hi", max_tokens=8)
        assert one.health.breaker("fake").state == "open"
        wait_for(lambda: two.health.breaker("fake").state == "open", what="shared open")
        assert "503" in (two.health.breaker("fake").last_error or "")


def test_half_open_gives_one_trial_fleet_wide(provider: FakeOpenAIProvider, prefix: str) -> None:
    provider.always(Fault.status(503))
    gws = [_gateway(provider, prefix, failure_threshold=1, cooldown_s=0.3) for _ in range(3)]
    try:
        with pytest.raises(ExecutionError):
            gws[0].infer(model=MODEL, prompt="hi", max_tokens=8)
        wait_for(lambda: all(g.health.breaker("fake").state == "open" for g in gws[1:]))

        def trials() -> list[bool]:
            return [g.health.breaker("fake").state == "half_open" for g in gws]

        wait_for(lambda: any(trials()), what="a half-open trial")
        time.sleep(0.3)  # several more syncs: still exactly one process holds the trial
        assert sum(trials()) == 1
        provider.clear_faults()
        winner = gws[trials().index(True)]
        winner.infer(model=MODEL, prompt="hi", max_tokens=8)  # the trial succeeds
        wait_for(lambda: all(g.health.breaker("fake").state == "closed" for g in gws))
    finally:
        for g in gws:
            g.close()


def test_latency_is_shared(provider: FakeOpenAIProvider, prefix: str) -> None:
    with _gateway(provider, prefix) as one, _gateway(provider, prefix) as two:
        for _ in range(3):
            one.infer(model=MODEL, prompt="hi", max_tokens=8)

        def samples() -> int:
            two.health.breaker("fake")  # any read adopts the latest view
            return two.health.latency("fake", "fake-llama", 800.0).samples

        wait_for(lambda: samples() >= 3, what="three shared latency samples")


def test_health_fails_open_when_the_store_is_down(provider: FakeOpenAIProvider) -> None:
    fleet = Fleet(StateConfig(url=REDIS_URL), REDIS_URL, check=False)
    fleet.state.url = refused_url().replace("http://", "redis://")  # the store "went away"
    share = fleet.health_share(["fake"])
    try:
        wait_for(lambda: not share.available, what="the share to notice")
        assert share.view is None  # each process runs on its own breakers
    finally:
        fleet.close()


# -- named limits from the SDK ------------------------------------------------------------------


def test_sdk_named_limit_spends_from_the_shared_budget(
    provider: FakeOpenAIProvider, prefix: str
) -> None:
    text = state_toml(prefix) + "[receipts]\nenabled = false\n"
    text += '[[limits]]\nname = "team"\nbudget_usd = 0.0001\n'
    text += backend_toml("fake", provider.base_url)
    spent = 0.0
    with Gateway(parse_config(text)) as gw:
        team = gw.limit("team")
        with pytest.raises(LimitExceeded) as info:
            for _ in range(100):
                spent += team.infer(model=MODEL, prompt="hi", max_tokens=8).cost_usd
        assert info.value.kind == "budget"
        budget, booked, reserved = team.balance()
    assert spent <= 0.0001 and booked == pytest.approx(spent) and reserved == 0


def test_unknown_named_limit_is_a_clear_error(provider: FakeOpenAIProvider) -> None:
    with Gateway(parse_config(backend_toml("fake", provider.base_url))) as gw:
        with pytest.raises(Exception, match="no \\[\\[limits\\]\\] entry named 'nope'"):
            gw.limit("nope")
        assert gw.limit("adhoc", requests_per_min=1).limits.requests_per_min == 1


# -- the price cache ---------------------------------------------------------------------------


async def test_price_cache_serves_one_fetch_to_every_process(prefix: str) -> None:
    from intentmesh.adapters.base import ModelListing
    from intentmesh.fleet import RedisPriceCache

    state = RedisState(StateConfig(url=REDIS_URL, prefix=prefix), REDIS_URL)
    cache = RedisPriceCache(state, ttl_s=60)
    assert await cache.aget("chutes") is None
    listing = ModelListing("m", 0.1, 0.2, 8192, {"aliases": ("a",), "verifiability": {"x"}})
    await cache.aput("chutes", [listing])
    found = await cache.aget("chutes")
    assert found is not None
    got, age = found
    assert (got[0].id, got[0].input_price, got[0].output_price) == ("m", 0.1, 0.2)
    assert list(got[0].attributes["aliases"]) == ["a"] and 0 <= age < 60
    await state.aclose()


async def test_budgets_fail_closed_then_recover_when_redis_returns(prefix: str) -> None:
    from urllib.parse import urlsplit

    proxy = TcpProxy(urlsplit(REDIS_URL).port or 6379).start()
    config = StateConfig(url=proxy.url, prefix=prefix, timeout_s=2)
    store = RedisAccounts(RedisState(config, proxy.url))
    try:
        first = await store.aadmit("team", BUDGET, 0.4, 0.1)
        proxy.stop()  # Redis "goes down" mid-run
        with pytest.raises(StateUnavailable, match="unavailable during budget admission"):
            await store.aadmit("team", BUDGET, 0.4, 0.1)
        await store.asettle(first, 0.3, 0)  # cannot be written: kept for later
        assert store.pending == 1
        proxy.start()  # back on the same port
        second = None
        for _ in range(100):  # the client reconnects on its own; bounded retries
            try:
                second = await store.aadmit("team", BUDGET, 0.4, 0.1)
                break
            except StateUnavailable:
                await asyncio.sleep(0.1)
        assert second is not None and store.pending == 0
        balance = await store.abalance("team", BUDGET)
        assert balance.spent == pytest.approx(0.3)  # the deferred settlement was written
        assert balance.reserved == pytest.approx(0.4)
    finally:
        proxy.stop()
        await store.aclose()


def test_health_sharing_resumes_when_redis_returns(
    provider: FakeOpenAIProvider, prefix: str
) -> None:
    from urllib.parse import urlsplit

    proxy = TcpProxy(urlsplit(REDIS_URL).port or 6379).start()
    state = RedisState(StateConfig(url=proxy.url, prefix=prefix, sync_interval_s=0.05), proxy.url)
    share = RedisHealthShare(state, ["fake"])
    try:
        wait_for(lambda: share.view is not None, what="a first view")
        proxy.stop()
        wait_for(lambda: share.view is None and not share.available, what="the outage")
        proxy.start()
        wait_for(lambda: share.view is not None and share.available, what="the recovery")
    finally:
        share.close()
        proxy.stop()


def test_server_workers_with_budgets_need_a_file_or_state() -> None:
    from intentmesh.server import parse_configs

    keys = '[server]\nworkers = 2\n[[server.keys]]\nname = "a"\nkey_env = "K"\nbudget_usd = 1\n'
    with pytest.raises(Exception, match="budget_db = a file path, or \\[state\\] url"):
        parse_configs(keys)
    _, server = parse_configs(f'[state]\nurl = "{REDIS_URL}"\n' + keys)
    assert server.workers == 2


async def test_one_price_fetch_serves_every_gateway_of_the_fleet(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from intentmesh.config import GatewayConfig
    from intentmesh.testing.networks import ChutesModel, FakeChutes

    chutes_id = "unsloth/Llama-3.1-8B-Instruct"
    with FakeChutes([ChutesModel(chutes_id, 0.02, 0.05)]) as fake:
        monkeypatch.setenv("CHUTES_TEST_KEY", fake.key)
        entry = {
            "name": "chutes",
            "type": "chutes",
            "network": "bittensor",
            "base_url": fake.base_url,
            "api_key_env": "CHUTES_TEST_KEY",
            "models": [{"name": MODEL, "id": chutes_id, "input_price": 9, "output_price": 9}],
        }
        config = GatewayConfig.model_validate(
            {"backends": [entry], "state": {"url": REDIS_URL, "prefix": prefix}}
        )
        for _ in range(3):  # three "processes", one fetch
            async with Gateway(config) as gw:
                await gw.arefresh_prices()
                (offer,) = gw.offers
                assert (offer.input_price, offer.price_source) == (0.02, "live")
        assert fake.calls["/v1/models"] == 1


def test_server_refuses_limited_keys_with_503_while_the_store_is_down(
    provider: FakeOpenAIProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("starlette", reason="the server extra is not installed")
    import httpx

    from intentmesh.server import KeyConfig, ThreadedServer, create_app

    monkeypatch.setenv("LIMITED_KEY", "sk-limited")
    monkeypatch.setenv("OPEN_KEY", "sk-open")
    keys = [
        KeyConfig(name="limited", key_env="LIMITED_KEY", budget_usd=1.0),
        KeyConfig(name="unlimited", key_env="OPEN_KEY"),
    ]
    url = refused_url().replace("http://", "redis://")
    accounts = RedisAccounts(RedisState(StateConfig(url=url, timeout_s=0.5), url))
    text = "[receipts]\nenabled = false\n" + backend_toml("fake", provider.base_url)
    with Gateway(parse_config(text)) as gw:
        server = ThreadedServer(create_app(gw, keys=keys, accounts=accounts)).start()
        try:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}

            def post(key: str) -> httpx.Response:
                headers = {"authorization": f"Bearer {key}"}
                return httpx.post(
                    server.url + "/v1/chat/completions", json=body, headers=headers, timeout=30
                )

            refused = post("sk-limited")
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "state_unavailable"
            assert post("sk-open").status_code == 200  # keys without limits keep working
        finally:
            server.stop()
