"""The OpenAI-compatible ASGI app around one engine (Starlette; run it with uvicorn).

``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (whole or SSE
stream), ``GET /health`` and ``GET /metrics``; errors are ``{"error": {...}}`` as vLLM sends them.
Generation runs on one worker thread (:mod:`._worker`), never on the event loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from intentmesh.local_backend._generation import (
    Engine,
    GenerationResult,
    PromptTooLong,
    SamplingParams,
    check_budget,
)
from intentmesh.local_backend._metrics import ServerMetrics
from intentmesh.local_backend._protocol import (
    ChatBody,
    CompletionBody,
    LocalApiError,
    answer,
    chunk,
    error_body,
    new_id,
    parse_body,
    sse,
    usage_chunk,
)
from intentmesh.local_backend._tools import check_text_only
from intentmesh.local_backend._worker import Finish, GenerationWorker, Prepare, WorkerEvent
from intentmesh.local_backend._xllamacpp_engine import NativeEngine

__all__ = ["create_app"]

Kind = Literal["chat", "completion"]


def create_app(
    engine: Engine | NativeEngine, *, served_model_names: Sequence[str] = ()
) -> Starlette:
    """An ASGI app serving ``engine``; the first served name is the one answers report."""
    names = list(served_model_names) or [engine.model_id]
    server = _Server(engine, names)
    if server.worker is None:
        from intentmesh.local_backend._native import NativeRoutes

        native = NativeRoutes(engine, names, server.metrics)  # type: ignore[arg-type]
        chat, completions = native.chat, native.completions
    else:
        chat, completions = server.chat, server.completions

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if server.worker is not None:
            server.worker.close()

    return Starlette(
        routes=[
            Route("/v1/models", server.models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/health", server.health, methods=["GET"]),
            Route("/metrics", server.metrics_text, methods=["GET"]),
        ],
        exception_handlers={LocalApiError: server.api_error, HTTPException: server.http_error},
        lifespan=lifespan,
    )


class _Server:
    def __init__(self, engine: Engine | NativeEngine, names: list[str]):
        self.names = names
        self.created = int(time.time())
        self.metrics = ServerMetrics(names[0])
        self.worker: GenerationWorker | None = None
        if not hasattr(engine, "handle"):  # a token-level engine: we drive generation
            self.worker = GenerationWorker(engine, self.metrics)
        self.context_length = engine.context_length

    async def models(self, request: Request) -> Response:
        data: list[dict[str, object]] = [
            {"id": name, "object": "model", "created": self.created, "owned_by": "intentmesh",
             "root": self.names[0], "parent": None, "max_model_len": self.context_length,
             "permission": []}
            for name in self.names
        ]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        alive = self.worker is None or self.worker.alive
        return Response(status_code=200 if alive else 503)

    async def metrics_text(self, request: Request) -> Response:
        return PlainTextResponse(
            self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def chat(self, request: Request) -> Response:
        body = parse_body(ChatBody, await request.body())
        check_text_only([m.model_dump() for m in body.messages])
        _refuse_tools(body)
        messages = [m.plain() for m in body.messages]

        def prepare(engine: Engine) -> tuple[list[int], SamplingParams]:
            ids = engine.encode_chat(messages)
            return ids, body.sampling(check_budget(engine, ids, body.wanted_tokens))

        return await self._respond("chat", request, body, prepare)

    async def completions(self, request: Request) -> Response:
        body = parse_body(CompletionBody, await request.body())
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            if len(prompt) != 1:
                raise LocalApiError(400, "only one prompt per request is supported", param="prompt")
            prompt = prompt[0]
        if not prompt:
            raise LocalApiError(400, "prompt must not be empty", param="prompt")
        text = prompt if isinstance(prompt, str) else None
        token_ids = [int(t) for t in prompt] if not isinstance(prompt, str) else []

        def prepare(engine: Engine) -> tuple[list[int], SamplingParams]:
            ids = engine.encode_prompt(text) if text is not None else token_ids
            return ids, body.sampling(check_budget(engine, ids, body.wanted_tokens))

        return await self._respond("completion", request, body, prepare)

    async def _respond(
        self, kind: Kind, request: Request, body: ChatBody | CompletionBody, prepare: Prepare
    ) -> Response:
        if body.model is not None and body.model not in self.names:
            raise LocalApiError(404, f"The model `{body.model}` does not exist.", param="model")
        assert self.worker is not None
        finish, replay = _toploc_job(self.worker.engine, body)
        events = self.worker.generate(prepare, finish=finish, replay=replay)
        first = await anext(events)
        if first.error is not None:
            await events.aclose()
            raise _to_api_error(first.error)
        self.metrics.count_request(request.url.path, 200)
        if body.stream:
            stream = self._sse(kind, body, events)
            return StreamingResponse(stream, media_type="text/event-stream")
        async for event in events:
            if event.error is not None:
                raise _to_api_error(event.error)
            if event.result is not None:
                return JSONResponse(
                    answer(kind, self.names[0], event.result, body.return_token_ids)
                )
        raise LocalApiError(500, "generation ended without a result")

    async def _sse(
        self, kind: Kind, body: ChatBody | CompletionBody, events: AsyncGenerator[WorkerEvent, None]
    ) -> AsyncIterator[bytes]:
        stream_id, model = new_id(kind), self.names[0]
        try:
            if kind == "chat":
                yield sse(chunk(kind, stream_id, model, text="", role=True))
            async for event in events:
                if event.error is not None:
                    err = _to_api_error(event.error)
                    yield sse(error_body(err.status, err.message))
                    break
                if event.delta:
                    yield sse(chunk(kind, stream_id, model, text=event.delta))
                if event.result is not None:
                    last = chunk(kind, stream_id, model, finish_reason=event.result.finish_reason)
                    if body.return_token_ids or event.result.extension:
                        last["choices"][0]["token_ids"] = event.result.token_ids
                    last["choices"][0].update(event.result.extension)
                    yield sse(last)
                    if body.include_usage:
                        yield sse(usage_chunk(kind, stream_id, model, event.result))
            yield sse("[DONE]")
        finally:
            await events.aclose()

    async def api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LocalApiError)
        self.metrics.count_request(request.url.path, exc.status)
        return JSONResponse(error_body(exc.status, exc.message, exc.param), status_code=exc.status)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse(error_body(exc.status_code, exc.detail), status_code=exc.status_code)


def _refuse_tools(body: ChatBody) -> None:
    """Token-level engines have no grammar: tools and JSON output are a 400, never dropped."""
    extra = body.model_extra or {}
    tools = extra.get("tools")
    if tools and extra.get("tool_choice") != "none":
        field = "tools"
    elif extra.get("response_format") not in (None, {"type": "text"}):
        field = "response_format"
    else:
        return
    raise LocalApiError(
        400, f"{field} needs the xllamacpp engine (JSON-schema grammars); this server runs a "
        "token-level engine without them: serve a .gguf with --engine xllamacpp", param=field,
    )  # fmt: skip


def _toploc_job(
    engine: Engine, body: ChatBody | CompletionBody
) -> tuple[Finish | None, list[int] | None]:
    """What the ``intentmesh`` field asks of this job: commitments, or a check of another's."""
    ext = body.intentmesh
    if ext.asked is None:
        return None, None
    if not hasattr(engine, "toploc_proofs"):
        body.refuse_toploc(type(engine).__name__)
    check = ext.toploc_verify
    if check is not None:
        proofs = list(check.proofs)

        def verify(engine: Any, result: GenerationResult) -> None:
            verdict = engine.toploc_verify(result.prompt_token_ids, result.token_ids, proofs)
            result.extension["toploc_verification"] = verdict

        return verify, list(check.token_ids)

    def commit(engine: Any, result: GenerationResult) -> None:
        proofs = engine.toploc_proofs(result.prompt_token_ids, result.token_ids)
        result.extension["toploc_proofs"] = proofs

    return commit, None


def _to_api_error(exc: BaseException) -> LocalApiError:
    """Engine failures as HTTP errors: the request's fault is 400, memory 503, the rest 500."""
    if isinstance(exc, PromptTooLong):
        return LocalApiError(400, str(exc), param="messages")
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return LocalApiError(503, f"out of memory: {exc}")
    if type(exc).__name__ in {"TemplateError", "TemplateSyntaxError", "UndefinedError"}:
        message = f"the chat template rejected the messages: {exc}"
        return LocalApiError(400, message, param="messages")
    return LocalApiError(500, f"{type(exc).__name__}: {exc}")
