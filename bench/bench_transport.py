"""Client-side cost of the upstream HTTP transport: httpx's own pool vs httpx over aiohttp.

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

import httpx

from intentmesh.adapters._http import default_transport

BODY = json.dumps(
    {"model": "fake-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
).encode()
UPSTREAM = (
    "import sys\nfrom intentmesh.testing import FakeOpenAIProvider\n"
    "p = FakeOpenAIProvider(['fake-llama'], record=False)\n"
    "p.start(); print(p.base_url, flush=True)\nsys.stdin.read()\n"
)


async def run(url: str, kind: str, concurrency: int, n: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=256)
    transport = default_transport() if kind == "aiohttp" else None
    client = httpx.AsyncClient(limits=limits, transport=transport, trust_env=False)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            r = await client.post(url, content=BODY, headers={"content-type": "application/json"})
            r.json()

    await asyncio.gather(*(one() for _ in range(300)))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu_us = (time.process_time() - cpu) / n * 1e6
    rps = n / (time.perf_counter() - wall)
    await client.aclose()
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
            for kind in ("httpx", "aiohttp"):
                rps, cpu_us = asyncio.run(run(url, kind, concurrency, args.requests))
                print(f"c={concurrency:<4} {kind:8s} {rps:8.0f} req/s {cpu_us:7.0f} us CPU/req")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
