"""A lean HTTP/1.1 client for the hot path: one whole-body ``POST`` on a kept-alive connection.

``Connection.post_limited`` (every non-streamed answer) sends through an :class:`H1Pool` when
``httptools`` is installed: the request is one prebuilt header block and one write, the answer
is parsed by llhttp (Node.js's parser, through ``httptools``) straight from the socket
callbacks. That costs about a fifth of the CPU of an aiohttp session's request
(docs/benchmarks.md, "Issue 13, third pass"). Streams, ``GET`` and everything else stay on
httpx over aiohttp, as does a base URL this client does not take (user info in it).

What it does, and what it does not:

* plain and TLS connections (the system's CA store, as aiohttp's default), opened with happy
  eyeballs (``aiohappyeyeballs``, on uvloop too), kept alive and reused last-in first-out, at
  most :data:`MAX_CONNECTIONS` open per pool (others wait) and :data:`MAX_IDLE` idle, each idle
  at most :data:`KEEPALIVE_S`; a connection is reused only once its request was written whole
  and its answer read whole;
* ``Content-Length``, chunked (trailers ignored) and read-until-close bodies (a reset is not
  an end), ``1xx`` answers skipped, ``gzip``/``deflate`` bodies decoded whole; the body is cut
  at ``limit`` bytes (:class:`~intentmesh.errors.MalformedResponse`), decoded or not;
* a connection that fails before the whole answer arrived is a
  :class:`~intentmesh.errors.BackendConnectionError` and is never retried here: a ``POST`` is
  not idempotent (an upstream may bill twice), so the executor decides (failover, retries);
* no proxies (``trust_env`` is off for every client of ours) and no redirects: a ``3xx`` is
  returned as it is, and the caller turns it into an error naming the status.

The caller bounds the whole exchange with its own deadline; connecting alone is capped at
:data:`CONNECT_TIMEOUT_S`. A request cancelled part way closes its connection.
"""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import ssl
import time
import zlib
from typing import Any
from urllib.parse import urlsplit

import aiohappyeyeballs
import httptools
from multidict import CIMultiDict

from intentmesh.errors import (
    BackendConnectionError,
    BackendTimeout,
    ConfigurationError,
    MalformedResponse,
)

__all__ = ["CONNECT_TIMEOUT_S", "KEEPALIVE_S", "MAX_CONNECTIONS", "MAX_IDLE", "H1Pool", "Origin"]

MAX_CONNECTIONS = 1024
"""Open connections per pool at most (as the aiohttp connector's ``limit``)."""
MAX_IDLE = 256
"""Idle connections kept per pool at most."""
KEEPALIVE_S = 30.0
"""An idle connection older than this is closed instead of reused."""
CONNECT_TIMEOUT_S = 10.0
_USER_AGENT = "intentmesh"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = frozenset("\r\n\0")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


class Origin:
    """Where a pool connects (scheme, host, port) and the fixed part of its requests' headers."""

    __slots__ = ("_lines", "head", "host", "port", "prefix", "tls")

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("user info in the URL")  # aiohttp turns it into basic auth
        if parts.query or parts.fragment:
            raise ValueError("a query in the base URL")
        self.prefix = parts.path.rstrip("/")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or _DEFAULT_PORTS[parts.scheme]
        host = self.host if self.host.isascii() else self.host.encode("idna").decode("ascii")
        authority = f"[{host}]" if ":" in host else host
        if self.port != _DEFAULT_PORTS[parts.scheme]:
            authority += f":{self.port}"
        fixed = {
            "host": ("Host", authority),
            "user-agent": ("User-Agent", _USER_AGENT),
            "accept": ("Accept", "*/*"),
            "accept-encoding": ("Accept-Encoding", "gzip, deflate"),
            "content-type": ("Content-Type", "application/json"),
        }
        for name, value in headers.items():
            if name.lower() in ("content-length", "transfer-encoding", "connection"):
                continue  # this client frames the body and keeps the connection itself
            fixed[name.lower()] = (name, value)
        lines = []
        for name, value in fixed.values():
            if _FORBIDDEN.intersection(value) or not _TOKEN.fullmatch(name):
                raise ConfigurationError(
                    f"header {name!r}: a name must be an HTTP token and a value may not hold "
                    "line breaks or NUL; fix the backend's headers or API key (a key read "
                    "with a trailing newline does this)"
                )
            lines.append(f"{name}: {value}\r\n")
        self.head = "".join(lines).encode("utf-8")
        self._lines: dict[str, bytes | None] = {}

    def request_line(self, path: str) -> bytes | None:
        """``POST <base path><path> HTTP/1.1`` and the fixed headers; None for a path this
        client does not send (absolute, or one that needs quoting: spaces, non-ASCII). Made
        once per path."""
        if path not in self._lines:
            self._lines[path] = self._request_line(path)
        return self._lines[path]

    def _request_line(self, path: str) -> bytes | None:
        target = self.prefix + path
        if not path.startswith("/") or not target.isascii() or not target.isprintable():
            return None
        if " " in target:
            return None
        return b"POST " + target.encode("ascii") + b" HTTP/1.1\r\n" + self.head


