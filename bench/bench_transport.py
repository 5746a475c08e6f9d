"""Client-side cost of the upstream HTTP transport: httpx's own pool, httpx over aiohttp, an
aiohttp session, and the SDK's lean HTTP/1.1 client (``adapters/_h1.py``).

    python bench/bench_transport.py [--requests 3000]

One fake OpenAI-compatible provider runs in another process; this process sends non-streaming
chat calls at concurrency 1, 64 and 256 through each client and prints requests/s and the
client's CPU time per request (the part the transport is responsible for).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx

from intentmesh.adapters._h1 import H1Pool, Origin
from intentmesh.adapters._http import default_transport

BODY = json.dumps(
    {"model": "fake-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
).encode()
UPSTREAM = (
    "import sys\nfrom intentmesh.testing import FakeOpenAIProvider\n"
    "p = FakeOpenAIProvider(['fake-llama'], record=False)\n"
    "p.start(); print(p.base_url, flush=True)\nsys.stdin.read()\n"
)


KINDS = ("httpx", "httpx+aiohttp", "aiohttp", "lean h1")
_JSON = {"content-type": "application/json"}


def client_for(url: str, kind: str) -> tuple[Callable[[], Awaitable[object]], Any]:
    """One POST through ``kind`` (answer parsed as JSON), and what closes that client."""
    if kind == "aiohttp":
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))

        async def via_aiohttp() -> object:
            async with session.post(url, data=BODY, headers=_JSON) as r:
                return json.loads(await r.read())

        return via_aiohttp, session.close
    if kind == "lean h1":
        base = url.removesuffix("/chat/completions")
        pool = H1Pool(Origin(base, {}))
        head = pool.origin.request_line("/chat/completions")
        assert head is not None

        async def via_h1() -> object:
            return json.loads((await pool.post(head, BODY, 1 << 20, "bench"))[2])

        return via_h1, pool.close
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    transport = default_transport() if kind == "httpx+aiohttp" else None
    client = httpx.AsyncClient(limits=limits, transport=transport, trust_env=False)

    async def via_httpx() -> object:
        return (await client.post(url, content=BODY, headers=_JSON)).json()

    return via_httpx, client.aclose


async def run(url: str, kind: str, concurrency: int, n: int) -> tuple[float, float]:
    post, close = client_for(url, kind)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            await post()

    await asyncio.gather(*(one() for _ in range(300)))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu_us = (time.process_time() - cpu) / n * 1e6
    rps = n / (time.perf_counter() - wall)
    await close()
    return rps, cpu_us


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    url = proc.stdout.readline().strip() + "/chat/completions"
    try:
        for concurrency in (1, 64, 256):
            for kind in KINDS:
                rps, cpu_us = asyncio.run(run(url, kind, concurrency, args.requests))
                print(f"c={concurrency:<4} {kind:14s} {rps:8.0f} req/s {cpu_us:7.0f} us CPU/req")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
