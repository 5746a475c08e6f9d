"""``FakeOpenAIProvider``: a loopback server speaking the OpenAI/vLLM wire protocol, with faults."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import cache
from typing import Any

from intentmesh.testing._faults import Fault, FaultSchedule, error_body
from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer, StreamEnd
from intentmesh.testing._wire import (
    Kind,
    Plan,
    ReplyFn,
    WireError,
    default_reply,
    full_body,
    parse_request,
    plan_answer,
    split_words,
    stream_events,
)

__all__ = ["FakeOpenAIProvider", "refused_url"]

Route = Callable[[FakeRequest], Awaitable[FakeResponse]]

_SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache"}
_JSON_HEADERS = {"content-type": "application/json"}
_MALFORMED_BODY = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"ind'
_MALFORMED_EVENT = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": {"content": \n\n'
_IMMEDIATE = frozenset({"status", "hang", "refuse"})
_GARBAGE_EVENT = b"data: {not json at all\n\n"


class FakeOpenAIProvider(LoopbackServer):
    """An OpenAI-compatible (vLLM-like) provider on ``127.0.0.1`` for tests and benchmarks.

    Serves ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (plain
    and SSE) and ``GET /health``. Every request is counted by path in :attr:`calls` and kept in
    :attr:`requests` (pass ``record=False`` in long benchmarks to keep memory flat). Faults are
    scheduled with :meth:`fail_next`, :meth:`always` and :meth:`fail_rate`; each generation
    request takes the next one.
    """

    def __init__(
        self,
        models: Sequence[str] = ("fake-model",),
        *,
        api_key: str | None = None,
        reply: ReplyFn | None = None,
        fill: bool = False,
        latency_ms: float = 0.0,
        jitter_ms: float = 0.0,
        token_delay_ms: float = 0.0,
        seed: int = 0,
        owned_by: str = "intentmesh-fake",
        record: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        if not models:
            raise ValueError("a provider needs at least one model id")
        self.models = list(models)
        self.api_key = api_key
        self.reply: ReplyFn = reply or default_reply
        self.fill = fill
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.token_delay_ms = token_delay_ms
        self.owned_by = owned_by
        self.record = record
        self.requests: list[FakeRequest] = []
        self.calls: Counter[str] = Counter()
        self.faults = FaultSchedule()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._created = int(time.time())
        self._routes: dict[tuple[str, str], Route] = {
            ("GET", "/health"): self._health,
            ("GET", "/v1/models"): self._list_models,
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/completions"): self._completions,
        }

    # -- fault scheduling -----------------------------------------------------------------

    def fail_next(self, n: int, fault: Fault) -> None:
        """The next ``n`` generation requests get ``fault`` (queued after earlier calls)."""
        self.faults.fail_next(n, fault)

    def always(self, fault: Fault) -> None:
        """Every generation request gets ``fault`` until :meth:`clear_faults`."""
        self.faults.always(fault)

    def fail_rate(self, p: float, fault: Fault, seed: int = 0) -> None:
        """Each generation request gets ``fault`` with probability ``p`` (seeded, repeatable)."""
        self.faults.fail_rate(p, fault, seed)

    def clear_faults(self) -> None:
        self.faults.clear()

    def clear_records(self) -> None:
        """Forget :attr:`requests` and :attr:`calls`."""
        self.requests.clear()
        self.calls.clear()

    # -- routing ----------------------------------------------------------------------------

    async def handle(self, request: FakeRequest) -> FakeResponse:
        if self.record:
            self.requests.append(request)
        path = request.path.rstrip("/") or "/"
        self.calls[path] += 1
        route = self._routes.get((request.method, path))
        if route is None:
            known = any(p == path for _, p in self._routes)
            status = 405 if known else 404
            return FakeResponse.json(error_body(f"{request.method} {path}", status), status)
        if path != "/health" and not self._authorized(request):
            return FakeResponse.json(error_body("Invalid API key", 401), 401)
        return await route(request)

    def _authorized(self, request: FakeRequest) -> bool:
        if self.api_key is None:
            return True
        return bool(request.headers.get("authorization") == f"Bearer {self.api_key}")

    async def _health(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(200)

    async def _list_models(self, request: FakeRequest) -> FakeResponse:
        data = [
            {"id": m, "object": "model", "created": self._created, "owned_by": self.owned_by}
            for m in self.models
        ]
        return FakeResponse.json({"object": "list", "data": data})

    async def _chat(self, request: FakeRequest) -> FakeResponse:
        return await self._generate(request, "chat")

    async def _completions(self, request: FakeRequest) -> FakeResponse:
        return await self._generate(request, "text")

    # -- generation -------------------------------------------------------------------------

    async def _generate(self, request: FakeRequest, kind: Kind) -> FakeResponse:
        fault = self.faults.take()
        if fault is not None and fault.kind in _IMMEDIATE:
            return await self._immediate(fault)
        try:
            wire = parse_request(kind, _json_or_none(request))
            if wire.model not in self.models:
                message = f"The model `{wire.model}` does not exist."
                raise WireError(404, message, "model")
        except WireError as exc:
            return FakeResponse.json(exc.body, exc.status)
        plan = plan_answer(wire, self.reply, self.fill)
        if fault is not None and fault.kind == "runaway":
            words = split_words(("lorem ipsum " * (fault.chars // 12 + 1))[: fault.chars])
            plan = Plan(wire, tuple(words), "stop", plan.prompt_tokens)
        await self._sleep_ms(self._first_byte_ms(fault))
        headers = _echo_request_id(request)
        if wire.stream:
            return self._stream_response(plan, fault, headers)
        await self._sleep_ms(self.token_delay_ms * len(plan.words))
        return self._full_response(plan, fault, headers)

    async def _immediate(self, fault: Fault) -> FakeResponse:
        await self._sleep_ms(self._first_byte_ms(None))
        if fault.kind == "hang":
            return FakeResponse.hang()
        if fault.kind == "refuse":
            return FakeResponse.reset() if fault.reset else FakeResponse.close()
        body = fault.body
        if body is None:
            body = error_body(f"injected fault: HTTP {fault.status_code}", fault.status_code)
        if isinstance(body, str | bytes):
            text = body.decode() if isinstance(body, bytes) else body
            return FakeResponse.text(text, fault.status_code, fault.headers)
        return FakeResponse.json(body, fault.status_code, fault.headers)

    def _first_byte_ms(self, fault: Fault | None) -> float:
        delay = self.latency_ms
        if self.jitter_ms:
            delay += self._rng.uniform(0.0, self.jitter_ms)
        if fault is not None and fault.kind == "latency":
            delay += fault.ms
        return delay

    def _identity(self, plan: Plan, fault: Fault | None) -> tuple[str, int, str, float]:
        prefix = "chatcmpl" if plan.wire.kind == "chat" else "cmpl"
        model = (
            fault.model if fault is not None and fault.kind == "wrong_model" else plan.wire.model
        )
        factor = fault.factor if fault is not None and fault.kind == "wrong_usage" else 1.0
        return f"{prefix}-fake{next(self._ids):08x}", int(time.time()), model, factor

    def _full_response(
        self, plan: Plan, fault: Fault | None, headers: dict[str, str]
    ) -> FakeResponse:
        kind = fault.kind if fault is not None else None
        headers = {**_JSON_HEADERS, **headers}
        if kind == "malformed_json":
            return FakeResponse(200, headers, _MALFORMED_BODY)
        if kind == "stall":
            assert fault is not None
            return FakeResponse.streaming(
                _after_pause(fault.ms, [full_body(plan, *self._identity(plan, fault))]),
                200,
                headers,
            )
        if kind == "in_stream_error":
            assert fault is not None
            return FakeResponse.json(fault.body, 500, headers)
        body = full_body(plan, *self._identity(plan, fault))
        if kind == "usage":
            assert fault is not None
            body = _with_usage(body, fault.reported)
        if kind == "trickle":
            assert fault is not None
            return FakeResponse.streaming(_trickle(body, fault.ms), 200, headers)
        if kind in ("reset_mid_stream", "truncated_stream"):
            headers["content-length"] = str(len(body))
            end: StreamEnd = "reset" if kind == "reset_mid_stream" else "truncate"
            return FakeResponse.streaming(_once(body[: len(body) // 2]), 200, headers, end)
        return FakeResponse(200, headers, body)

    def _stream_response(
        self, plan: Plan, fault: Fault | None, headers: dict[str, str]
    ) -> FakeResponse:
        events, finish_index = stream_events(plan, *self._identity(plan, fault))
        headers = {**_SSE_HEADERS, **headers}
        kind = fault.kind if fault is not None else None
        if fault is not None and kind in _SHAPE_FAULTS:
            return self._shaped_stream(events, finish_index, fault, headers)
        if fault is None or kind not in _STREAM_FAULTS:
            return FakeResponse.streaming(self._paced(events), 200, headers)
        at = min(fault.after_chunks, finish_index)
        if kind == "malformed_json":
            events = [*events[:at], _MALFORMED_EVENT, *events[at:]]
            return FakeResponse.streaming(self._paced(events), 200, headers)
        if kind == "in_stream_error":
            error = b"data: " + FakeResponse.json(fault.body).body + b"\n\n"
            return FakeResponse.streaming(self._paced([*events[:at], error]), 200, headers)
        if kind == "truncated_stream":
            cut: StreamEnd = "complete" if fault.complete_http else "truncate"
            return FakeResponse.streaming(self._paced(events[:at]), 200, headers, cut)
        return FakeResponse.streaming(self._paced(events[:at]), 200, headers, "reset")

    def _shaped_stream(
        self, events: list[bytes], finish_index: int, fault: Fault, headers: dict[str, str]
    ) -> FakeResponse:
        """Streams that misbehave in time or content rather than by breaking."""
        if fault.kind == "usage":
            events = [_with_usage_event(e, fault.reported) for e in events]
            events = [e for e in events if e]
            return FakeResponse.streaming(self._paced(events), 200, headers)
        if fault.kind == "garbage_stream":
            garbage = [_GARBAGE_EVENT] * max(1, finish_index)
            return FakeResponse.streaming(self._paced([*garbage, events[-1]]), 200, headers)
        if fault.kind == "trickle":
            return FakeResponse.streaming(_trickle(b"".join(events), fault.ms), 200, headers)
        at = min(fault.after_chunks, finish_index)
        paused = _after_pause(fault.ms, events[at:])
        return FakeResponse.streaming(_chain(self._paced(events[:at]), paused), 200, headers)

    async def _paced(self, events: list[bytes]) -> AsyncIterator[bytes]:
        """Yield the events, ``token_delay_ms`` apart (the first one at once). Without a delay,
        let other connections run every few events, as a real server interleaves streams."""
        delay = self.token_delay_ms / 1000
        for index, event in enumerate(events):
            if index and delay:
                await asyncio.sleep(delay)
            elif index % 16 == 15:
                await asyncio.sleep(0)
            yield event

    @staticmethod
    async def _sleep_ms(ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)


_STREAM_FAULTS = frozenset(
    {"malformed_json", "in_stream_error", "truncated_stream", "reset_mid_stream"}
)


_SHAPE_FAULTS = frozenset({"usage", "garbage_stream", "trickle", "stall"})


async def _trickle(body: bytes, interval_ms: float) -> AsyncIterator[bytes]:
    for i in range(len(body)):
        if i:
            await asyncio.sleep(interval_ms / 1000)
        yield body[i : i + 1]


async def _after_pause(ms: float, events: list[bytes]) -> AsyncIterator[bytes]:
    """Silence for ``ms`` (forever when negative), then ``events``."""
    if ms < 0:
        await asyncio.Event().wait()
    await asyncio.sleep(ms / 1000)
    for event in events:
        yield event


async def _chain(*sources: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for source in sources:
        async for item in source:
            yield item


def _with_usage(body: bytes, usage: Any) -> bytes:
    data = json.loads(body)
    if usage is None:
        data.pop("usage", None)
    else:
        data["usage"] = usage
    return json.dumps(data, separators=(",", ":")).encode()


def _with_usage_event(event: bytes, usage: Any) -> bytes:
    """The usage event rewritten (or dropped when ``usage`` is None); others unchanged."""
    if not event.startswith(b"data: {") or b'"usage"' not in event:
        return event
    if usage is None:
        return b""
    return b"data: " + _with_usage(event[6:].strip(), usage) + b"\n\n"


def _json_or_none(request: FakeRequest) -> Any:
    try:
        return request.json()
    except ValueError:
        return None


def _echo_request_id(request: FakeRequest) -> dict[str, str]:
    rid = request.headers.get("x-request-id")
    return {"x-request-id": rid} if rid else {}


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


@cache
def _reserved_socket() -> socket.socket:
    # Bound but never listening: connecting gets ECONNREFUSED, and nothing else can take the
    # port while this process lives (the cache keeps the socket open).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def refused_url() -> str:
    """A base URL (``http://127.0.0.1:PORT/v1``) where connecting is refused."""
    port: int = _reserved_socket().getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
