"""Live prices through the Gateway: warm-up, TTL, background refresh, stale fallback,
zero-config backends, and the price source in plans and receipts."""

from __future__ import annotations

import anyio
import pytest

from intentmesh import Gateway
from intentmesh._discovery import PriceBook, Snapshot
from intentmesh._zeroconf import with_zero_config, zero_config_backends
from intentmesh.config import GatewayConfig
from intentmesh.testing.networks import ChutesModel, FakeChutes, FakeIONet

MODEL = "llama-3.1-8b-instruct"
CHUTES_ID = "unsloth/Llama-3.1-8B-Instruct"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chutes_config(fake: FakeChutes, models: bool = True) -> GatewayConfig:
    entry: dict = {
        "name": "chutes",
        "type": "chutes",
        "network": "bittensor",
        "base_url": fake.base_url,
        "api_key_env": "CHUTES_TEST_KEY",
        "retries": 0,
    }
    if models:
        entry["models"] = [
            {"name": MODEL, "id": CHUTES_ID, "input_price": 9.0, "output_price": 9.0}
        ]
    return GatewayConfig.model_validate({"backends": [entry]})


@pytest.fixture
def chutes(monkeypatch):
    with FakeChutes(
        [
            ChutesModel(CHUTES_ID, 0.02, 0.05),
            ChutesModel("Qwen/Qwen3-32B-TEE", 0.1, 0.4, confidential=True),
        ]
    ) as fake:
        monkeypatch.setenv("CHUTES_TEST_KEY", fake.key)
        yield fake


