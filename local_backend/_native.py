"""Chat and completions for a :class:`NativeEngine` (xllamacpp): validate, call, answer.

The request is validated by the same models as for the token-level engines (same 400s), tools and
images are settled by :mod:`._tools`, and the engine runs on a worker thread; its answers are
re-labelled with the served model name and its errors turned into our ``{"error": {...}}``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from intentmesh.local_backend._metrics import ServerMetrics
from intentmesh.local_backend._protocol import (
    ChatBody,
    CompletionBody,
    LocalApiError,
    chunk,
    error_body,
    new_id,
    parse_body,
    sse,
)
from intentmesh.local_backend._tools import (
    ToolPlan,
    apply_tool_output,
    check_text_only,
    plan_tools,
)
from intentmesh.local_backend._xllamacpp_engine import Kind, NativeEngine

__all__ = ["NativeRoutes"]

_OURS = ("model", "return_token_ids", "stream_options")
_END = object()


class NativeRoutes:
    """``/v1/chat/completions`` and ``/v1/completions`` over a native engine."""

    def __init__(self, engine: NativeEngine, names: list[str], metrics: ServerMetrics):
        self.engine = engine
        self.names = names
        self.metrics = metrics
        self.limiter = anyio.CapacityLimiter(1)  # one request at a time, in arrival order

    async def chat(self, request: Request) -> Response:
        raw = await request.body()
        body = parse_body(ChatBody, raw)
        wire = self._wire(body, raw)
        check_text_only(wire["messages"])
        plan = plan_tools(wire)
        return await self._respond("chat", request, body, wire, plan)

    async def completions(self, request: Request) -> Response:
        raw = await request.body()
        body = parse_body(CompletionBody, raw)
        prompt = body.prompt
        if isinstance(prompt, list) and len(prompt) > 1 and isinstance(prompt[0], str):
            raise LocalApiError(400, "only one prompt per request is supported", param="prompt")
        if not body.prompt:
            raise LocalApiError(400, "prompt must not be empty", param="prompt")
        wire = self._wire(body, raw)
        wire.setdefault("max_tokens", body.wanted_tokens)
        return await self._respond("completion", request, body, wire, ToolPlan({}))

    def _wire(self, body: ChatBody | CompletionBody, raw: bytes) -> dict[str, Any]:
        if body.model is not None and body.model not in self.names:
            raise LocalApiError(404, f"The model `{body.model}` does not exist.", param="model")
        body.refuse_toploc("xllamacpp")
        if body.return_token_ids:
            raise LocalApiError(
                400, "return_token_ids is not supported by the xllamacpp engine; use "
                "--engine torch or llamacpp for token ids", param="return_token_ids",
            )  # fmt: skip
        data: dict[str, Any] = json.loads(raw)
        return {k: v for k, v in data.items() if k not in _OURS}

    async def _respond(
        self, kind: Kind, request: Request, body: ChatBody | CompletionBody,
        wire: dict[str, Any], plan: ToolPlan,
    ) -> Response:  # fmt: skip
        started = time.perf_counter()
        if body.stream and not plan.tools:
            wire["stream_options"] = {"include_usage": True}  # for the metrics
            events = self._stream(kind, wire)
            first = await anext(events, None)  # an error before the first chunk: HTTP error
            if first is None:
                raise LocalApiError(500, "the engine ended the stream without a chunk")
            self.metrics.count_request(request.url.path, 200)
            return StreamingResponse(
                self._sse(first, events, body.include_usage, started),
                media_type="text/event-stream",
            )
        wire["stream"] = False
        answer = await self._call(kind, wire)
        self.metrics.count_request(request.url.path, 200)
        self._record(answer.get("usage") or {}, started, first_token=True)
        if plan.tools:
            message = answer["choices"][0]["message"]
            reason = apply_tool_output(message, plan)
            if reason is not None:
                answer["choices"][0]["finish_reason"] = reason
        if body.stream:
            return StreamingResponse(
                _replay(answer, body.include_usage), media_type="text/event-stream"
            )
        return JSONResponse(answer)

    async def _call(self, kind: Kind, wire: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await anyio.to_thread.run_sync(
                self.engine.handle, kind, wire, None, limiter=self.limiter
            )
        except (RuntimeError, ValueError) as exc:
            raise LocalApiError(400, f"the engine rejected the request: {exc}") from None
        _raise_engine_error(answer)
        return self._relabel(answer)

    async def _stream(
        self, kind: Kind, wire: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = False

        def on_chunk(data: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, data)
            return stop

        async def run() -> None:
            try:
                await anyio.to_thread.run_sync(
                    self.engine.handle, kind, wire, on_chunk, limiter=self.limiter
                )
            except Exception as exc:  # noqa: BLE001 - reported to the reader
                queue.put_nowait(LocalApiError(400, f"the engine rejected the request: {exc}"))
            queue.put_nowait(_END)

        task = asyncio.ensure_future(run())
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, LocalApiError):
                    raise item
                _raise_engine_error(item)
                yield self._relabel(item)
        finally:
            stop = True
            await asyncio.shield(task)

    async def _sse(
        self,
        first: dict[str, Any],
        events: AsyncGenerator[dict[str, Any], None],
        usage: bool,
        started: float,
    ) -> AsyncIterator[bytes]:
        seen_text = False
        try:
            item: dict[str, Any] | None = first
            while item is not None:
                if item.get("usage") and not item.get("choices"):
                    self._record(item["usage"], started, first_token=not seen_text)
                    if usage:
                        yield sse(item)
                else:
                    if not seen_text and _has_text(item):
                        self.metrics.record_first_token(time.perf_counter() - started)
                        seen_text = True
                    yield sse(item)
                item = await anext(events, None)
        except LocalApiError as err:
            yield sse(error_body(err.status, err.message))
        finally:
            await events.aclose()
        yield sse("[DONE]")

    def _relabel(self, data: dict[str, Any]) -> dict[str, Any]:
        data.pop("timings", None)
        data.pop("system_fingerprint", None)
        if "choices" in data:
            data["model"] = self.names[0]
        return data

    def _record(self, usage: dict[str, Any], started: float, *, first_token: bool) -> None:
        elapsed = time.perf_counter() - started
        if first_token:
            self.metrics.record_first_token(elapsed)
        self.metrics.record_answer(
            int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)), elapsed
        )


def _has_text(item: dict[str, Any]) -> bool:
    choices = item.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return bool(delta.get("content") or choices[0].get("text"))


def _raise_engine_error(data: dict[str, Any]) -> None:
    """llama.cpp answers errors as ``{"error": {...}}`` or as the bare error object."""
    error = data.get("error") if isinstance(data.get("error"), dict) else None
    if error is None and "choices" not in data and "message" in data:
        error = data
    if error is None:
        return
    status = int(error.get("code") or 500)
    message = str(error.get("message") or error)
    if error.get("type") == "exceed_context_size_error":
        status = 400
    raise LocalApiError(status if 400 <= status < 600 else 500, message)


async def _replay(answer: dict[str, Any], usage: bool) -> AsyncIterator[bytes]:
    """A whole chat answer (a tool call) as the chunks a stream would have carried."""
    choice = answer["choices"][0]
    message = choice["message"]
    stream_id, model = answer.get("id") or new_id("chat"), answer["model"]
    yield sse(chunk("chat", stream_id, model, text="", role=True))
    if message.get("content"):
        yield sse(chunk("chat", stream_id, model, text=message["content"]))
    if message.get("tool_calls"):
        calls = [{"index": i, **c} for i, c in enumerate(message["tool_calls"])]
        part = chunk("chat", stream_id, model)
        part["choices"][0]["delta"] = {"tool_calls": calls}
        yield sse(part)
    yield sse(chunk("chat", stream_id, model, finish_reason=choice["finish_reason"]))
    if usage:
        last = chunk("chat", stream_id, model)
        last["choices"] = []
        last["usage"] = answer.get("usage")
        yield sse(last)
    yield sse("[DONE]")
