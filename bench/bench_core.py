"""Core overhead benchmark: what intentmesh adds on top of one raw HTTP call.

Runs a loopback fake provider in a separate process, then, in one run on the same machine:
a raw ``aiohttp`` POST (the floor: overhead is measured against it), raw ``httpx`` and raw
httpx-over-aiohttp POSTs for reference, ``Gateway.ainfer`` at verifiability ``none`` and
``receipt``, ``ainfer`` with 200 and 2,000 backends serving the model (vs 1), and, when a LiteLLM
virtualenv is given, LiteLLM's ``Router.acompletion`` (measured by ``bench_litellm.py`` inside that
venv against the same server, with its own floor). Sequential and at concurrency 64. Also: the
per-request routing decision and the full ``plan()`` dry run at 20 / 200 / 2,000 backends,
``ainfer``'s own CPU against a backend in this process that answers at once (no HTTP), intent
validation and ``import intentmesh`` time. Figures are differences or ratios to the floor
measured in the same run.

    python bench/bench_core.py [--requests 2000] [--litellm-python /tmp/litellm-venv/bin/python]
    PYTHONPATH=/path/to/older/tree python bench/bench_core.py   # the same figures for a baseline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from intentmesh import Gateway, Intent
from intentmesh.adapters._http import default_transport
from intentmesh.adapters.base import ChatRequest, Chunk, Completion, Usage
from intentmesh.config import parse_config
from intentmesh.router import HealthBook, Offer
from intentmesh.router._solver import solve

HERE = Path(__file__).parent
MODEL = "llama-3.1-8b-instruct"


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    code = (
        "import sys, time\n"
        "from intentmesh.testing import FakeOpenAIProvider\n"
        "p = FakeOpenAIProvider(['fake-llama'], record=False)\n"
        "p.start(); print(p.base_url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "mean_ms": statistics.fmean(ordered)}


async def measure(fn: Callable[[int], Awaitable[object]], n: int, concurrency: int) -> list[float]:
    """Latency of each of ``n`` calls, ``concurrency`` at a time, after a short warm-up."""
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


def body(i: int) -> dict[str, object]:
    return {
        "model": "fake-llama",
        "messages": [{"role": "user", "content": f"hello {i}"}],
        "max_tokens": 16,
        "temperature": 0.0,
        "stream": False,
    }


def many_backends_config(base_url: str, backends: int, home: Path | None = None) -> str:
    """``backends`` backends serving MODEL, the first one cheapest (all reach ``base_url``)."""
    head = ""
    if home is not None:
        head = f'[receipts]\nledger = "{home / "ledger.sqlite3"}"\nkey = "{home / "key.pem"}"\n'
    return head + "".join(
        f'[[backends]]\nname = "b{i}"\nbase_url = "{base_url}"\n'
        f'[[backends.models]]\nname = "{MODEL}"\nid = "fake-llama"\n'
        f"input_price = {0.1 + i / 1000}\noutput_price = {0.2 + i / 500}\n"
        for i in range(backends)
    )


async def run_suite(base_url: str, n: int, home: Path) -> dict[str, dict[str, dict[str, float]]]:
    gw = Gateway(parse_config(many_backends_config(base_url, 1, home)))
    wide = {
        count: Gateway(parse_config(many_backends_config(base_url, count, home)))
        for count in (200, 2000)
    }
    limits = httpx.Limits(max_connections=1024)
    client = httpx.AsyncClient(limits=limits, trust_env=False)
    same = httpx.AsyncClient(transport=default_transport(), limits=limits, trust_env=False)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024))
    url = base_url + "/chat/completions"

    async def raw_aiohttp(i: int) -> object:
        payload = json.dumps(body(i)).encode()
        async with session.post(
            url, data=payload, headers={"Content-Type": "application/json"}
        ) as r:
            data = json.loads(await r.read())
        return data["choices"][0]["message"]["content"]

    def raw(c: httpx.AsyncClient) -> Callable[[int], Awaitable[object]]:
        async def call(i: int) -> object:
            payload = json.dumps(body(i)).encode()
            r = await c.post(url, content=payload, headers={"Content-Type": "application/json"})
            return r.json()["choices"][0]["message"]["content"]

        return call

    def via_gateway(level: str, g: Gateway = gw) -> Callable[[int], Awaitable[object]]:
        async def call(i: int) -> object:
            res = await g.ainfer(
                model=MODEL, prompt=f"hello {i}", max_tokens=16, verifiability=level
            )
            return res.text

        return call

    cases = {
        "floor_aiohttp": raw_aiohttp,
        "raw_httpx": raw(client),
        "raw_httpx_over_aiohttp": raw(same),
        "intentmesh_none": via_gateway("none"),
        "intentmesh_receipt": via_gateway("receipt"),
        **{f"intentmesh_none_{k}_backends": via_gateway("none", g) for k, g in wide.items()},
    }
    out: dict[str, dict[str, dict[str, float]]] = {}
    for concurrency in (1, 64):
        label = "sequential" if concurrency == 1 else f"concurrency_{concurrency}"
        out[label] = {}
        for _round in range(2):  # interleave rounds so drift hits every case alike
            for name, fn in cases.items():
                if concurrency > 1 and name.endswith("_backends"):
                    continue
                cpu0 = time.process_time()  # all threads of this process (receipt writer too)
                samples = await measure(fn, n // 2, concurrency)
                entry = out[label].setdefault(name, {"samples": [], "cpu_s": 0.0, "calls": 0})
                entry["samples"] += samples  # type: ignore[operator]
                entry["cpu_s"] += time.process_time() - cpu0  # type: ignore[operator]
                entry["calls"] += len(samples) + min(50, n // 2)  # type: ignore[operator]
        for name in list(out[label]):
            entry = out[label][name]
            stats = percentiles(entry.pop("samples"))  # type: ignore[arg-type]
            stats["cpu_us"] = entry["cpu_s"] / max(1, entry["calls"]) * 1e6  # type: ignore[operator]
            out[label][name] = stats
    await client.aclose()
    await same.aclose()
    await session.close()
    for g in (gw, *wide.values()):
        await g.aclose()
        g.close()
    return out


def routing_us(backends: int, budget_s: float = 1.0) -> dict[str, float]:
    """CPU µs of one call's routing decision (what ``ainfer`` plans with) and of ``plan()``.

    ``backends`` backends serve the model at distinct prices; a tenth have learned latencies,
    so that the pre-ranked orders are not simply the configured ones.
    """
    gw = Gateway(parse_config(many_backends_config("http://127.0.0.1:9", backends)))
    for i in range(0, backends, 10):
        gw.health.observe_latency(f"b{i}", "fake-llama", 100.0 + i % 70)
    intent = Intent(model=MODEL, prompt="hello", max_tokens=16, max_price_usd=0.01)
    out = {}
    # an older tree under PYTHONPATH (a before/after run) may plan every call in full
    route = getattr(gw, "_route", gw.plan)
    for name, fn in (("decision_us", route), ("plan_us", gw.plan)):
        fn(intent)  # warm: the index is built on first use
        rounds = 0
        t0 = time.process_time()  # CPU time: less sensitive to other processes on a shared box
        while time.process_time() - t0 < budget_s * (0.2 if name == "plan_us" else 1):
            for _ in range(50):
                fn(intent)
            rounds += 50
        out[name] = (time.process_time() - t0) / rounds * 1e6
    gw.close()
    return out


class InstantBackend:
    """A backend in this process that answers at once: ``ainfer`` against it is the gateway's
    own work alone (no socket, no HTTP)."""

    async def acomplete(self, request: ChatRequest) -> Completion:
        return Completion("echo: hello bench", "stop", Usage(5, 3), model=request.model)

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        raise NotImplementedError
        yield  # pragma: no cover


def logic_us(level: str, home: Path, calls: int = 3000) -> float:
    """CPU µs per sequential ``ainfer`` (intent included) against :class:`InstantBackend`;
    best of five batches. At ``receipt`` the CPU of the receipt writer's thread counts too."""
    config = parse_config(many_backends_config("http://127.0.0.1:9", 1, home))
    gw = Gateway(config, backends={"b0": InstantBackend()})  # type: ignore[dict-item]
    messages = [{"role": "user", "content": "hello bench"}]

    async def batch(n: int) -> None:
        for _ in range(n):
            await gw.ainfer(Intent(model=MODEL, messages=messages, verifiability=level))

    async def best() -> float:
        await batch(calls // 3)
        times = []
        for _ in range(5):
            t0 = time.process_time()
            await batch(calls)
            times.append((time.process_time() - t0) / calls * 1e6)
        return min(times)

    try:
        return asyncio.run(best())
    finally:
        gw.close()


def solver_us(backends: int = 20, rounds: int = 20000) -> float:
    """The pure solver over ``backends`` offers (full ordering and every rejection)."""
    offers = [
        Offer(
            backend=f"b{i}",
            network=f"n{i % 4}",
            model=MODEL,
            provider_model="x",
            input_price=0.1 + i / 100,
            output_price=0.2 + i / 50,
        )
        for i in range(backends)
    ]
    names = {o.backend: o.network for o in offers}
    gw = Gateway(parse_config(""))
    request = gw.route_request(Intent(model=MODEL, prompt="hello", max_price_usd=0.01))
    health = HealthBook()
    t0 = time.process_time()
    for _ in range(rounds):
        solve(request, offers, health, names)
    return (time.process_time() - t0) / rounds * 1e6


def intent_validation_us(rounds: int = 20000) -> float:
    t0 = time.process_time()
    for _ in range(rounds):
        Intent(model=MODEL, prompt="hello", max_price_usd=0.01, max_latency_ms=3000)
    return (time.process_time() - t0) / rounds * 1e6


def import_ms(rounds: int = 15) -> float:
    """``import intentmesh`` over an empty interpreter: interleaved runs, best of each (a
    median of separate batches went negative on a noisy machine)."""
    times: dict[str, list[float]] = {"pass": [], "import intentmesh": []}
    for _ in range(rounds):
        for code, seen in times.items():
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            seen.append(time.perf_counter() - t0)
    return (min(times["import intentmesh"]) - min(times["pass"])) * 1000


def litellm(python: str, base_url: str, n: int) -> dict[str, object]:
    out = subprocess.run(
        [python, str(HERE / "bench_litellm.py"), base_url, str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--litellm-python", default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    proc, base_url = start_upstream()
    try:
        with tempfile.TemporaryDirectory() as home:
            results: dict[str, object] = {
                "http": asyncio.run(run_suite(base_url, args.requests, Path(home)))
            }
        if args.litellm_python:
            results["litellm"] = litellm(args.litellm_python, base_url, args.requests)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=10)
    with tempfile.TemporaryDirectory() as home:
        results["logic_us"] = {lv: logic_us(lv, Path(home)) for lv in ("none", "receipt")}
    results["routing"] = {str(k): routing_us(k) for k in (1, 20, 200, 2000)}
    results["solver_us_20_backends"] = solver_us()
    results["intent_validation_us"] = intent_validation_us()
    results["import_intentmesh_ms"] = import_ms()
    report(results)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


def report(results: dict[str, object]) -> None:
    http = results["http"]
    assert isinstance(http, dict)
    for label, cases in http.items():
        floor = cases["floor_aiohttp"]
        print(f"\n{label}: p50 / p99 ms, added over a raw aiohttp call (same run);")
        print("  CPU us per call of this process (all threads; upstream excluded), added")
        for name, stats in cases.items():
            added50 = stats["p50_ms"] - floor["p50_ms"]
            added99 = stats["p99_ms"] - floor["p99_ms"]
            added_cpu = stats["cpu_us"] - floor["cpu_us"]
            print(
                f"  {name:32s} {stats['p50_ms']:7.3f} / {stats['p99_ms']:7.3f}   "
                f"+{added50:6.3f} / +{added99:6.3f}   x{stats['p50_ms'] / floor['p50_ms']:.2f}"
                f"   cpu {stats['cpu_us']:7.1f} us (+{added_cpu:6.1f})"
            )
    lite = results.get("litellm")
    if isinstance(lite, dict):
        for label, cases in lite.items():
            floor, router = cases["floor_httpx"], cases["litellm_router"]
            print(
                f"  litellm {label}: floor {floor['p50_ms']:.3f} router {router['p50_ms']:.3f}"
                f" (+{router['p50_ms'] - floor['p50_ms']:.3f} ms p50, "
                f"+{router['p99_ms'] - floor['p99_ms']:.3f} ms p99)"
            )
    seq = http.get("sequential", {})
    one = seq.get("intentmesh_none", {}).get("p50_ms")
    for k in (200, 2000):
        wide = seq.get(f"intentmesh_none_{k}_backends", {}).get("p50_ms")
        if one is not None and wide is not None:
            print(f"ainfer added by {k} backends (vs 1), p50: {wide - one:+.3f} ms")
    logic = results["logic_us"]
    assert isinstance(logic, dict)
    print(
        "\nainfer against an in-process backend that answers at once (the gateway's own work),"
        f" CPU per call: none {logic['none']:.1f} us, receipt {logic['receipt']:.1f} us"
    )
    routing = results["routing"]
    assert isinstance(routing, dict)
    print("\nbackends   routing decision (us CPU)   full plan() dry run (us CPU)")
    for k, r in routing.items():
        print(f"  {k:>6s}   {r['decision_us']:10.1f}               {r['plan_us']:10.1f}")
    print(f"solver alone, 20 backends: {results['solver_us_20_backends']:.1f} us")
    print(f"intent validation: {results['intent_validation_us']:.1f} us")
    print(f"import intentmesh: {results['import_intentmesh_ms']:.1f} ms")


if __name__ == "__main__":
    main()
