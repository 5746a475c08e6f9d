"""Quick SDK A/B: a raw aiohttp call vs ``ainfer`` at ``none`` and ``receipt``, sequential.

Four interleaved rounds of each case against a fake upstream in its own process; prints p50
latency and CPU per call of this process (all threads), each added over the raw aiohttp call of
the same run. Where the tree has it, a raw call on the SDK's own lean HTTP/1.1 client
(``adapters/_h1.py``) is measured too: what ``ainfer`` adds over its own transport.
Run it twice, once with an older tree first on the import path, for a before/after::

    python bench/bench_sdk_levels.py --requests 2000
    PYTHONPATH=/path/to/older/tree python bench/bench_sdk_levels.py --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import MODEL, body, many_backends_config, start_upstream  # noqa: E402

from intentmesh import Gateway  # noqa: E402
from intentmesh.config import parse_config  # noqa: E402

try:  # an older tree (a baseline) has no lean client
    from intentmesh.adapters._h1 import H1Pool, Origin

    _HAS_H1 = True
except ImportError:
    _HAS_H1 = False

ROUNDS = 4


async def run(n: int, h1: bool) -> None:
    proc, base = start_upstream()
    gw = Gateway(parse_config(many_backends_config(base, 1, Path(tempfile.mkdtemp()))))
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))
    url = base + "/chat/completions"

    async def floor(i: int) -> object:
        payload = json.dumps(body(i)).encode()
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=payload, headers=headers) as r:
            return json.loads(await r.read())["choices"][0]["message"]["content"]

    def at(level: str) -> Callable[[int], Awaitable[object]]:
        async def call(i: int) -> object:
            res = await gw.ainfer(
                model=MODEL, prompt=f"hello {i}", max_tokens=16, verifiability=level
            )
            return res.text

        return call

    cases = {"raw aiohttp": floor, "none": at("none"), "receipt": at("receipt")}
    lean = H1Pool(Origin(base, {})) if h1 else None
    if lean is not None:
        head = lean.origin.request_line("/chat/completions")
        assert head is not None

        async def floor_h1(i: int) -> object:  # the SDK's own client for non-streamed calls
            _, _, raw = await lean.post(head, json.dumps(body(i)).encode(), 1 << 20, "bench")
            return json.loads(raw)["choices"][0]["message"]["content"]

        cases["raw lean h1"] = floor_h1
    latency: dict[str, list[float]] = {k: [] for k in cases}
    cpu = dict.fromkeys(cases, 0.0)
    for _ in range(ROUNDS):
        for name, fn in cases.items():
            for i in range(50):  # warm-up
                await fn(i)
            c0 = time.process_time()
            for i in range(n // ROUNDS):
                t0 = time.perf_counter()
                await fn(i)
                latency[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - c0
    f50 = statistics.median(latency["raw aiohttp"]) * 1e3
    fcpu = cpu["raw aiohttp"] / n * 1e6
    for name in cases:
        p50 = statistics.median(latency[name]) * 1e3
        us = cpu[name] / n * 1e6
        added = f"(+{p50 - f50:6.3f})   CPU {us:6.0f} us (+{us - fcpu:5.0f})"
        print(f"{name:12s} p50 {p50:6.3f} ms {added}")
    await session.close()
    if lean is not None:
        await lean.close()
    await gw.aclose()
    gw.close()
    proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="calls per case")
    args = parser.parse_args()
    asyncio.run(run(args.requests, _HAS_H1))


if __name__ == "__main__":
    main()
