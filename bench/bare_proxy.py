"""The floor under ``intentmesh serve``: a bare proxy on the same serving stack, no gateway logic.

    python bench/bare_proxy.py PORT UPSTREAM_BASE_URL UPSTREAM_MODEL

It serves ``POST /v1/chat/completions`` the way ``intentmesh serve`` does at the transport
level: uvicorn with httptools and uvloop over ``server/_wire.py``'s joined writes, the same GC
tuning, orjson, and the SDK's lean HTTP/1.1 client to the upstream. It does nothing else: no
keys, intent, routing, executor, accounting, metrics or receipts. ``bench_gateway.py`` serves it
beside ``intentmesh serve``, so the difference between the two rows is what the gateway's own
work costs per request. ``GET`` answers ``{}`` (the readiness check).
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from intentmesh.adapters._h1 import H1Pool, Origin

_JSON = (b"content-type", b"application/json")


class BareProxy:
    """An ASGI app that forwards each POST body to the upstream with ``model`` replaced."""

    def __init__(self, upstream: str, model: str) -> None:
        self.upstream = upstream
        self.model = model
        self.pool: H1Pool | None = None  # made on the serving loop

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["method"] != "POST":
            await _answer(send, b"{}")
            return
        request = orjson.loads(await _body(receive))
        request["model"] = self.model
        if self.pool is None:
            self.pool = H1Pool(Origin(self.upstream, {"Authorization": "Bearer bench"}))
        head = self.pool.origin.request_line("/chat/completions")
        assert head is not None
        _, _, raw = await self.pool.post(head, orjson.dumps(request), 1 << 24, "upstream")
        await _answer(send, orjson.dumps(orjson.loads(raw)))


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _answer(send: Any, payload: bytes) -> None:
    length = (b"content-length", b"%d" % len(payload))
    await send({"type": "http.response.start", "status": 200, "headers": [_JSON, length]})
    await send({"type": "http.response.body", "body": payload})


def main(argv: list[str]) -> None:
    import uvicorn

    from intentmesh.server._serve import _tune_gc
    from intentmesh.server._wire import http_protocol

    port, upstream, model = int(argv[0]), argv[1], argv[2]
    _tune_gc()
    uvicorn.run(
        BareProxy(upstream, model),
        http=http_protocol(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
