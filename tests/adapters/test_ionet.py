"""io.net adapter: paginated model list with metadata prices; chat; errors."""

from __future__ import annotations

import pytest
from net_support import chat, collect

from intentmesh.errors import AuthenticationError, RateLimited
from intentmesh.testing.networks import FakeIONet

PRICES = {
    "meta-llama/Llama-3.3-70B-Instruct": ("0.13", "0.38"),
    "deepseek-ai/DeepSeek-R1-0528": ("0.55", "2.19"),
    "openai/gpt-oss-120b": ("0.00000004", "0.0000004"),
    "Qwen/Qwen3-Next-80B-A3B-Instruct": ("0.10", "0.80"),
    "retired/model": ("1", "1"),
}


async def test_models_across_pages_with_metadata_prices(make_backend) -> None:
    with FakeIONet(PRICES, page_size=2, inactive=("retired/model",)) as fake:
        backend = make_backend("ionet", fake.base_url, fake.key)
        listings = {m.id: m for m in await backend.alist_models()}
        assert set(listings) == set(PRICES) - {"retired/model"}
        assert fake.calls["/v1/models"] == 3
        r1 = listings["deepseek-ai/DeepSeek-R1-0528"]
        assert (r1.input_price, r1.output_price, r1.context_length) == (0.55, 2.19, 131072)
        assert listings["openai/gpt-oss-120b"].output_price == pytest.approx(0.4)


async def test_chat_stream_and_errors(make_backend) -> None:
    model = "meta-llama/Llama-3.3-70B-Instruct"
    with FakeIONet(PRICES) as fake:
        assert fake.base_url.endswith("/api/v1")
        backend = make_backend("ionet", fake.base_url, fake.key)
        assert (await backend.acomplete(chat(model))).text == "echo: hello there"
        text, chunks = await collect(backend, chat(model))
        assert text == "echo: hello there" and chunks[-1].usage is not None
        fake.fail_next(1, fake.fault(429))
        with pytest.raises(RateLimited, match="Daily token quota"):
            await backend.acomplete(chat(model))
        fake.fail_next(1, fake.stream_fault(2))
        with pytest.raises(Exception, match="upstream failed"):
            await collect(backend, chat(model))
        bad = make_backend("ionet", fake.base_url, "nope")
        with pytest.raises(AuthenticationError):
            await bad.alist_models()
