"""LoopbackServer: HTTP/1.1 framing, keep-alive, streaming, misbehaving actions, lifecycle."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from intentmesh.testing import FakeRequest, FakeResponse, LoopbackServer


async def echo(request: FakeRequest) -> FakeResponse:
    return FakeResponse.json(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "ua": request.headers["User-Agent"],
            "body": request.body.decode(),
        }
    )


def raw_exchange(url_port: int, payload: bytes, expect_responses: int) -> bytes:
    """Send raw bytes, read until ``expect_responses`` complete bodies arrived or EOF."""
    with socket.create_connection(("127.0.0.1", url_port), timeout=2) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(b"HTTP/1.1 ") < expect_responses or not data.endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


async def test_request_fields_and_json_response() -> None:
    async with LoopbackServer(echo) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/a/b%20c?x=1&y=", content=b"hello")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "method": "POST",
        "path": "/a/b c",
        "query": {"x": "1", "y": ""},
        "ua": f"python-httpx/{httpx.__version__}",
        "body": "hello",
    }


def test_url_and_base_url() -> None:
    with LoopbackServer(echo) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.base_url == server.url + "/v1"
    with pytest.raises(RuntimeError):
        _ = server.url


def test_keep_alive_serves_pipelined_requests_on_one_connection() -> None:
    request = b"GET /one HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\n\r\n"
    with LoopbackServer(echo) as server:
        data = raw_exchange(server.port, request + request.replace(b"one", b"two"), 2)
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert b'"path":"/one"' in data and b'"path":"/two"' in data
    assert b"connection: close" not in data


def test_chunked_request_body_and_connection_close() -> None:
    request = (
        b"POST /c HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    with LoopbackServer(echo) as server:
        data = raw_exchange(server.port, request, 1)
    assert b'"body":"hello world"' in data
    assert b"connection: close" in data


def test_bad_request_line_gets_400() -> None:
    with LoopbackServer(echo) as server:
        data = raw_exchange(server.port, b"NONSENSE\r\n\r\n", 1)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")


async def test_handler_exception_becomes_500_and_server_lives() -> None:
    async def broken(request: FakeRequest) -> FakeResponse:
        if request.path == "/boom":
            raise KeyError("nope")
        return FakeResponse.text("fine")

    async with LoopbackServer(broken) as server, httpx.AsyncClient(base_url=server.url) as client:
        bad = await client.get("/boom")
        good = await client.get("/ok")
    assert bad.status_code == 500
    assert bad.json()["error"]["type"] == "InternalServerError"
    assert good.text == "fine"
    assert [type(e) for e in server.handler_errors] == [KeyError]


async def test_stream_chunks_are_flushed_one_by_one() -> None:
    async def slow_stream(request: FakeRequest) -> FakeResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.sleep(0.3)
            yield b"second"

        return FakeResponse.streaming(chunks(), headers={"content-type": "text/plain"})

    async with LoopbackServer(slow_stream) as server, httpx.AsyncClient() as client:
        started = time.perf_counter()
        async with client.stream("GET", server.url) as response:
            assert response.headers["transfer-encoding"] == "chunked"
            seen = []
            async for chunk in response.aiter_raw():
                seen.append((chunk, time.perf_counter() - started))
    assert [c for c, _ in seen] == [b"first", b"second"]
    assert seen[0][1] < 0.25 <= seen[1][1]


@pytest.mark.parametrize(
    ("end", "error"), [("truncate", httpx.RemoteProtocolError), ("reset", httpx.ReadError)]
)
async def test_stream_can_end_badly(end: str, error: type[Exception]) -> None:
    async def handler(request: FakeRequest) -> FakeResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"partial"

        return FakeResponse.streaming(chunks(), end=end)  # type: ignore[arg-type]

    async with (
        LoopbackServer(handler) as server,
        httpx.AsyncClient() as client,
        client.stream("GET", server.url) as response,
    ):
        received = []
        with pytest.raises(error):
            async for chunk in response.aiter_raw():
                received.append(chunk)
    assert received == [b"partial"]


async def test_actions_hang_reset_close() -> None:
    async def handler(request: FakeRequest) -> FakeResponse:
        return {"/hang": FakeResponse.hang, "/reset": FakeResponse.reset}.get(
            request.path, FakeResponse.close
        )()

    async with LoopbackServer(handler) as server, httpx.AsyncClient(base_url=server.url) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/hang", timeout=0.2)
        with pytest.raises(httpx.ReadError):
            await client.get("/reset")
        with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
            await client.get("/close")


async def test_500_concurrent_connections_are_all_answered() -> None:
    async def slow_echo(request: FakeRequest) -> FakeResponse:
        await asyncio.sleep(0.05)
        return FakeResponse.text(request.query["i"])

    async def ask(port: int, i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /?i={i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data.rpartition(b"\r\n\r\n")[2]

    async with LoopbackServer(slow_echo) as server:
        started = time.perf_counter()
        bodies = await asyncio.gather(*(ask(server.port, i) for i in range(500)))
        elapsed = time.perf_counter() - started
    assert bodies == [str(i).encode() for i in range(500)]
    assert elapsed < 2.0  # answered concurrently, not one after another (500 x 50 ms)


def test_stop_closes_connections_frees_port_and_is_idempotent() -> None:
    server = LoopbackServer(echo).start()
    assert server.start() is server
    port = server.port
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: raw\r\n\r\n")
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    server.stop()
    server.stop()
    assert not server.running
    sock.settimeout(2)
    assert sock.recv(10) == b""  # the server closed our idle connection
    sock.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/")
    with LoopbackServer(echo, port=port) as again:  # the port can be bound again
        assert httpx.get(again.url, headers={"user-agent": "x"}).json()["ua"] == "x"


def test_start_after_stop_serves_again() -> None:
    server = LoopbackServer(echo)
    for _ in range(2):
        with server:
            assert httpx.get(server.url).status_code == 200


async def test_stop_releases_a_hanging_client_at_once() -> None:
    async def hang(request: FakeRequest) -> FakeResponse:
        return FakeResponse.hang()

    server = await LoopbackServer(hang).astart()
    async with httpx.AsyncClient(timeout=5) as client:
        pending = asyncio.create_task(client.get(server.url))
        await asyncio.sleep(0.1)
        started = time.perf_counter()
        await server.astop()
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await pending
    assert time.perf_counter() - started < 1.0
