"""The lean HTTP/1.1 client (adapters/_h1.py) against scripted loopback servers: framing,
keep-alive, limits, encodings, failures, and its place in ``Connection.post_limited``."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from tls_support import self_signed

from intentmesh.adapters._h1 import H1Pool, Origin
from intentmesh.adapters._http import Connection
from intentmesh.adapters.base import cut_off_by_caller, set_caller_deadline
from intentmesh.errors import (
    BackendConnectionError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    InvalidRequest,
    MalformedResponse,
    RateLimited,
)
from intentmesh.router._executor import within

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]
"""Answer one request (head + body) on a connection; False closes the connection."""


LIMITED_NON_ASCII = (
    "HTTP/1.1 429 Slow\r\nRetry-After: 2\r\nX-Note: café\r\nContent-Length: 2\r\n\r\n{}".encode()
)
"""A 429 with a header value that is not ASCII."""


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


class Server:
    """A loopback server that answers each request with ``reply`` and records what came."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.reply(request, writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


def answer(*raw: bytes, close: bool = False) -> Reply:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        for part in raw:
            writer.write(part)
            await writer.drain()
        return not close

    return reply


def pool_for(server: Server, headers: dict[str, str] | None = None) -> H1Pool:
    return H1Pool(Origin(server.url, headers or {}))


async def post(pool: H1Pool, path: str = "/chat/completions", limit: int = 1 << 20) -> tuple:
    head = pool.origin.request_line(path)
    assert head is not None
    status, headers, body = await pool.post(head, b'{"q":1}', limit, "b")
    return status, headers, body


async def test_content_length_answer_and_keep_alive_reuse() -> None:
    async with Server(answer(ok(extra=b"X-Cost: 0.5\r\n"))) as server:
        pool = pool_for(server, {"Authorization": "Bearer sk-test-0123456789"})
        for _ in range(3):
            status, headers, body = await post(pool)
            assert (status, body, headers["x-cost"]) == (200, b'{"ok":true}', "0.5")
        await pool.close()
    assert server.connections == 1  # one connection, kept alive
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:%d\r\n" % server.port in first
    assert b"\r\nAuthorization: Bearer sk-test-0123456789\r\n" in first
    assert b"\r\nContent-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"q":1}')


async def test_chunked_answer_is_joined() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
    async with Server(answer(chunked[:30], chunked[30:])) as server:
        pool = pool_for(server)
        assert (await post(pool))[2] == b"abcdef"
        assert (await post(pool))[2] == b"abcdef"
        await pool.close()
    assert server.connections == 1


async def test_answer_read_until_the_server_closes() -> None:
    async with Server(answer(b'HTTP/1.0 200 OK\r\n\r\n{"a":', b"1}", close=True)) as server:
        pool = pool_for(server)
        assert (await post(pool))[2] == b'{"a":1}'
        assert (await post(pool))[2] == b'{"a":1}'  # not reused: a new connection
        await pool.close()
    assert server.connections == 2


