"""The Starlette app: OpenAI-compatible routes over a :class:`~intentmesh.Gateway`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from intentmesh._gateway import Gateway, ResultStream
from intentmesh.adapters import loads_json
from intentmesh.fleet import AccountStore, LocalAccounts
from intentmesh.server._budget import SpendBook
from intentmesh.server._config import KeyConfig, ServerConfig
from intentmesh.server._errors import ApiError, translate
from intentmesh.server._keys import KeyRing
from intentmesh.server._metrics import Metrics
from intentmesh.server._openai import (
    Kind,
    chat_body,
    chunk_body,
    completion_body,
    intentmesh_info,
    parse_request,
    result_headers,
    usage_body,
)
from intentmesh.server._service import Prepared, Service

__all__ = ["create_app"]

T = TypeVar("T")

try:  # one C encode per response when the server extra's orjson is installed
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - the server extra installs it

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


_log = logging.getLogger("intentmesh.server")
_SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def create_app(
    gateway: Gateway,
    *,
    keys: Sequence[KeyConfig] | None = None,
    config: ServerConfig | None = None,
    book: SpendBook | None = None,
    close_gateway: bool = False,
    accounts: AccountStore | None = None,
) -> Starlette:
    """An ASGI app serving ``gateway``; ``keys`` (or ``config.keys``) turn on bearer auth.

    Key budgets and rates live in ``accounts``: by default the gateway's fleet store when
    ``[state] url`` is set, else ``book`` (a :class:`SpendBook` on ``budget_db``).
    """
    cfg = config or ServerConfig()
    key_list = list(keys) if keys is not None else list(cfg.keys)
    if accounts is None:
        fleet = gateway.fleet
        if book is None and fleet is not None:
            accounts = fleet.accounts
        else:
            accounts = LocalAccounts(book or SpendBook(cfg.budget_db))
    handlers = _Handlers(gateway, cfg, KeyRing(key_list), accounts)
    fast = {
        "/v1/chat/completions": _Generate(handlers, "chat"),
        "/v1/completions": _Generate(handlers, "completion"),
    }
    routes = [  # the generation endpoints are raw ASGI (the hot path), the rest Starlette
        *(Route(path, endpoint, methods=["POST"]) for path, endpoint in fast.items()),
        Route("/v1/models", handlers.models, methods=["GET"]),
        Route("/health", handlers.health, methods=["GET"]),
        Route("/metrics", handlers.metrics_text, methods=["GET"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await gateway.aclose()  # this loop's upstream connections
        if close_gateway:
            gateway.close()
        await handlers.service.accounts.aclose()

    app = _App(routes=routes, lifespan=lifespan)
    app.fast = fast
    app.state.handlers = handlers
    return app


class _App(Starlette):
    """Starlette, with ``POST`` to the generation endpoints answered before its middleware and
    router (they handle their own errors); everything else goes the usual way."""

    fast: dict[str, _Generate]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.fast.get(scope["path"])
            if endpoint is not None:
                scope["app"] = self
                await endpoint(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class _Handlers:
    def __init__(
        self, gateway: Gateway, cfg: ServerConfig, keys: KeyRing, accounts: AccountStore
    ) -> None:
        self.gateway = gateway
        self.cfg = cfg
        self.keys = keys
        self.service = Service(gateway, accounts, keys.keys)
        self.metrics = Metrics()

    # -- generation ------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, "chat", "/v1/chat/completions")

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, "completion", "/v1/completions")

    async def _generate(self, request: Request, kind: Kind, endpoint: str) -> Response:
        telemetry = self.gateway.telemetry
        if telemetry is None:
            return await self._generate_in(request, kind, endpoint)
        with telemetry.incoming(request.headers):  # the caller's traceparent is our parent
            return await self._generate_in(request, kind, endpoint)

    async def _generate_in(self, request: Request, kind: Kind, endpoint: str) -> Response:
        t0 = time.perf_counter()
        self.metrics.in_flight += 1
        streaming = False
        try:
            key = self.keys.authenticate(request.headers.get("authorization"))
            body = await _read_json(request, self.cfg.max_body_bytes)
            job = await self.service.prepare(parse_request(kind, body, self.cfg, key), key)
            if job.request.stream:
                response = await self._stream(request, job, endpoint, t0)
                streaming = isinstance(response, StreamingResponse)
                return response
            return await self._complete(request, job, endpoint, t0)
        except ApiError as err:
            return self._error(err, endpoint, t0)
        except Exception:
            _log.exception("unexpected error serving %s", endpoint)
            internal = ApiError(500, "internal gateway error", "server_error", "internal_error")
            return self._error(internal, endpoint, t0)
        finally:
            if not streaming:
                self.metrics.in_flight -= 1

    async def _complete(
        self, request: Request, job: Prepared, endpoint: str, t0: float
    ) -> Response:
        result = await _unless_disconnected(request, lambda: self.service.complete(job))
        if result is None:
            return self._gone(endpoint, t0)
        res = result
        make = chat_body if job.request.kind == "chat" else completion_body
        rid = f"{'chatcmpl' if job.request.kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"
        self._record_spend(res.backend, res.network, res.cost_usd, res.usage)
        self.metrics.observe(endpoint, 200, time.perf_counter() - t0)
        return JSONResponse(make(res, rid), headers=result_headers(res))

    async def _stream(self, request: Request, job: Prepared, endpoint: str, t0: float) -> Response:
        stream = await _unless_disconnected(request, lambda: self.service.open_stream(job))
        if stream is None:
            return self._gone(endpoint, t0)
        headers = {**_SSE_HEADERS, "x-intentmesh-backend": stream.backend}
        headers["x-intentmesh-network"] = stream.network
        closed = False

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                await stream.aclose()
                await self.service.finish_stream(job, stream)
                self.metrics.in_flight -= 1
                self.metrics.observe(endpoint, 200, time.perf_counter() - t0)

        events = self._events(job, stream, endpoint)
        return _EventStream(events, close, headers=headers, media_type="text/event-stream")

    async def _events(
        self, job: Prepared, stream: ResultStream, endpoint: str
    ) -> AsyncIterator[bytes]:
        kind = job.request.kind
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"
        created, model = int(time.time()), stream.model  # the model that answers
        finish: str | None = None
        try:
            first = True
            async for chunk in stream:
                finish = chunk.finish_reason or finish
                if chunk.text or chunk.tool_calls:
                    body = chunk_body(kind, rid, created, model, chunk, None)
                    yield _sse(_first_delta(body) if first and kind == "chat" else body)
                    first = False
            async for event in self._tail(job, stream, (rid, created, model), finish):
                yield event
        except Exception as exc:  # broke mid-stream: tokens already sent are not repeated
            err = translate(exc, lambda: (None, None), job.request.top_level)
            self.metrics.error(endpoint, err.type)
            yield _sse(err.body())

    async def _tail(
        self, job: Prepared, stream: ResultStream, ident: tuple[str, int, str], finish: str | None
    ) -> AsyncIterator[bytes]:
        """The closing chunk (finish reason + ``intentmesh``), the usage chunk, ``[DONE]``."""
        res = stream.result
        assert res is not None
        rid, created, model = ident
        info = intentmesh_info(res)
        closing = chunk_body(job.request.kind, rid, created, model, None, finish or "stop")
        yield _sse({**closing, "intentmesh": info})
        if job.request.include_usage:
            usage = {"id": rid, "object": closing["object"], "created": created, "model": model}
            yield _sse({**usage, "choices": [], "usage": usage_body(res.usage), "intentmesh": info})
        yield b"data: [DONE]\n\n"
        self._record_spend(res.backend, res.network, res.cost_usd, res.usage)

    # -- the raw ASGI hot path ------------------------------------------------------------

    async def generate_asgi(
        self, scope: Scope, receive: Receive, send: Send, kind: Kind, endpoint: str
    ) -> None:
        """Like :meth:`_generate_in` without Starlette's Request/Response objects or a task
        group: the body is read and parsed once, the answer encoded once (orjson when present).
        Streams continue on the Starlette path."""
        t0 = time.perf_counter()
        self.metrics.in_flight += 1
        streaming = False
        headers = _headers(scope)
        try:
            telemetry = self.gateway.telemetry
            if telemetry is None:
                streaming = await self._generate_raw(scope, receive, send, headers, kind, t0)
            else:
                with telemetry.incoming(Headers(scope=scope)):
                    streaming = await self._generate_raw(scope, receive, send, headers, kind, t0)
        except ApiError as err:
            await self._error(err, endpoint, t0)(scope, receive, send)
        except Exception:
            _log.exception("unexpected error serving %s", endpoint)
            internal = ApiError(500, "internal gateway error", "server_error", "internal_error")
            await self._error(internal, endpoint, t0)(scope, receive, send)
        finally:
            if not streaming:
                self.metrics.in_flight -= 1

    async def _generate_raw(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        kind: Kind,
        t0: float,
    ) -> bool:
        """Serve one request; True when it became a stream (which settles its own metrics)."""
        endpoint = scope["path"]
        key = self.keys.authenticate(headers.get("authorization"))
        body = await _read_body(receive, headers.get("content-length"), self.cfg.max_body_bytes)
        job = await self.service.prepare(parse_request(kind, body, self.cfg, key), key)
        if job.request.stream:
            response = await self._stream(Request(scope, receive), job, endpoint, t0)
            await response(scope, receive, send)
            return isinstance(response, StreamingResponse)
        result = await _unless_gone(receive, lambda: self.service.complete(job))
        if result is None:
            await self._gone(endpoint, t0)(scope, receive, send)
            return False
        make = chat_body if kind == "chat" else completion_body
        rid = f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{secrets.token_hex(12)}"
        payload = _dumps(make(result, rid))
        self._record_spend(result.backend, result.network, result.cost_usd, result.usage)
        self.metrics.observe(endpoint, 200, time.perf_counter() - t0)
        raw = [(k.encode(), v.encode()) for k, v in result_headers(result).items()]
        raw += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": 200, "headers": raw})
        await send({"type": "http.response.body", "body": payload})
        return False

    # -- catalog and operations ------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        try:
            key = self.keys.authenticate(request.headers.get("authorization"))
        except ApiError as err:
            return self._error(err, "/v1/models", time.perf_counter())
        catalog = self.gateway.catalog
        allowed = {catalog.resolve(m) for m in key.models} if key and key.models else None
        served: dict[str, set[tuple[str, str]]] = {}
        for offer in self.gateway.offers:
            if allowed is None or offer.model in allowed:
                served.setdefault(offer.model, set()).add((offer.backend, offer.network))
        data = [_model_entry(name, pairs) for name, pairs in sorted(served.items())]
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "backends": self.gateway.health.snapshot()})

    async def metrics_text(self, request: Request) -> Response:
        text = self.metrics.render()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, err: ApiError, endpoint: str, t0: float) -> Response:
        self.metrics.error(endpoint, err.type)
        self.metrics.observe(endpoint, err.status, time.perf_counter() - t0)
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    def _gone(self, endpoint: str, t0: float) -> Response:
        """The client hung up; the upstream call was cancelled. Nobody reads this."""
        self.metrics.error(endpoint, "client_disconnected")
        self.metrics.observe(endpoint, 499, time.perf_counter() - t0)
        return Response(status_code=499)

    def _record_spend(self, backend: str, network: str, cost: float, usage: Any) -> None:
        self.metrics.spend(backend, network, cost, usage.prompt_tokens, usage.completion_tokens)


class _EventStream(StreamingResponse):
    """SSE that stops (and cancels the upstream) as soon as the client disconnects.

    ``on_close`` runs exactly once however the response ends (settles budgets and metrics).
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        on_close: Callable[[], Awaitable[None]],
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    with contextlib.suppress(OSError):
                        await self.stream_response(send)
                    tg.cancel_scope.cancel()

                tg.start_soon(run)
                await self.listen_for_disconnect(receive)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                closer = getattr(self.body_iterator, "aclose", None)
                if closer is not None:
                    await closer()
                await self._on_close()


