"""Small helpers shared by the network adapter tests."""

from __future__ import annotations

from typing import Any

from intentmesh.adapters.base import ChatRequest


def chat(model: str, text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], **kw)


async def collect(backend: Any, request: ChatRequest) -> tuple[str, list[Any]]:
    chunks = [c async for c in backend.astream(request)]
    return "".join(c.text for c in chunks), chunks