async def test_informational_answer_is_skipped() -> None:
    async with Server(answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done"))) as server:
        pool = pool_for(server)
        assert (await post(pool))[:3:2] == (200, b"done")
        await pool.close()


async def test_body_cut_short_by_a_close_is_a_connection_error() -> None:
    truncated = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial'
    async with Server(answer(truncated, close=True)) as server:
        pool = pool_for(server)
        with pytest.raises(BackendConnectionError, match="part way through the answer"):
            await post(pool)
        await pool.close()


async def test_close_before_answering_is_a_connection_error() -> None:
    async with Server(answer(close=True)) as server:
        pool = pool_for(server)
        with pytest.raises(BackendConnectionError, match="before answering"):
            await post(pool)
        await pool.close()


async def test_refused_connection_names_the_address() -> None:
    async with Server(answer(ok())) as server:
        port = server.port
    pool = H1Pool(Origin(f"http://127.0.0.1:{port}/v1", {}))
    with pytest.raises(BackendConnectionError, match=f"cannot connect to 127.0.0.1:{port}"):
        await post(pool)


@pytest.mark.parametrize(
    "raw",
    [
        ok(b"x" * 5000),  # declared too long
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"400\r\n"
        + b"y" * 1024
        + b"\r\n"
        + b"400\r\n"
        + b"y" * 1024
        + b"\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 5000,  # until close, too long
        ok(gzip.compress(b"w" * 50_000), b"Content-Encoding: gzip\r\n"),  # inflates past it
    ],
)
async def test_answers_past_the_limit_are_cut(raw: bytes) -> None:
    async with Server(answer(raw, close=raw.startswith(b"HTTP/1.0"))) as server:
        pool = pool_for(server)
        head = pool.origin.request_line("/x")
        assert head is not None
        with pytest.raises(MalformedResponse, match="passed 1500 bytes"):
            await pool.post(head, b"{}", 1500, "b")
        if b"gzip" not in raw:  # a body cut while read: its connection is never reused
            assert not pool._idle
        await pool.close()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        (b"gzip", gzip.compress),
        (b"deflate", zlib.compress),
        (b"deflate", lambda d: zlib.compress(d)[2:-4]),  # raw deflate, as some servers send
    ],
)
async def test_compressed_answers_are_decoded(coding: bytes, encode: Callable) -> None:
    raw = ok(encode(b'{"text":"hello"}'), b"Content-Encoding: " + coding + b"\r\n")
    async with Server(answer(raw)) as server:
        pool = pool_for(server)
        assert (await post(pool))[2] == b'{"text":"hello"}'
        await pool.close()
    assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in server.requests[0]


async def test_an_encoding_not_asked_for_is_refused() -> None:
    async with Server(answer(ok(b"\x0b\x02\x80", b"Content-Encoding: br\r\n"))) as server:
        pool = pool_for(server)
        with pytest.raises(MalformedResponse, match="'br'"):
            await post(pool)
        await pool.close()


async def test_garbage_is_a_connection_error_and_the_connection_dropped() -> None:
    async with Server(answer(b"NOT HTTP AT ALL\r\n\r\n")) as server:
        pool = pool_for(server)
        with pytest.raises(BackendConnectionError, match="unparsable HTTP answer"):
            await post(pool)
        assert not pool._idle
        await pool.close()


