"""A gateway stream that is opened before the HTTP response starts.

Like :class:`intentmesh.ResultStream`, but it waits for the first token first, so routing and
upstream errors still become proper HTTP statuses and the winning backend can go in headers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator

from intentmesh._gateway import Gateway
from intentmesh._intent import Intent
from intentmesh._result import InferenceResult
from intentmesh.adapters.base import Chunk
from intentmesh.router._executor import Call

__all__ = ["LiveStream"]


class LiveStream:
    """``await open()`` (raises like ``ainfer``), then ``async for``; ``result`` at the end."""

    def __init__(self, gateway: Gateway, intent: Intent) -> None:
        self._gw = gateway
        self._intent = intent
        self._call: Call | None = None
        self._chunks: AsyncIterator[Chunk] | None = None
        self._first: Chunk | None = None
        self.result: InferenceResult | None = None
        self.backend = ""
        self.network = ""
        self._gen: AsyncGenerator[Chunk, None] | None = None

    async def open(self) -> None:
        self._started = time.perf_counter()
        call = self._call = self._gw._call(self._intent)
        self._run = self._gw._executor.stream(call)
        self._chunks = self._run.__aiter__()
        try:
            self._first = await self._chunks.__anext__()
        except StopAsyncIteration:
            self._first = None
        winner = next((a for a in call.attempts if a.outcome == "ok"), None)
        if winner is not None:
            self.backend, self.network = winner.backend, winner.network

    def spent_usd(self) -> float:
        """Cost recorded so far, plus what is still reserved (an upper bound)."""
        if self._call is None:
            return 0.0
        budget = self._call.budget
        return budget.committed + budget.reserved

    def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    async def _iterate(self) -> AsyncGenerator[Chunk, None]:
        assert self._chunks is not None and self._call is not None, "call open() first"
        if self._first is not None:
            yield self._first
            async for chunk in self._chunks:
                yield chunk
        outcome = self._run.outcome
        assert outcome is not None
        self.result = await self._gw._finish(self._intent, self._call, outcome, self._started)

    async def aclose(self) -> None:
        """Close the stream (and with it the upstream request) if it did not run to the end."""
        for gen in (self._gen, self._chunks):
            closer = getattr(gen, "aclose", None)
            if closer is not None:
                await closer()
