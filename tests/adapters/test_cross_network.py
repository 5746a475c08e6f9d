"""One intent routed across every network through the Gateway, checked against prices,
constraints and failover. Every network runs as its own loopback fake."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from intentmesh import Gateway
from intentmesh.config import GatewayConfig
from intentmesh.testing.networks import (
    ChutesModel,
    ContainerSpec,
    FakeAkashChat,
    FakeAkashConsole,
    FakeAkashML,
    FakeApex,
    FakeAxon,
    FakeChutes,
    FakeInfernetContainer,
    FakeInfernetNode,
    FakeIONet,
    FakeNineteen,
    FakeTargon,
    FakeVLLM,
    write_snapshot,
)

sr25519 = pytest.importorskip("sr25519")
from intentmesh.adapters._epistula import Hotkey  # noqa: E402

MODEL = "llama-3.3-70b-instruct"
HF = "meta-llama/Llama-3.3-70B-Instruct"
VALIDATOR_SEED = bytes(range(32))
MESSAGES = [{"role": "user", "content": "route me"}]


def model(id_: str, inp: float, out: float) -> dict:
    return {"name": MODEL, "id": id_, "input_price": inp, "output_price": out}


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Start every fake; yield (fakes by backend name, the gateway config)."""
    validator = Hotkey.from_seed(VALIDATOR_SEED)
    miner = Hotkey.from_seed(bytes([7] * 32))
    with ExitStack() as stack:
        up = lambda server: stack.enter_context(server)  # noqa: E731
        fakes = {
            "chutes": up(FakeChutes([ChutesModel(f"{HF}-TEE", 0.20, 0.60, confidential=True)])),
            "targon": up(FakeTargon([HF])),
            "nineteen": up(FakeNineteen([HF], api_key="k19")),
            "apex": up(FakeApex([HF])),
            "akashchat": up(FakeAkashChat(["Meta-Llama-3-3-70B-Instruct"])),
            "akashml": up(FakeAkashML({HF: ("0.13", "0.40")})),
            "ionet": up(FakeIONet({HF: ("0.12", "0.38")})),
            "akash-vllm": up(FakeVLLM([HF])),
            "sn1-native": up(FakeAxon(miner, {validator.ss58_address: 1e6}, [HF])),
        }
        console = up(FakeAkashConsole())
        box = up(FakeInfernetContainer("openai"))
        fakes["ritual"] = up(FakeInfernetNode([ContainerSpec("llm", box.url)]))
        snap = write_snapshot(
            tmp_path_factory.mktemp("mg") / "sn1.json",
            1,
            [
                {
                    "uid": 0,
                    "hotkey": miner.ss58_address,
                    "ip": "127.0.0.1",
                    "port": fakes["sn1-native"].port,
                    "stake": 1.0,
                    "incentive": 1.0,
                }
            ],
        )
        keys = {name: getattr(f, "key", None) for name, f in fakes.items()}
        keys["akash-vllm"] = "vllm-key"

        def entry(name, type_, network, models=(), **extra):
            e = {
                "name": name,
                "type": type_,
                "network": network,
                "retries": 0,
                "timeout_s": 5,
                "base_url": fakes[name].base_url,
                "models": list(models),
            }
            if keys.get(name):
                e["api_key_env"] = f"XNET_{name.upper().replace('-', '_')}"
            return {**e, **extra}

        backends = [
            entry("chutes", "chutes", "bittensor"),  # models and prices discovered
            entry("targon", "targon", "bittensor", [model(HF, 0.15, 0.45)]),
            entry("nineteen", "nineteen", "bittensor", [model(HF, 0.14, 0.50)]),
            entry("apex", "apex", "bittensor", [model(HF, 0.30, 0.90)]),
            entry("akashchat", "akashchat", "akash"),  # free, discovered
            entry("akashml", "akashml", "akash", [model(HF, 9.0, 9.0)]),  # live beats 9.0
            entry("ionet", "ionet", "ionet"),
            entry(
                "akash-vllm",
                "akash-vllm",
                "akash",
                gpu="h100",
                tokens_per_s=2000.0,
                console_api_url=console.url,
            ),  # $1.8/h / 2000 tok/s = $0.25 per 1M
            entry(
                "ritual",
                "ritual",
                "ritual",
                [model("fake-llm", 0.5, 0.5)],
                container="llm",
                poll_interval_s=0.02,
                base_url=fakes["ritual"].url,
            ),
            entry(
                "sn1-native",
                "bittensor-native",
                "bittensor",
                [model(HF, 0.01, 0.01)],
                metagraph=str(snap),
                hotkey_seed_env="XNET_SEED",
            ),
        ]
        config = GatewayConfig.model_validate({"backends": backends})
        yield fakes, keys, config


