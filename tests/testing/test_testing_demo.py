"""DemoNetwork: three running providers and the TOML config that describes them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import httpx

from intentmesh.config import load_config
from intentmesh.testing import DemoNetwork, Fault


def test_config_describes_each_running_provider(tmp_path: Path) -> None:
    with DemoNetwork(latency_scale=0) as demo:
        config = tomllib.loads(demo.config_toml())
        written = demo.write_config(tmp_path / "intentmesh.toml")
        assert tomllib.loads(written.read_text()) == config
        backends = config["backends"]
        assert [b["name"] for b in backends] == ["chutes", "akash", "ionet"]
        assert [b["network"] for b in backends] == ["bittensor", "akash", "ionet"]
        for backend in backends:
            assert backend["type"] == "openai"
            assert "api_key_env" not in backend
            (model,) = backend["models"]
            assert model["name"] == "llama-3.1-8b-instruct"
            assert isinstance(model["input_price"], float)
            response = httpx.post(
                backend["base_url"] + "/chat/completions",
                json={"model": model["id"], "messages": [{"role": "user", "content": "hi"}]},
            )
            assert response.json()["model"] == model["id"]
        prices = [b["models"][0]["output_price"] for b in backends]
        assert prices == sorted(prices)
        assert [b["latency_ms"] for b in backends] == [1, 1, 1]  # scaled to 0, floored at 1
        loaded = load_config(written)
        assert [b.name for b in loaded.backends] == ["chutes", "akash", "ionet"]


def test_latency_priors_follow_the_providers() -> None:
    with DemoNetwork(latency_scale=0.5) as demo:
        backends = tomllib.loads(demo.config_toml())["backends"]
    assert [b["latency_ms"] for b in backends] == [150, 60, 20]


def test_config_text_format() -> None:
    with DemoNetwork(api_key="k", latency_scale=1) as demo:
        text = demo.config_toml()
        url = demo.providers["chutes"].base_url
    assert text.startswith(
        "[[backends]]\n"
        'name = "chutes"\n'
        'type = "openai"\n'
        'network = "bittensor"\n'
        f'base_url = "{url}"\n'
        'api_key_env = "DEMO_KEY"\n'
        "latency_ms = 300\n"
        "[[backends.models]]\n"
        'name = "llama-3.1-8b-instruct"\n'
        'id = "unsloth/Llama-3.1-8B-Instruct"\n'
        "input_price = 0.02\n"
        "output_price = 0.05\n"
    )
    assert demo.env() == {"DEMO_KEY": "k"}


async def test_async_demo_with_auth_and_injected_fault() -> None:
    async with DemoNetwork(api_key="k", latency_scale=0) as demo:
        cheapest = demo.providers["chutes"]
        cheapest.fail_next(1, Fault.status(503))
        headers = {"authorization": "Bearer k"}
        async with httpx.AsyncClient(base_url=cheapest.base_url, headers=headers) as http:
            payload = {
                "model": "unsloth/Llama-3.1-8B-Instruct",
                "messages": [{"role": "user", "content": "x"}],
            }
            codes = [(await http.post("/chat/completions", json=payload)).status_code]
            codes.append((await http.post("/chat/completions", json=payload)).status_code)
    assert codes == [503, 200]
    assert not cheapest.running
