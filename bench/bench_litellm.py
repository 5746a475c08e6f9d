"""LiteLLM side of bench_core.py; runs inside a separate virtualenv that has litellm installed.

    /tmp/litellm-venv/bin/python bench/bench_litellm.py BASE_URL N

Measures its own httpx floor and ``Router.acompletion`` against the same loopback provider,
sequentially and at concurrency 64, and prints one JSON line. Its ``measure`` and
``percentiles`` mirror bench_core.py's on purpose: this file runs in a venv without intentmesh.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import

import httpx  # noqa: E402
from litellm import Router  # noqa: E402


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "mean_ms": sum(ordered) / len(ordered)}


async def measure(fn, n: int, concurrency: int) -> list[float]:  # type: ignore[no-untyped-def]
    for i in range(min(50, n)):
        await fn(i)
    samples: list[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            t0 = time.perf_counter()
            await fn(i)
            samples.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    return samples


async def main(base_url: str, n: int) -> None:
    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=1024), trust_env=False)
    router = Router(
        model_list=[
            {
                "model_name": "llama",
                "litellm_params": {
                    "model": "openai/fake-llama",
                    "api_base": base_url,
                    "api_key": "none",
                },
            }
        ]
    )

    async def floor(i: int) -> object:
        body = {
            "model": "fake-llama",
            "messages": [{"role": "user", "content": f"hello {i}"}],
            "max_tokens": 16,
            "temperature": 0.0,
            "stream": False,
        }
        r = await client.post(
            base_url + "/chat/completions",
            content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        return r.json()["choices"][0]["message"]["content"]

    async def lite(i: int) -> object:
        r = await router.acompletion(
            model="llama",
            max_tokens=16,
            temperature=0.0,
            messages=[{"role": "user", "content": f"hello {i}"}],
        )
        return r.choices[0].message.content

    out: dict[str, dict[str, dict[str, float]]] = {}
    for concurrency in (1, 64):
        label = "sequential" if concurrency == 1 else f"concurrency_{concurrency}"
        acc: dict[str, list[float]] = {"floor_httpx": [], "litellm_router": []}
        for _round in range(2):
            acc["floor_httpx"] += await measure(floor, n // 2, concurrency)
            acc["litellm_router"] += await measure(lite, n // 2, concurrency)
        out[label] = {k: percentiles(v) for k, v in acc.items()}
    await client.aclose()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