async def test_cancelled_request_closes_its_connection() -> None:
    async def never(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(30)
        return False

    async with Server(never) as server:
        pool = pool_for(server)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await post(pool)
        assert not pool._idle
        await pool.close()


async def test_connection_closed_while_idle_is_not_reused() -> None:
    async with Server(answer(ok(extra=b"Connection: keep-alive\r\n"), close=True)) as server:
        pool = pool_for(server)
        await post(pool)
        await asyncio.sleep(0.05)  # the server's FIN arrives while the connection is idle
        assert (await post(pool))[0] == 200
        await pool.close()
    assert server.connections == 2


async def test_unsolicited_bytes_on_an_idle_connection_retire_it() -> None:
    async def chatty(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(ok() + b"HTTP/1.1 200 OK\r\nX-Stray: 1\r\n\r\n")  # a stray extra answer
        return True

    async with Server(chatty) as server:
        pool = pool_for(server)
        assert "x-stray" not in (await post(pool))[1]  # the stray answer touches nothing
        await asyncio.sleep(0.05)
        assert (await post(pool))[0] == 200
        await pool.close()
    assert server.connections == 2


def test_headers_with_line_breaks_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="line breaks"):
        Origin("http://127.0.0.1:9/v1", {"Authorization": "Bearer x\r\nX-Evil: 1"})


def test_origin_request_lines() -> None:
    origin = Origin("https://api.example.com/v1/", {"Content-Type": "application/json+x"})
    head = origin.request_line("/chat/completions")
    assert head is not None and head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Host: api.example.com\r\n" in head  # default port left out
    assert head.count(b"Content-Type") == 1 and b"application/json+x" in head
    assert origin.request_line("/with space") is None  # needs quoting: another client
    assert origin.request_line("https://elsewhere/x") is None
    assert b"Host: [::1]:8080\r\n" in (Origin("http://[::1]:8080", {}).request_line("/") or b"")
    for not_taken in ("http://user:pw@host/v1", "ftp://host/", "http://host/v1?x=1"):
        with pytest.raises(ValueError):
            Origin(not_taken, {})


# -- TLS ------------------------------------------------------------------------------------


async def _tls_server(cert: Path, key: Path) -> AsyncIterator[int]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(2)
            writer.write(ok(b"secure"))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_tls_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key, _ = self_signed(tmp_path, "localhost")
    servers = _tls_server(cert, key)
    port = await servers.__anext__()
    origin = Origin(f"https://localhost:{port}", {})
    head = origin.request_line("/")
    assert head is not None
    untrusting = H1Pool(origin)  # the system's CA store does not know this certificate
    with pytest.raises(BackendConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusting.post(head, b"{}", 1000, "b")
    trusting = H1Pool(origin, tls=ssl.create_default_context(cafile=str(cert)))
    assert (await trusting.post(head, b"{}", 1000, "b"))[2] == b"secure"
    await trusting.close()
    await servers.aclose()


# -- in Connection.post_limited --------------------------------------------------------------


async def test_post_limited_uses_the_lean_client_and_maps_statuses() -> None:
    replies = iter(
        [
            ok(b'{"fine":1}'),
            b"HTTP/1.1 429 Too Many\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}",
            b'HTTP/1.1 400 Bad\r\nContent-Length: 26\r\n\r\n{"error":{"message":"no"}}',
            b"HTTP/1.1 307 Moved\r\nLocation: https://new.example/v1\r\nContent-Length: 0\r\n\r\n",
        ]
    )

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(next(replies))
        return True

    async with Server(reply) as server:
        conn = Connection(server.url, {"Authorization": "Bearer sk-abcdefgh12345678"}, 5.0)
        raw, headers = await conn.post_limited("/chat", {"q": 1}, backend="b", limit=1000)
        assert raw == b'{"fine":1}' and conn._pools and not conn._sessions
        with pytest.raises(RateLimited) as limited:
            await conn.post_limited("/chat", {}, backend="b", limit=1000)
        assert limited.value.retry_after == 3
        with pytest.raises(InvalidRequest, match="no"):
            await conn.post_limited("/chat", {}, backend="b", limit=1000)
        with pytest.raises(BackendUnavailable, match="redirects to https://new.example/v1"):
            await conn.post_limited("/chat", {}, backend="b", limit=1000)
        await conn.aclose()
    assert server.connections == 1


async def test_transport_choice_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with Server(answer(ok())) as server:
        monkeypatch.setenv("INTENTMESH_HTTP_TRANSPORT", "aiohttp")
        conn = Connection(server.url, {}, 5.0)
        await conn.post_limited("/chat", {}, backend="b", limit=1000)
        assert not conn._pools and conn._sessions  # the aiohttp session
        await conn.aclose()
        monkeypatch.setenv("INTENTMESH_HTTP_TRANSPORT", "bogus")
        with pytest.raises(ConfigurationError, match="INTENTMESH_HTTP_TRANSPORT='bogus'"):
            await Connection(server.url, {}, 5.0).post_limited("/c", {}, backend="b", limit=9)


def test_on_uvloop_as_intentmesh_serve_runs_it() -> None:
    uvloop = pytest.importorskip("uvloop")

    async def run() -> tuple[bytes, int]:
        async with Server(answer(ok(b"fast"))) as server:
            pool = pool_for(server)
            bodies = [(await post(pool))[2] for _ in range(3)]
            await pool.close()
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        return bodies[-1], server.connections

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(run()) == (b"fast", 1)


# -- edge cases found in review ----------------------------------------------------------------


async def test_an_early_answer_does_not_pool_a_half_sent_request() -> None:
    """A 413 before the body was read: the rest of the body must not precede the next request."""
    handlers: list[asyncio.Task[None]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"Content-Length: 2\r\n" in head:  # the small second request: answer it
                await reader.readexactly(2)
                writer.write(ok(b"second"))
            else:  # answer at once, without reading the 32 MiB body
                writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            await asyncio.sleep(0.3)
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    pool = H1Pool(Origin(f"http://127.0.0.1:{port}", {}))
    head = pool.origin.request_line("/x")
    assert head is not None
    assert (await pool.post(head, b"x" * (32 << 20), 1000, "b"))[0] == 413
    assert not pool._idle  # its request was still being written
    assert (await pool.post(head, b"{}", 1000, "b"))[2] == b"second"
    await pool.close()
    listener.close()
    await asyncio.gather(*handlers, return_exceptions=True)
    await listener.wait_closed()


async def test_bad_headers_fail_every_call_the_same_way() -> None:
    conn = Connection("http://127.0.0.1:9/v1", {"Authorization": "Bearer sk-abcdefgh\n"}, 5.0)
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="trailing newline"):
            await conn.post_limited("/chat", {}, backend="b", limit=100)
    await conn.aclose()


@pytest.mark.parametrize("transport", ["auto", "aiohttp", "httpx"])
async def test_error_answers_with_non_ascii_header_values(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTENTMESH_HTTP_TRANSPORT", transport)
    async with Server(answer(LIMITED_NON_ASCII)) as server:
        conn = Connection(server.url, {}, 5.0)
        with pytest.raises(RateLimited) as caught:
            await conn.post_limited("/chat", {}, backend="b", limit=1000)
        assert caught.value.retry_after == 2
        await conn.aclose()


@pytest.mark.parametrize(
    ("coding", "body", "expected"),
    [
        # zlib with a 1 KiB window (its first byte is not 0x78)
        (b"deflate", zlib.compressobj(wbits=10).compress(b"small window") + b"", None),
        (b"gzip", gzip.compress(b"one ") + gzip.compress(b"two"), b"one two"),
    ],
)
async def test_more_compressed_shapes(coding: bytes, body: bytes, expected: bytes | None) -> None:
    if expected is None:  # finish the small-window stream
        deflater = zlib.compressobj(wbits=10)
        body, expected = deflater.compress(b"small window") + deflater.flush(), b"small window"
    async with Server(answer(ok(body, b"Content-Encoding: " + coding + b"\r\n"))) as server:
        pool = pool_for(server)
        assert (await post(pool))[2] == expected
        await pool.close()


async def test_a_truncated_compressed_body_is_malformed() -> None:
    cut = gzip.compress(b"z" * 2000)[:-12]
    async with Server(answer(ok(cut, b"Content-Encoding: gzip\r\n"))) as server:
        pool = pool_for(server)
        with pytest.raises(MalformedResponse, match="ends part way"):
            await post(pool)
        await pool.close()


async def test_trailers_are_not_headers() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Encoding\r\n\r\n"
    chunked += b"2\r\nhi\r\n0\r\nContent-Encoding: gzip\r\n\r\n"
    async with Server(answer(chunked)) as server:
        pool = pool_for(server)
        _, headers, body = await post(pool)
        assert body == b"hi" and "content-encoding" not in headers
        await pool.close()


async def test_transfer_encoding_without_chunked_runs_until_close() -> None:
    raw = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n{"a":1}'
    async with Server(answer(raw, close=True)) as server:
        pool = pool_for(server)
        assert (await post(pool))[2] == b'{"a":1}'
        await pool.close()


async def test_a_reset_does_not_end_a_close_delimited_body() -> None:
    async def reset(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.0 200 OK\r\n\r\n{"partial')
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN
        return False

    async with Server(reset) as server:
        pool = pool_for(server)
        with pytest.raises(BackendConnectionError, match="part way"):
            await post(pool)
        await pool.close()


async def test_idle_connections_past_keep_alive_are_closed_on_release(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Server(answer(ok())) as server:
        pool = pool_for(server)
        await asyncio.gather(post(pool), post(pool))  # two connections, both idle after
        assert len(pool._idle) == 2
        old = pool._idle[0]
        old.idle_since -= 3600
        await post(pool)  # reuses the newest; releasing it retires the stale one
        assert old not in pool._idle and old.lost
        await pool.close()


def test_unicode_hosts_go_out_as_punycode_and_names_must_be_tokens() -> None:
    head = Origin("http://bücher.example/v1", {}).request_line("/x") or b""
    assert b"Host: xn--bcher-kva.example\r\n" in head
    with pytest.raises(ConfigurationError, match="HTTP token"):
        Origin("http://h/v1", {"X Bad: name": "v"})


# -- what docs/configuration.md promises, and streams answering the same way -----------------


async def test_proxy_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    async with Server(answer(ok(b'{"direct":1}'))) as server:
        conn = Connection(server.url, {}, 5.0)
        raw, _ = await conn.post_limited("/chat", {}, backend="b", limit=1000)
        assert raw == b'{"direct":1}' and conn._pools
        await conn.aclose()


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        (
            b"HTTP/1.1 307 Moved\r\nLocation: https://new.example/v1\r\nContent-Length: 0\r\n\r\n",
            BackendUnavailable,
            "redirects to https://new.example/v1",
        ),
        (
            LIMITED_NON_ASCII,
            RateLimited,
            "HTTP 429",
        ),
    ],
)
async def test_a_stream_raises_what_a_whole_answer_raises(
    raw: bytes, error: type[Exception], match: str
) -> None:
    async with Server(answer(raw)) as server:
        conn = Connection(server.url, {}, 5.0)
        with pytest.raises(error, match=match):
            await conn.post_limited("/chat", {}, backend="b", limit=1000)
        with pytest.raises(error, match=match):
            async with conn.stream_sse("/chat", {}, backend="b") as events:
                async for _ in events:
                    pass
        await conn.aclose()


def silent() -> Reply:
    """Read the request and never answer."""

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(3600)
        return True

    return reply


async def test_the_exchange_timeout_holds_without_a_caller_deadline() -> None:
    async with Server(silent()) as server:
        conn = Connection(server.url, {}, 5.0)
        with pytest.raises(BackendTimeout, match="no complete answer within timeout_s=0.05"):
            await conn.post_limited("/chat", {}, backend="b", limit=1000, timeout_s=0.05)
        await conn.aclose()


async def test_under_the_executors_deadline_the_executor_times_the_exchange() -> None:
    """``within`` declares its deadline: the lean client arms no timer of its own, and the
    executor's timeout (with its reason) is what the caller sees, as before."""
    async with Server(silent()) as server:
        conn = Connection(server.url, {}, 5.0)
        exchange = conn.post_limited("/chat", {}, backend="b", limit=1000, timeout_s=0.05)
        with pytest.raises(BackendTimeout, match=r"no answer within 0.05 s \(timeout_s\)"):
            await within(0.05, "timeout_s", "b", exchange)
        # a caller's deadline further away than the exchange's own: the client's timer fires
        exchange = conn.post_limited("/chat", {}, backend="b", limit=1000, timeout_s=0.05)
        with pytest.raises(BackendTimeout, match="no complete answer within timeout_s=0.05"):
            await within(30.0, "timeout_s", "b", exchange)
        await conn.aclose()


async def test_a_caller_deadline_covers_only_the_task_that_set_it() -> None:
    loop = asyncio.get_running_loop()
    assert not cut_off_by_caller(10.0)
    token = set_caller_deadline(loop.time() + 100.0)  # wide margins: a loaded machine stalls
    try:
        assert cut_off_by_caller(100.0) and cut_off_by_caller(1000.0)
        assert not cut_off_by_caller(50.0)  # the adapter's own timer would fire first
        assert not await asyncio.create_task(_covered(1000.0))  # a task it starts times itself
    finally:
        token.var.reset(token)
    assert not cut_off_by_caller(10.0)


async def _covered(seconds: float) -> bool:
    return cut_off_by_caller(seconds)
