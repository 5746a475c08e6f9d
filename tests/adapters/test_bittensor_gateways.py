"""Targon, Nineteen and Apex adapters against their fakes."""

from __future__ import annotations

import pytest
from net_support import chat, collect

from intentmesh.errors import (
    AuthenticationError,
    BackendUnavailable,
    InvalidRequest,
    PaymentRequired,
    RateLimited,
)
from intentmesh.testing.networks import FakeApex, FakeNineteen, FakeTargon

TARGON_MODEL = "NousResearch/Hermes-3-Llama-3.1-8B"


@pytest.fixture
def targon():
    with FakeTargon([TARGON_MODEL]) as server:
        yield server


async def test_targon_always_sends_stream_and_reads_json_despite_sse_header(
    targon, make_backend
) -> None:
    backend = make_backend("targon", targon.base_url, targon.key)
    done = await backend.acomplete(chat(TARGON_MODEL))
    assert done.text == "echo: hello there"
    assert targon.requests[-1].json()["stream"] is False
    assert done.headers["content-type"] == "text/event-stream"


async def test_targon_stream(targon, make_backend) -> None:
    backend = make_backend("targon", targon.base_url, targon.key)
    text, chunks = await collect(backend, chat(TARGON_MODEL))
    assert text == "echo: hello there" and chunks[-1].usage is not None


async def test_targon_sse_body_for_a_request_without_stream_flag(targon, make_backend) -> None:
    """If the stream flag were omitted the hub streams; the adapter still assembles it."""
    from intentmesh.adapters.openai import OpenAIProfile
    from intentmesh.adapters.targon import TargonBackend

    backend = TargonBackend(
        "t", targon.base_url, api_key=targon.key, profile=OpenAIProfile(send_stream_flag=False)
    )
    try:
        done = await backend.acomplete(chat(TARGON_MODEL))
    finally:
        await backend.aclose()
    assert done.text == "echo: hello there"  # the hub streamed; the adapter assembled it
    assert done.usage is None or done.usage.completion_tokens == 3


@pytest.mark.parametrize(
    ("key", "message"), [("short", "invalid authentication"), ("x" * 32, "invalid authentication")]
)
async def test_targon_auth(targon, make_backend, key, message) -> None:
    backend = make_backend("targon", targon.base_url, key)
    with pytest.raises(AuthenticationError, match=message):
        await backend.acomplete(chat(TARGON_MODEL))


async def test_targon_missing_header_is_plain_unauthorized(targon) -> None:
    from intentmesh.adapters.targon import TargonBackend

    backend = TargonBackend("t", targon.base_url)
    try:
        with pytest.raises(AuthenticationError, match="unauthorized"):
            await backend.acomplete(chat(TARGON_MODEL))
    finally:
        await backend.aclose()


async def test_targon_no_credits_is_payment_and_fails_over(targon, make_backend) -> None:
    targon.credits = 10
    backend = make_backend("targon", targon.base_url, targon.key)
    with pytest.raises(PaymentRequired, match="not enough credits"):
        await backend.acomplete(chat(TARGON_MODEL, max_tokens=100))
    with pytest.raises(PaymentRequired):
        await collect(backend, chat(TARGON_MODEL, max_tokens=100))


async def test_targon_upstream_timeout(targon, make_backend) -> None:
    targon.fail_next(1, targon.fault(503))
    backend = make_backend("targon", targon.base_url, targon.key)
    with pytest.raises(BackendUnavailable, match="upstream request timed out") as info:
        await backend.acomplete(chat(TARGON_MODEL))
    assert '"APITimeoutError"' in info.value.body


async def test_targon_models_have_no_prices(targon, make_backend) -> None:
    backend = make_backend("targon", targon.base_url, targon.key)
    (listing,) = await backend.alist_models()
    assert listing.id == TARGON_MODEL and listing.input_price is None


async def test_nineteen(make_backend) -> None:
    with FakeNineteen(["unsloth/Llama-3.2-3B-Instruct"], api_key="k19") as fake:
        backend = make_backend("nineteen", fake.base_url, "k19")
        assert (await backend.acomplete(chat("unsloth/Llama-3.2-3B-Instruct"))).text
        text, _ = await collect(backend, chat("unsloth/Llama-3.2-3B-Instruct"))
        assert text == "echo: hello there"
        fake.fail_next(1, fake.fault(429))
        with pytest.raises(RateLimited, match="Rate limit exceeded"):
            await backend.acomplete(chat("unsloth/Llama-3.2-3B-Instruct"))
        bad = make_backend("nineteen", fake.base_url, "wrong")
        with pytest.raises(AuthenticationError, match="Invalid API key"):
            await bad.acomplete(chat("unsloth/Llama-3.2-3B-Instruct"))


APEX_MODEL = "mrfakename/mistral-small-3.1-24b-instruct-2503-hf"


async def test_apex_sends_api_key_header_and_sn1_fields(make_backend) -> None:
    with FakeApex() as fake:
        backend = make_backend("apex", fake.base_url, fake.key, mixture=True)
        done = await backend.acomplete(chat(APEX_MODEL, seed=7, max_tokens=32))
        assert done.text == "echo: hello there"
        sent = fake.requests[-1]
        assert sent.headers["api-key"] == fake.key and "authorization" not in sent.headers
        body = sent.json()
        assert body["task"] == "InferenceTask" and body["seed"] == 7
        assert body["sampling_parameters"] == {
            "max_new_tokens": 32,
            "do_sample": True,
            "mixture": True,
        }
        text, _ = await collect(backend, chat(APEX_MODEL))
        assert text == "echo: hello there"


async def test_apex_errors(make_backend) -> None:
    with FakeApex(rate_limit=(1, 60.0)) as fake:
        bad = make_backend("apex", fake.base_url, "nope")
        with pytest.raises(AuthenticationError, match="Invalid API key"):
            await bad.acomplete(chat(APEX_MODEL))
        good = make_backend("apex", fake.base_url, fake.key)
        await good.acomplete(chat(APEX_MODEL))
        with pytest.raises(RateLimited):
            await good.acomplete(chat(APEX_MODEL))


async def test_apex_rejects_unknown_options(make_backend) -> None:
    from intentmesh.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="mixtur"):
        make_backend("apex", "http://127.0.0.1:1/v1", "k", mixtur=True)


async def test_apex_missing_header_is_fastapi_422() -> None:
    import httpx

    with FakeApex() as fake:
        async with httpx.AsyncClient() as client:
            response = await client.post(fake.base_url + "/chat/completions", json={})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "api-key"]
    assert InvalidRequest  # a 422 is a caller error: the adapter always sends the key