class _Generate:
    """The raw ASGI endpoint of one generation route."""

    def __init__(self, handlers: _Handlers, kind: Kind) -> None:
        self.handlers = handlers
        self.kind = kind

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handlers.generate_asgi(scope, receive, send, self.kind, scope["path"])


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(receive: Receive, declared: str | None, limit: int) -> Any:
    """The request body as JSON, refused past ``limit`` bytes (before reading, when declared)."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ApiError(400, "the client went away", "invalid_request_error")
        body += message.get("body", b"")
        if len(body) > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            break
    return _loads(body)


WATCH_AFTER_S = 0.02
"""A non-streamed call still running this long gets a watcher for the client's disconnect;
one that answers sooner never pays for the watcher task. A client that hangs up is noticed
at most this much later than it would be by a watcher from the start."""


async def _unless_gone(receive: Receive, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work`` in this task; cancel it if the client disconnects first (then None).

    One watcher task instead of a task group (the hot path's cheapest way to notice), started
    only once the call has run for :data:`WATCH_AFTER_S`."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    gone = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal gone
        await _disconnected(receive)
        gone = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = loop.create_task(watch())

    timer = loop.call_later(WATCH_AFTER_S, start_watching)
    try:
        return await work()
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        return None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def _unless_disconnected(request: Request, work: Callable[[], Awaitable[T]]) -> T | None:
    """Run ``work`` but cancel it if the client disconnects first (then return None)."""
    results: list[T] = []
    errors: list[BaseException] = []

    async def run(scope: anyio.CancelScope) -> None:
        try:
            results.append(await work())
        except Exception as exc:
            errors.append(exc)
        scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, tg.cancel_scope)
        await _disconnected(request.receive)
        tg.cancel_scope.cancel()
    if errors:
        raise errors[0]
    return results[0] if results else None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise _too_large(limit)
    return _loads(bytes(body))


def _loads(body: bytes) -> Any:
    try:
        return loads_json(body)  # orjson, and json for what orjson refuses (big integers)
    except ValueError:
        raise ApiError(400, "request body is not valid JSON", "invalid_request_error") from None


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"request body exceeds {limit} bytes", "invalid_request_error", "body_too_large"
    )


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


def _first_delta(body: dict[str, Any]) -> dict[str, Any]:
    """OpenAI names the role in the first delta only."""
    delta = body["choices"][0]["delta"]
    body["choices"][0]["delta"] = {"role": "assistant", **delta}
    return body


def _model_entry(name: str, pairs: set[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "intentmesh",
        "intentmesh": {
            "backends": sorted(b for b, _ in pairs),
            "networks": sorted({n for _, n in pairs}),
        },
    }