class _Answer:
    """The parts of one answer as the parser reports them."""

    __slots__ = ("body", "encoding", "framed", "headers", "size", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.size = 0
        self.framed = False  # Content-Length or chunked: the end is known without EOF
        self.encoding = b""


_Outcome = tuple[_Answer, str | None, bool]
"""An answer as read, why it cannot be used (or None), and whether that is its size."""


class _H1(asyncio.Protocol):
    """One connection: writes a request, parses its answer, resolves the waiting future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.answer = _Answer()
        self.waiter: asyncio.Future[_Outcome] | None = None
        self.limit = 0
        self.problem: str | None = None  # why the answer cannot be read
        self.cut = False  # the problem is the answer's size
        self.lost = False
        self.idle_since = 0.0
        self.headers_done = False
        self.keep_alive = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)

    def data_received(self, data: bytes) -> None:
        if self.waiter is None:  # bytes nobody asked for: this connection cannot be trusted
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.problem = "the upstream switched protocols"
        except httptools.HttpParserError as exc:
            self.problem = self.problem or f"unparsable HTTP answer ({exc})"
        if self.problem is not None:
            self._settle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is None or self.waiter.done():
            return
        if self.headers_done and not self.answer.framed and not self.problem and exc is None:
            self._settle()  # the body ran until the server closed it cleanly: that is its end
            return
        when = "part way through the answer" if self.headers_done else "before answering"
        self.problem = f"the upstream closed the connection {when}" + (f" ({exc})" if exc else "")
        self._settle()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.waiter is None:  # another answer in the bytes after ours: nobody asked
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:  # a chunked body's trailer fields: not the answer's headers
            return
        self.answer.headers.append((name, value))
        lower = name.lower()
        if lower == b"content-length":
            self.answer.framed = True
            if value.isdigit() and int(value) > self.limit:
                self.problem, self.cut = _too_large(self.limit), True
        elif lower == b"transfer-encoding":  # framed only when chunked comes last
            self.answer.framed = value.rstrip().lower().endswith(b"chunked")
        elif lower == b"content-encoding":
            self.answer.encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational: the real answer follows
            self.answer = _Answer()
            return
        self.answer.status = status
        self.headers_done = True
        if status in (204, 304):
            self.answer.framed = True

    def on_body(self, body: bytes) -> None:
        answer = self.answer
        answer.size += len(body)
        if answer.size > self.limit:
            self.problem, self.cut = _too_large(self.limit), True
            return
        answer.body.append(body)

    def on_message_complete(self) -> None:
        if self.headers_done and self.problem is None:
            self.keep_alive = self.parser.should_keep_alive()  # reset once feed_data returns
            self._settle()

    # -- the pool's side -------------------------------------------------------------------

    def send(self, data: bytes, limit: int, waiter: asyncio.Future[_Outcome]) -> None:
        self.answer = _Answer()
        self.headers_done = False
        self.keep_alive = False
        self.problem, self.cut = None, False
        self.limit = limit
        self.waiter = waiter
        assert self.transport is not None
        self.transport.write(data)

    def _settle(self) -> None:
        waiter, self.waiter = self.waiter, None
        outcome = (self.answer, self.problem, self.cut)
        self.answer = _Answer()  # stray bytes after this answer cannot touch the one handed out
        if self.problem is not None:
            self.close()  # the parser's state is unknown: never reuse
        if waiter is not None and not waiter.done():
            waiter.set_result(outcome)

    @property
    def reusable(self) -> bool:
        transport = self.transport
        return (
            not self.lost
            and self.problem is None
            and transport is not None
            and not transport.is_closing()
            and self.keep_alive
            # an early answer (401, 413) can come before the body is sent: the rest would
            # go out ahead of the next request
            and transport.get_write_buffer_size() == 0
        )

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class H1Pool:
    """Kept-alive connections to one :class:`Origin`, for one event loop."""

    def __init__(self, origin: Origin, tls: ssl.SSLContext | None = None) -> None:
        self.origin = origin
        self.tls = tls  # None: the system's CA store (ssl.create_default_context())
        self._idle: collections.deque[_H1] = collections.deque()
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.closed = False

    async def post(
        self, head: bytes, payload: bytes, limit: int, backend: str
    ) -> tuple[int, CIMultiDict[str], bytes]:
        """Send ``head`` (from :meth:`Origin.request_line`) and ``payload``; the answer's
        status, headers and body (decoded, at most ``limit`` bytes)."""
        if self.closed:
            raise BackendConnectionError("the connection pool is closed", backend=backend)
        data = head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload
        async with self._slots:
            conn = self._idle_connection() or await self._connect(backend)
            waiter = asyncio.get_running_loop().create_future()
            conn.send(data, limit, waiter)
            try:
                answer, problem, cut = await waiter
            except BaseException:  # cancelled (a deadline): the answer is abandoned
                conn.close()
                raise
            self._release(conn)
        if problem is not None:
            if cut:
                raise MalformedResponse(problem, backend=backend)
            raise BackendConnectionError(f"connection failed: {problem}", backend=backend)
        headers = CIMultiDict(
            (k.decode("latin-1"), v.decode("utf-8", "surrogateescape")) for k, v in answer.headers
        )
        return answer.status, headers, _decoded(answer, limit, backend)

    def _idle_connection(self) -> _H1 | None:
        idle = self._idle
        stale = time.monotonic() - KEEPALIVE_S
        while idle:
            conn = idle.pop()
            if conn.idle_since >= stale and conn.reusable:
                return conn
            conn.close()
        return None

    async def _connect(self, backend: str) -> _H1:
        origin = self.origin
        loop = asyncio.get_running_loop()
        tls: Any = (self.tls or _tls_context()) if origin.tls else None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                # Happy eyeballs (RFC 8305) on every loop, uvloop's too, as aiohttp does.
                infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=0.25, loop=loop
                )
                try:
                    _, conn = await loop.create_connection(
                        _H1, sock=sock, ssl=tls, server_hostname=origin.host if tls else None
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise BackendTimeout(
                f"connecting to {origin.host}:{origin.port} took over {CONNECT_TIMEOUT_S:g} s",
                backend=backend,
            ) from None
        except OSError as exc:
            raise BackendConnectionError(
                f"connection failed: cannot connect to {origin.host}:{origin.port} ({exc})",
                backend=backend,
            ) from exc
        return conn

    def _release(self, conn: _H1) -> None:
        if self.closed or not conn.reusable:
            conn.close()
            return
        idle, now = self._idle, time.monotonic()
        while idle and (len(idle) >= MAX_IDLE or idle[0].idle_since < now - KEEPALIVE_S):
            idle.popleft().close()  # the oldest go first: past their keep-alive, or no room
        conn.idle_since = now
        idle.append(conn)

    async def close(self) -> None:
        """Close the idle connections; later requests fail (in-flight ones finish)."""
        self.closed = True
        while self._idle:
            self._idle.pop().close()


def _too_large(limit: int) -> str:
    return f"response body passed {limit} bytes, more than max_tokens allows; cut"


def _decoded(answer: _Answer, limit: int, backend: str) -> bytes:
    body = b"".join(answer.body)
    coding = answer.encoding
    if not coding or coding == b"identity":
        return body
    if coding in (b"gzip", b"x-gzip"):
        wbits = [16 + zlib.MAX_WBITS]
    elif coding == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        wbits = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    else:
        raise MalformedResponse(
            f"the upstream answered with Content-Encoding {coding.decode('latin-1')!r}, "
            "which was not asked for",
            backend=backend,
        )
    problem = "no compressed body"
    for bits in wbits:
        try:
            return _inflated(body, bits, limit, backend)
        except zlib.error as exc:
            problem = str(exc)
    raise MalformedResponse(f"undecodable response: {problem}", backend=backend)


def _inflated(data: bytes, wbits: int, limit: int, backend: str) -> bytes:
    """Every member of a compressed body, whole, at most ``limit`` bytes of it."""
    out = b""
    while True:
        inflater = zlib.decompressobj(wbits)
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise MalformedResponse(_too_large(limit), backend=backend)
        if not inflater.eof:
            raise zlib.error("the compressed body ends part way")
        data = inflater.unused_data
        if not data or wbits != 16 + zlib.MAX_WBITS:  # gzip may hold several members
            return out