@pytest.fixture
async def gateway(networks, monkeypatch):
    fakes, keys, config = networks
    for name, key in keys.items():
        if key:
            monkeypatch.setenv(f"XNET_{name.upper().replace('-', '_')}", key)
    monkeypatch.setenv("XNET_SEED", VALIDATOR_SEED.hex())
    for fake in fakes.values():
        if hasattr(fake, "clear_faults"):
            fake.clear_faults()
    async with Gateway(config) as gw:
        await gw.arefresh_prices()
        yield gw


def worst(cand) -> float:
    return cand.worst_case_cost_usd


async def test_plan_orders_every_network_by_price(gateway) -> None:
    plan = gateway.plan(model=MODEL, messages=MESSAGES, max_tokens=100)
    names = [c.backend for c in plan.candidates]
    assert set(names) == {
        "chutes",
        "targon",
        "nineteen",
        "apex",
        "akashchat",
        "akashml",
        "ionet",
        "akash-vllm",
        "ritual",
        "sn1-native",
    }
    assert names[0] == "akashchat"  # free
    costs = [c.expected_cost_usd for c in plan.candidates]  # optimize="cost" ranks on this
    assert costs == sorted(costs)
    offers = {c.backend: c.offer for c in plan.candidates}
    assert offers["akashml"].price_source == "live" and offers["akashml"].input_price == 0.13
    assert offers["ionet"].input_price == 0.12
    assert offers["akash-vllm"].price_source == "estimated"
    assert offers["akash-vllm"].output_price == pytest.approx(0.25)
    assert offers["targon"].price_source == "configured"


async def test_infer_picks_the_cheapest_and_every_network_answers(gateway) -> None:
    first = await gateway.ainfer(model=MODEL, messages=MESSAGES, verifiability="none")
    assert first.backend == "akashchat" and first.text == "echo: route me"
    for name in gateway.backends:
        result = await gateway.ainfer(
            model=MODEL, messages=MESSAGES, networks=[name], verifiability="none"
        )
        assert result.backend == name and result.text == "echo: route me", name
        text = "".join(
            [
                c.text
                async for c in gateway.astream(
                    model=MODEL, messages=MESSAGES, networks=[name], verifiability="none"
                )
            ]
        )
        assert text == "echo: route me", name


async def test_constraints_price_cap_networks_and_verifiability(gateway) -> None:
    attested = gateway.plan(model=MODEL, messages=MESSAGES, verifiability="attested")
    assert attested.candidates == ()  # no backend here is configured to check evidence
    assert attested.rejected["ionet"].reason == "verifiability_unsupported"
    capped = gateway.plan(model=MODEL, messages=MESSAGES, max_tokens=1000, max_price_usd=0.0002)
    assert all(worst(c) <= 0.0002 for c in capped.candidates)
    assert capped.rejected["apex"].reason == "over_price_cap"
    only = gateway.plan(model=MODEL, messages=MESSAGES, networks=["ionet", "ritual"])
    assert [c.backend for c in only.candidates] == ["ionet", "ritual"]
    excluded = gateway.plan(model=MODEL, messages=MESSAGES, exclude=["akash"])
    assert excluded.candidates[0].backend == "sn1-native"


async def test_failover_to_another_network(gateway, networks) -> None:
    fakes = networks[0]
    fakes["akashchat"].always(fakes["akashchat"].fault(429))
    fakes["sn1-native"].always(fakes["sn1-native"].fault(503))
    plan = gateway.plan(model=MODEL, messages=MESSAGES)
    third = plan.candidates[2].backend
    result = await gateway.ainfer(model=MODEL, messages=MESSAGES, verifiability="none")
    assert result.backend == third
    tried = [(a.backend, a.outcome, a.status_code) for a in result.attempts]
    assert tried[:2] == [("akashchat", "error", 429), ("sn1-native", "error", 503)]
    assert tried[-1] == (third, "ok", None)
