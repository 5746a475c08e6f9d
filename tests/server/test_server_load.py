"""Load: 500 concurrent streams through the gateway; none lost or mixed up; every receipt kept."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest
from server_support import MODEL

from intentmesh import Gateway
from intentmesh.server import ThreadedServer

N = 500


@pytest.mark.slow
async def test_500_concurrent_streams(server: ThreadedServer, gateway: Gateway) -> None:
    async def one(api: openai.AsyncOpenAI, i: int) -> tuple[int, str, dict[str, Any]]:
        stream = await api.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"request number {i}"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return i, text, (chunks[-1].model_extra or {})["intentmesh"]

    api = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0, timeout=60)
    async with api:
        results = await asyncio.gather(*(one(api, i) for i in range(N)))
    assert len(results) == N
    for i, text, _ in results:
        assert text == f"echo: request number {i}"
    receipt_ids = {info["receipt_id"] for _, _, info in results}
    assert len(receipt_ids) == N
    ledger = gateway.ledger
    assert all(ledger.get(rid) is not None for rid in receipt_ids)
    gateway.verify_ledger().raise_if_bad()
