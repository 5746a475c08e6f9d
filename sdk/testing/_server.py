"""A small HTTP/1.1 server on asyncio streams, bound to loopback, running in its own thread.

One :class:`LoopbackServer` owns one daemon thread with one event loop; every connection is a
task on that loop and every handler runs there too, so a request costs no thread hop. The
handler is an async callable ``FakeRequest -> FakeResponse``; a response is a full body, a
streamed body (chunked, one flushed chunk per item), or an action that misbehaves on purpose
(``hang``, ``reset``, ``close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import socket
import struct
import threading
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, unquote, urlsplit

from intentmesh._lifecycle import Startable

__all__ = ["FakeRequest", "FakeResponse", "Handler", "Headers", "LoopbackServer"]

Action = Literal["hang", "reset", "close"]
StreamEnd = Literal["complete", "truncate", "reset"]
_RESET_GRACE_S = 0.05
Handler = Callable[["FakeRequest"], Awaitable["FakeResponse"]]

_MAX_HEAD = 64 * 1024
_STOP_TIMEOUT_S = 5.0


class Headers(dict[str, str]):
    """Request headers: names are stored lower-cased and looked up case-insensitively."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key.lower() if isinstance(key, str) else key)

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass(frozen=True, slots=True)
class FakeRequest:
    """One request as the server read it; ``headers`` keys are lower-case."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    http_version: str = "HTTP/1.1"

    def json(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.body)


@dataclass(slots=True)
class FakeResponse:
    """What to send back: a full ``body``, a ``stream`` of chunks, or a misbehaving ``action``.

    A stream is sent with ``Transfer-Encoding: chunked`` (or raw, when ``headers`` sets
    ``content-length``), flushing each item. ``stream_end`` says how it finishes: ``complete``
    (terminating chunk), ``truncate`` (close without it) or ``reset`` (TCP RST).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterable[bytes] | None = None
    stream_end: StreamEnd = "complete"
    action: Action | None = None

    @classmethod
    def json(
        cls, data: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> FakeResponse:
        body = json.dumps(data, separators=(",", ":")).encode()
        return cls(status, {"content-type": "application/json", **(headers or {})}, body)

    @classmethod
    def text(
        cls, text: str, status: int = 200, headers: dict[str, str] | None = None
    ) -> FakeResponse:
        merged = {"content-type": "text/plain; charset=utf-8", **(headers or {})}
        return cls(status, merged, text.encode())

    @classmethod
    def streaming(
        cls,
        chunks: AsyncIterable[bytes],
        status: int = 200,
        headers: dict[str, str] | None = None,
        end: StreamEnd = "complete",
    ) -> FakeResponse:
        return cls(status, dict(headers or {}), stream=chunks, stream_end=end)

    @classmethod
    def hang(cls) -> FakeResponse:
        """Never answer; the connection stays open until the client or the server gives up."""
        return cls(action="hang")

    @classmethod
    def reset(cls) -> FakeResponse:
        """Abort the TCP connection at once (RST), sending nothing."""
        return cls(action="reset")

    @classmethod
    def close(cls) -> FakeResponse:
        """Close the connection cleanly (FIN) without any response."""
        return cls(action="close")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LoopbackServer(Startable):
    """An HTTP/1.1 server on ``127.0.0.1`` in a daemon thread with its own event loop.

    Pass ``handler`` or override :meth:`handle`. Use it with ``with`` / ``async with`` or
    :meth:`start` / :meth:`stop` (both idempotent). Exceptions raised by the handler become a
    500 JSON answer and are kept in :attr:`handler_errors`.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = 4096,
    ) -> None:
        self._handler = handler
        self.host = host
        self._requested_port = port
        self._backlog = backlog
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._lifecycle = threading.Lock()
        self._closing = False
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.handler_errors: list[BaseException] = []

    # -- public surface -------------------------------------------------------------------

    async def handle(self, request: FakeRequest) -> FakeResponse:
        """Answer one request; the default calls the ``handler`` given to the constructor."""
        if self._handler is None:
            return FakeResponse.json({"error": {"message": "no handler"}}, status=404)
        return await self._handler(request)

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server is not running; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, what OpenAI-compatible clients take as base URL."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> Self:
        """Bind and serve in a new daemon thread; returns once the port is listening."""
        with self._lifecycle:
            if self._thread is not None:
                return self
            self._closing = False
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(loop, ready, failure), name="loopback-server", daemon=True
            )
            thread.start()
            ready.wait()
            if failure:
                thread.join()
                raise failure[0]
            self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        """Close the listener and every connection, free the port, end the thread."""
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if threading.current_thread() is thread:
                raise RuntimeError("stop() cannot be called from the server's own thread")
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(_STOP_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT_S)
            self._loop = self._thread = self._server = None
            self._port = None

    # -- loop thread ----------------------------------------------------------------------

    def _run(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            failure.append(exc)
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> asyncio.Server:
        server = await asyncio.start_server(
            self._on_connection,
            self.host,
            self._requested_port,
            backlog=self._backlog,
            reuse_address=True,
            limit=_MAX_HEAD,
        )
        self._port = server.sockets[0].getsockname()[1]
        return server

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for _ in range(8):  # let accepts already under way reach _on_connection and see _closing
            await asyncio.sleep(0)
        tasks = list(self._connections)
        for task, writer in list(self._connections.items()):
            task.cancel()
            writer.transport.abort()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- one connection -------------------------------------------------------------------

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is None or self._closing:
            writer.transport.abort()
            return
        self._connections[task] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
        except asyncio.CancelledError:  # stop(): end quietly (3.11's stream callback would log)
            writer.transport.abort()
        except _BadRequest as exc:
            body = json.dumps({"error": {"message": str(exc), "code": exc.status}}).encode()
            writer.write(_head(exc.status, {"content-type": "application/json"}, len(body), False))
            writer.write(body)
        except Exception as exc:  # a bug in the server itself: keep it, drop the connection
            self.handler_errors.append(exc)
            writer.transport.abort()
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await _read_request(reader, writer)
            if request is None:
                return
            response = await self._answer(request)
            if not await self._send(reader, writer, response, _keep_alive(request)):
                return

    async def _answer(self, request: FakeRequest) -> FakeResponse:
        try:
            return await self.handle(request)
        except Exception as exc:
            self.handler_errors.append(exc)
            message = f"fake handler raised {type(exc).__name__}: {exc}"
            error = {"message": message, "type": "InternalServerError", "param": None, "code": 500}
            return FakeResponse.json({"error": error}, status=500)

    async def _send(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        response: FakeResponse,
        keep_alive: bool,
    ) -> bool:
        """Write one response; return whether the connection may serve another request."""
        if response.action is not None:
            await _act(response.action, reader, writer)
            return False
        if response.stream is not None:
            return await _send_stream(writer, response, keep_alive)
        declared = response.headers.get("content-length")
        keep_alive = keep_alive and declared in (None, str(len(response.body)))
        length = None if declared is not None else len(response.body)
        writer.write(_head(response.status, response.headers, length, keep_alive) + response.body)
        await writer.drain()
        return keep_alive


# -- wire helpers (module level: no state) ---------------------------------------------------


async def _read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> FakeRequest | None:
    """Read one request; ``None`` when the client closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise _BadRequest(431, "request head too large") from exc
    lines = head.lstrip(b"\r\n").decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(400, f"bad request line {lines[0]!r}") from None
    headers = _parse_headers(lines[1:])
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await _read_body(reader, headers)
    path, query = _split_target(target)
    return FakeRequest(method, path, query, headers, body, version)


def _parse_headers(lines: list[str]) -> Headers:
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


async def _read_body(reader: asyncio.StreamReader, headers: Headers) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    declared = headers.get("content-length")
    if not declared:
        return b""
    try:
        length = int(declared)
    except ValueError:
        raise _BadRequest(400, f"bad content-length {declared!r}") from None
    return await reader.readexactly(length) if length > 0 else b""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _BadRequest(400, "bad chunk size") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _split_target(target: str) -> tuple[str, dict[str, str]]:
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        raw_path, raw_query = parts.path or "/", parts.query
    else:
        raw_path, _, raw_query = target.partition("?")
    return unquote(raw_path), dict(parse_qsl(raw_query, keep_blank_values=True))


def _keep_alive(request: FakeRequest) -> bool:
    connection = request.headers.get("connection", "").lower()
    if request.http_version == "HTTP/1.0":
        return "keep-alive" in connection
    return "close" not in connection


_REASONS = {int(s): s.phrase for s in http.HTTPStatus}


def _head(status: int, headers: dict[str, str], length: int | None, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if length is not None:
        lines.append(f"content-length: {length}")
    if not keep_alive:
        lines.append("connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


async def _send_stream(
    writer: asyncio.StreamWriter, response: FakeResponse, keep_alive: bool
) -> bool:
    assert response.stream is not None
    chunked = "content-length" not in response.headers
    headers = {**response.headers, "transfer-encoding": "chunked"} if chunked else response.headers
    keep_alive = keep_alive and response.stream_end == "complete"
    writer.write(_head(response.status, headers, None, keep_alive))
    iterator = aiter(response.stream)
    try:
        async for chunk in iterator:
            if chunk:
                writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # a broken stream source: the client sees a reset, the server lives on
        _abort(writer)
        return False
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
    return await _finish_stream(writer, response.stream_end, chunked, keep_alive)


async def _finish_stream(
    writer: asyncio.StreamWriter, end: StreamEnd, chunked: bool, keep_alive: bool
) -> bool:
    if end == "reset":
        # A client's kernel may drop bytes it has not read yet when the RST arrives; give it a
        # moment to read the events sent, so "N events, then a reset" is what it usually sees.
        await writer.drain()
        await asyncio.sleep(_RESET_GRACE_S)
        _abort(writer)
        return False
    if end == "complete" and chunked:
        writer.write(b"0\r\n\r\n")
    await writer.drain()
    return keep_alive


async def _act(action: Action, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if action == "reset":
        _abort(writer)
    elif action == "hang":
        while await reader.read(65536):
            pass


def _abort(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP RST (SO_LINGER 0) instead of a graceful FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
