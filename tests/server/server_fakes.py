"""In-process backends for the server tests: ones that never finish, ones that call tools, and
a loopback provider that publishes TEE evidence."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

from intentmesh.adapters.base import ChatRequest, Chunk, Completion, Usage
from intentmesh.testing import FakeOpenAIProvider, FakeRequest, FakeResponse
from intentmesh.verify import build_tdx_quote

GOLDEN_MRTD = "11" * 48


class TeeProvider(FakeOpenAIProvider):
    """An OpenAI-compatible provider that serves a TDX attestation report bound to the nonce at
    ``GET /v1/attestation/report?nonce=`` (the ``kind = "openai"`` shape). Its measurement is
    ``mrtd``: anything but :data:`GOLDEN_MRTD` fails the ``measurement`` check."""

    def __init__(self, mrtd: str = GOLDEN_MRTD, **kwargs: Any) -> None:
        super().__init__(["fake-llama"], **kwargs)
        self.mrtd = mrtd
        self._routes[("GET", "/v1/attestation/report")] = self._report

    async def _report(self, request: FakeRequest) -> FakeResponse:
        nonce = request.query["nonce"]
        quote = build_tdx_quote(bytes.fromhex(nonce), mrtd=bytes.fromhex(self.mrtd))
        return FakeResponse.json(
            {"signing_address": "inst-1", "intel_quote": base64.b64encode(quote).decode(),
             "nonce": nonce, "timestamp": time.time()}
        )


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
