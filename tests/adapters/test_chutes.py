"""Chutes adapter against FakeChutes: auth, prices, TEE flags, evidence, every error."""

from __future__ import annotations

import pytest
from net_support import chat, collect

from intentmesh.adapters.chutes import ChutesBackend
from intentmesh.errors import (
    AuthenticationError,
    BackendUnavailable,
    ConfigurationError,
    InvalidRequest,
    ModelNotFound,
    PaymentRequired,
    RateLimited,
)
from intentmesh.testing.networks import ChutesModel, FakeChutes

MODELS = [
    ChutesModel("unsloth/Llama-3.1-8B-Instruct", 0.02, 0.05),
    ChutesModel("Qwen/Qwen3-32B-TEE", 0.104, 0.416, confidential=True),
]


@pytest.fixture
def fake():
    with FakeChutes(MODELS) as server:
        yield server


@pytest.fixture
def backend(fake, make_backend) -> ChutesBackend:
    return make_backend("chutes", fake.base_url, fake.key)


async def test_complete_and_invocation_header(backend, fake) -> None:
    done = await backend.acomplete(chat("unsloth/Llama-3.1-8B-Instruct"))
    assert done.text == "echo: hello there"
    assert done.usage is not None and done.usage.completion_tokens == 3
    assert "x-chutes-invocationid" in done.headers
    sent = fake.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {fake.key}"
    assert sent.json()["stream"] is False


async def test_stream_with_usage(backend) -> None:
    text, chunks = await collect(backend, chat("Qwen/Qwen3-32B-TEE"))
    assert text == "echo: hello there"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0


async def test_tiny_prices_are_still_usd_per_million() -> None:
    """Chutes documents USD per 1M tokens: 0.0008 is $0.0008 per 1M, not a per-token price."""
    cheap = [ChutesModel("unsloth/gemma-3-270m-it", 0.0008, 0.0002)]
    with FakeChutes(cheap) as server:
        anonymous = ChutesBackend("chutes", server.base_url)
        (listing,) = await anonymous.alist_models()
        await anonymous.aclose()
    assert (listing.input_price, listing.output_price) == (0.0008, 0.0002)


async def test_prices_and_tee_flag_from_models_without_auth(fake) -> None:
    anonymous = ChutesBackend("chutes", fake.base_url)
    listings = {m.id: m for m in await anonymous.alist_models()}
    await anonymous.aclose()
    tee = listings["Qwen/Qwen3-32B-TEE"]
    assert (tee.input_price, tee.output_price) == (0.104, 0.416)
    assert tee.attributes["confidential_compute"] is True
    assert tee.attributes["verifiability"] == ("attested",)
    assert "Qwen/Qwen3-32B" in tee.attributes["aliases"]
    assert listings["unsloth/Llama-3.1-8B-Instruct"].attributes["verifiability"] == ()
    assert tee.context_length == 40960


async def test_missing_key_is_a_configuration_error(make_backend, fake, monkeypatch) -> None:
    monkeypatch.delenv("CHUTES_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="TEST_CHUTES_KEY"):
        make_backend("chutes", fake.base_url, None, api_key_env="TEST_CHUTES_KEY_UNSET")


async def test_wrong_key(fake, make_backend) -> None:
    backend = make_backend("chutes", fake.base_url, "cpk_wrong")
    with pytest.raises(AuthenticationError, match="api key in our db"):
        await backend.acomplete(chat("unsloth/Llama-3.1-8B-Instruct"))


async def test_quota_exhausted_is_payment_required(backend, fake) -> None:
    fake.quota_exhausted = True
    with pytest.raises(PaymentRequired, match="Quota exceeded"):
        await backend.acomplete(chat("unsloth/Llama-3.1-8B-Instruct"))


async def test_unknown_model(backend) -> None:
    with pytest.raises(ModelNotFound, match="model not found: nope/nope"):
        await backend.acomplete(chat("nope/nope"))


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (429, RateLimited, "maximum capacity"),
        (503, BackendUnavailable, "No instances available"),
        (500, BackendUnavailable, "exhausted all available targets"),
        (400, InvalidRequest, "Invalid request"),
    ],
)
async def test_documented_errors(backend, fake, status, error, match) -> None:
    fake.fail_next(1, fake.fault(status))
    with pytest.raises(error, match=match) as info:
        await backend.acomplete(chat("unsloth/Llama-3.1-8B-Instruct"))
    assert info.value.status_code == status


async def test_errors_before_the_stream_get_a_status(backend, fake) -> None:
    fake.fail_next(1, fake.fault(429))
    with pytest.raises(RateLimited):
        await collect(backend, chat("unsloth/Llama-3.1-8B-Instruct"))


async def test_in_stream_error_event(backend, fake) -> None:
    fake.fail_next(1, fake.stream_fault(2, "exhausted all available targets to no avail"))
    seen: list[str] = []
    with pytest.raises(BackendUnavailable, match="exhausted all available targets"):
        async for chunk in backend.astream(chat("unsloth/Llama-3.1-8B-Instruct")):
            seen.append(chunk.text)
    assert "".join(seen).startswith("echo")


async def test_rate_limit_window(fake, make_backend) -> None:
    fake.rate_limit = (2, 60.0)
    backend = make_backend("chutes", fake.base_url, fake.key)
    for _ in range(2):
        await backend.acomplete(chat("unsloth/Llama-3.1-8B-Instruct"))
    with pytest.raises(RateLimited):
        await backend.acomplete(chat("unsloth/Llama-3.1-8B-Instruct"))


async def test_evidence_for_a_tee_chute(backend, fake) -> None:
    chute = fake.catalog["Qwen/Qwen3-32B-TEE"].chute
    evidence = await backend.aevidence(chute)
    assert len(evidence.nonce) == 64
    assert evidence["evidence"][0]["gpu_evidence"][0]["arch"] == "HOPPER"
    assert len(evidence.digest) == 64
    sent = fake.requests[-1]
    assert sent.path == f"/chutes/{chute}/evidence" and sent.query["nonce"] == evidence.nonce


async def test_evidence_errors(backend, fake) -> None:
    plain = fake.catalog["unsloth/Llama-3.1-8B-Instruct"].chute
    with pytest.raises(InvalidRequest, match="is not TEE-enabled"):
        await backend.aevidence(plain)
    tee = fake.catalog["Qwen/Qwen3-32B-TEE"].chute
    with pytest.raises(InvalidRequest, match="Nonce must be exactly 64 hex characters"):
        await backend.aevidence(tee, nonce="abc")


def test_management_url_for_the_public_host() -> None:
    backend = ChutesBackend("c", "https://llm.chutes.ai/v1", api_key="cpk_x")
    assert backend.management_url == "https://api.chutes.ai"
