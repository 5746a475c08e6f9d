"""AkashChat, AkashML, self-hosted vLLM (price estimate) and SDL generation."""

from __future__ import annotations

import pytest
from net_support import chat, collect

from intentmesh.adapters.akash import AkashVLLMBackend, generate_sdl
from intentmesh.errors import (
    AuthenticationError,
    BackendTimeout,
    ModelNotFound,
    PaymentRequired,
    RateLimited,
)
from intentmesh.testing.networks import (
    FakeAkashChat,
    FakeAkashConsole,
    FakeAkashML,
    FakeVLLM,
    gpu_price_entry,
)

CHAT_MODEL = "Meta-Llama-3-1-8B-Instruct-FP8"

yaml = pytest.importorskip("yaml")


async def test_akashchat_under_api_prefix_free_with_catalog_aliases(make_backend) -> None:
    with FakeAkashChat([CHAT_MODEL, "DeepSeek-V3-1"]) as fake:
        assert fake.base_url.endswith("/api/v1")
        backend = make_backend("akashchat", fake.base_url, fake.key)
        assert (await backend.acomplete(chat(CHAT_MODEL))).text == "echo: hello there"
        text, _ = await collect(backend, chat(CHAT_MODEL))
        assert text == "echo: hello there"
        listings = {m.id: m for m in await backend.alist_models()}
        assert listings[CHAT_MODEL].input_price == 0.0
        assert listings[CHAT_MODEL].attributes["aliases"] == ("meta-llama/Llama-3.1-8B-Instruct",)
        assert listings["DeepSeek-V3-1"].attributes["aliases"] == ("deepseek-ai/DeepSeek-V3.1",)


async def test_akashchat_errors_in_litellm_shape(make_backend) -> None:
    with FakeAkashChat(rate_limit=(2, 300.0)) as fake:
        bad = make_backend("akashchat", fake.base_url, "sk-wrong")
        with pytest.raises(AuthenticationError, match="Invalid proxy server token") as info:
            await bad.acomplete(chat(CHAT_MODEL))
        assert '"code":"401"' in info.value.body
        good = make_backend("akashchat", fake.base_url, fake.key)
        await good.acomplete(chat(CHAT_MODEL))
        with pytest.raises(ModelNotFound):
            await good.acomplete(chat("nope"))
        with pytest.raises(RateLimited):
            await good.acomplete(chat(CHAT_MODEL))


ML_MODEL = "meta-llama/Llama-3.3-70B-Instruct"


async def test_akashml_prices_are_strings_and_inference_id(make_backend) -> None:
    prices = {ML_MODEL: ("0.13", "0.40"), "Qwen/Qwen3-8B": ("0.00000005", "0.0000002")}
    with FakeAkashML(prices) as fake:
        backend = make_backend("akashml", fake.base_url, fake.key)
        listings = {m.id: m for m in await backend.alist_models()}
        assert (listings[ML_MODEL].input_price, listings[ML_MODEL].output_price) == (0.13, 0.4)
        per_token = listings["Qwen/Qwen3-8B"]
        assert per_token.input_price == pytest.approx(0.05)  # per-token strings → per 1M
        done = await backend.acomplete(chat(ML_MODEL))
        assert "inference-id" in done.headers
        text, _ = await collect(backend, chat(ML_MODEL))
        assert text == "echo: hello there"


@pytest.mark.parametrize(
    ("status", "error"),
    [(402, PaymentRequired), (429, RateLimited), (504, BackendTimeout), (529, RateLimited)],
)
async def test_akashml_documented_errors(make_backend, status, error) -> None:
    with FakeAkashML() as fake:
        backend = make_backend("akashml", fake.base_url, fake.key)
        fake.fail_next(1, fake.fault(status))
        with pytest.raises(error) as info:
            await backend.acomplete(chat(ML_MODEL))
        assert info.value.status_code == status
        bad = make_backend("akashml", fake.base_url, "wrong")
        with pytest.raises(AuthenticationError):
            await bad.acomplete(chat(ML_MODEL))


VLLM_MODEL = "meta-llama/Llama-3.1-8B-Instruct"