async def test_live_prices_replace_configured_ones_and_reach_the_receipt(chutes) -> None:
    async with Gateway(chutes_config(chutes)) as gw:
        result = await gw.ainfer(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        quote = result.quote
        assert (quote.offer.input_price, quote.offer.output_price) == (0.02, 0.05)
        assert quote.offer.price_source == "live" and quote.offer.price_age_s is not None
        assert result.receipt.body["price"]["source"] == "live"
        assert chutes.calls["/v1/models"] == 1
        await gw.ainfer(model=MODEL, messages=[{"role": "user", "content": "again"}])
        assert chutes.calls["/v1/models"] == 1  # cached: not on the hot path


def test_sync_plan_warms_up_discovery(chutes) -> None:
    with Gateway(chutes_config(chutes)) as gw:
        plan = gw.plan(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert plan.candidates[0].offer.price_source == "live"
        assert plan.to_dict()["candidates"][0]["price_source"] == "live"


async def test_failed_discovery_falls_back_to_configured_prices_marked_stale(chutes) -> None:
    config = chutes_config(chutes)
    chutes.stop()
    async with Gateway(config) as gw:
        await gw.arefresh_prices()
        (offer,) = gw.offers
        assert (offer.input_price, offer.price_source) == (9.0, "stale")
        assert "chutes" in gw.prices.errors


async def test_expired_prices_refresh_in_background_and_go_stale_on_failure(chutes) -> None:
    clock = Clock()
    async with Gateway(chutes_config(chutes)) as gw:
        gw.prices = PriceBook(gw.backends, gw.config.backends, gw.catalog, ttl_s=60, clock=clock)
        await gw.arefresh_prices()
        assert gw.offers[0].price_source == "live"
        clock.now += 61  # expired: the next call refreshes in the background
        chutes.catalog[CHUTES_ID] = ChutesModel(CHUTES_ID, 0.03, 0.06)
        await gw._update_prices()
        await gw.prices._task
        await gw._update_prices()
        assert (gw.offers[0].input_price, gw.offers[0].price_source) == (0.03, "live")
        assert chutes.calls["/v1/models"] == 2
        clock.now += 61
        chutes.stop()
        await gw._update_prices()
        await gw.prices._task
        await gw._update_prices()
        offer = gw.offers[0]
        assert (offer.input_price, offer.price_source) == (0.03, "stale")
        assert offer.price_age_s == pytest.approx(61, abs=1)


async def test_backend_without_models_routes_every_priced_listing(chutes) -> None:
    async with Gateway(chutes_config(chutes, models=False)) as gw:
        await gw.arefresh_prices()
        offers = {o.model: o for o in gw.offers}
        assert set(offers) == {MODEL, "qwen3-32b"}  # "-TEE" ids map to the catalog name
        assert offers["qwen3-32b"].provider_model == "Qwen/Qwen3-32B-TEE"
        assert "attested" not in offers["qwen3-32b"].verifiability  # no attestation config
        result = await gw.ainfer(model="qwen3-32b", messages=[{"role": "user", "content": "hi"}])
        assert result.provider_model == "Qwen/Qwen3-32B-TEE"


def test_tee_listing_narrows_a_claimed_attested_level() -> None:
    from intentmesh._catalog import default_catalog
    from intentmesh.adapters.base import ModelListing
    from intentmesh.config import BackendConfig
    from intentmesh.router import Offer

    entry = BackendConfig.model_validate(
        {"name": "c", "verifiability": ["attested"], "attestation": {"kind": "chutes"}}
    )
    book = PriceBook({}, [entry], default_catalog())
    book.sources["c"] = object()
    book.entries["c"] = entry
    tee = ModelListing("q-TEE", 1.0, 2.0, attributes={"verifiability": ("attested",)})
    plain = ModelListing("q", 1.0, 2.0, attributes={"verifiability": ()})
    book._fresh["c"] = book._last["c"] = Snapshot({"q-TEE": tee, "q": plain}, book.clock())
    levels = frozenset({"none", "receipt", "attested"})
    offers = [Offer("c", "n", "m", pid, 9.0, 9.0, verifiability=levels) for pid in ("q-TEE", "q")]
    narrowed = {o.provider_model: o.verifiability for o in book.offers(offers)}
    assert "attested" in narrowed["q-TEE"] and "attested" not in narrowed["q"]


def test_zero_config_from_environment_keys() -> None:
    empty = GatewayConfig()
    env = {"CHUTES_API_KEY": "cpk_x", "IOINTELLIGENCE_API_KEY": "io", "AKASH_API_KEY": "sk",
           "INTENTMESH_LOCAL_DEFAULT": "0"}
    found = {b.name: b for b in zero_config_backends(empty, env)}
    assert set(found) == {"chutes", "ionet", "akashchat"}
    assert found["ionet"].api_key_env == "IOINTELLIGENCE_API_KEY"
    assert found["chutes"].network == "bittensor" and not found["chutes"].models
    assert zero_config_backends(empty, {**env, "INTENTMESH_ZEROCONF": "0"}) == []
    configured = GatewayConfig.model_validate(
        {"backends": [{"name": "mine", "type": "chutes", "base_url": "http://127.0.0.1:1/v1"}]}
    )
    assert {b.name for b in with_zero_config(configured, env).backends} == {
        "mine",
        "ionet",
        "akashchat",
    }


async def test_default_gateway_enables_networks_by_key(monkeypatch, tmp_path) -> None:
    prices = {"meta-llama/Llama-3.3-70B-Instruct": ("0.13", "0.38")}
    with FakeIONet(prices) as fake:
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("INTENTMESH_CONFIG", raising=False)
        for name in ("CHUTES_API_KEY", "AKASH_API_KEY", "AKASHCHAT_API_KEY", "AKASHML_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IOINTELLIGENCE_API_KEY", fake.key)
        gw = Gateway()
        assert list(gw.backends) == ["ionet"]
        # point the zero-config backend (public URL) at the fake, as a proxy would
        gw.backends["ionet"].connection.base_url = fake.base_url
        async with gw:
            result = await gw.ainfer(
                model="llama-3.3-70b-instruct", messages=[{"role": "user", "content": "hi"}]
            )
        assert result.backend == "ionet" and result.quote.offer.price_source == "live"
        assert result.quote.offer.input_price == 0.13


async def test_discovery_timeout_does_not_block_for_long(chutes) -> None:
    async with Gateway(chutes_config(chutes)) as gw:
        gw.prices.timeout_s = 0.2
        chutes.routes = lambda: {("GET", "/v1/models"): _hang}  # type: ignore[method-assign]
        with anyio.fail_after(3):
            await gw.arefresh_prices()
        assert gw.offers[0].price_source == "stale"


async def _hang(request):
    await anyio.sleep(30)
