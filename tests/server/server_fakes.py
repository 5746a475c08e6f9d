"""In-process backends for the server tests: ones that never finish, and ones that call tools."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from intentmesh.adapters.base import ChatRequest, Chunk, Completion, Usage


class StallingBackend:
    """Sends one token, then waits forever; records when the gateway cancels it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.cancelled = 0
        self.closed = 0

    async def acomplete(self, request: ChatRequest) -> Completion:
        try:
            self.started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        raise AssertionError("unreachable")

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        try:
            yield Chunk(text="first")
            self.started.set()
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        return None


TOOL_CALL: dict[str, Any] = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


class ToolCallingBackend:
    """Answers every request with one call to ``get_weather``; records the tools it was sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests: list[ChatRequest] = []

    async def acomplete(self, request: ChatRequest) -> Completion:
        self.requests.append(request)
        usage = Usage(prompt_tokens=12, completion_tokens=7)
        return Completion("", "tool_calls", usage, request.model, tool_calls=[TOOL_CALL])

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        yield Chunk(tool_calls=[{"index": 0, **TOOL_CALL}], model=request.model)
        yield Chunk(finish_reason="tool_calls", usage=Usage(12, 7), model=request.model)

    async def aclose(self) -> None:
        return None