async def test_vllm_price_estimate_from_console_and_configured_throughput(make_backend) -> None:
    with FakeAkashConsole() as console, FakeVLLM([VLLM_MODEL]) as vllm:
        backend = make_backend(
            "akash-vllm",
            vllm.base_url,
            "vllm-key",
            gpu="h100",
            gpu_count=2,
            tokens_per_s=1000.0,
            console_api_url=console.url,
        )
        (listing,) = await backend.alist_models()
        # $1.8/GPU-h × 2 GPUs / (3600 s × 1000 tok/s) × 1e6 = $1.00 per 1M tokens
        assert listing.input_price == pytest.approx(1.0)
        assert listing.attributes["price_source"] == "estimated"
        assert listing.attributes["gpu_hourly_usd"] == 1.8
        assert console.calls == 1
        done = await backend.acomplete(chat(VLLM_MODEL))
        assert done.text == "echo: hello there"


async def test_vllm_throughput_measured_from_metrics(make_backend) -> None:
    import anyio

    with FakeAkashConsole() as console, FakeVLLM([VLLM_MODEL], tokens_per_s=500.0) as vllm:
        backend = make_backend("akash-vllm", vllm.base_url, "vllm-key", console_api_url=console.url)
        assert isinstance(backend, AkashVLLMBackend)
        assert await backend.atokens_per_s() is None  # one scrape is not a rate yet
        await anyio.sleep(0.2)
        rate = await backend.atokens_per_s()
        assert rate == pytest.approx(500.0, rel=0.25)


async def test_vllm_null_gpu_price_gives_no_estimate(make_backend) -> None:
    with FakeAkashConsole([gpu_price_entry("a100", None)]) as console, FakeVLLM() as vllm:
        backend = make_backend(
            "akash-vllm",
            vllm.base_url,
            "vllm-key",
            gpu="a100",
            tokens_per_s=100.0,
            console_api_url=console.url,
        )
        (listing,) = await backend.alist_models()
        assert listing.input_price is None and listing.attributes["gpu_hourly_usd"] is None


async def test_vllm_unauthorized_shape(make_backend) -> None:
    with FakeVLLM() as vllm:
        backend = make_backend("akash-vllm", vllm.base_url, "wrong")
        with pytest.raises(AuthenticationError, match="Unauthorized"):
            await backend.acomplete(chat(VLLM_MODEL))


def test_sdl_for_a_catalog_model() -> None:
    text = generate_sdl("llama-3.1-8b-instruct", "h100", gpu_count=2)
    sdl = yaml.safe_load(text)
    service = sdl["services"]["vllm"]
    assert sdl["version"] == "2.0"
    assert service["expose"][0] == {"port": 8000, "as": 8000, "to": [{"global": True}]}
    command = service["args"][0]
    assert command.startswith("vllm serve meta-llama/Llama-3.1-8B-Instruct ")
    assert "--served-model-name meta-llama/Llama-3.1-8B-Instruct llama-3.1-8b-instruct" in command
    assert "--tensor-parallel-size 2" in command
    assert "VLLM_API_KEY=${VLLM_API_KEY}" in service["env"]
    gpu = sdl["profiles"]["compute"]["vllm"]["resources"]["gpu"]
    assert gpu["units"] == 2
    assert gpu["attributes"]["vendor"]["nvidia"] == [{"model": "h100", "ram": "80Gi"}]
    assert sdl["deployment"]["vllm"]["dcloud"] == {"profile": "vllm", "count": 1}
    assert sdl["profiles"]["placement"]["dcloud"]["pricing"]["vllm"]["denom"] == "uakt"


def test_every_akash_vllm_option_is_documented() -> None:
    """docs/networks/akash.md names each key ``type = "akash-vllm"`` accepts beyond OpenAI's."""
    from pathlib import Path

    from intentmesh.adapters.akash import AkashVLLMOptions
    from intentmesh.adapters.openai import OpenAIOptions

    doc = (Path(__file__).parents[2] / "docs" / "networks" / "akash.md").read_text()
    own = set(AkashVLLMOptions.model_fields) - set(OpenAIOptions.model_fields)
    assert "console_api_url" in own
    assert [name for name in sorted(own) if f"{name} =" not in doc] == []
