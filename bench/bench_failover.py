"""Failover, time limits and hedging against loopback fakes (issue 12).

    python bench/bench_failover.py [--requests 200]

``FakeOpenAIProvider`` upstreams run in their own process; a Gateway in this one calls them
with ``ainfer`` (receipts off, so only routing is measured). Every figure is set against a
baseline measured in the same run:

- failover off a refused connection and off a 503: p50 of ``[broken, healthy]`` minus p50 of
  the healthy backend alone (interleaved), and when the fallback attempt started (its
  ``started_ms``: the time the failed attempt and the failover decision took);
- a silent first backend (accepts, never answers): time to answer with only
  ``max_latency_ms`` set, and with ``max_ttft_ms``, as a fraction of that limit;
- one straggler: p99 with 5 % of the first backend's answers delayed, without and with
  ``hedge``, against the p99 with no straggler.
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
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from intentmesh import Gateway, Intent
from intentmesh.config import parse_config
from intentmesh.testing import refused_url

MODEL = "llama-3.1-8b-instruct"


def config(urls: dict[str, str], tmp: Path, retries: int = 2) -> str:
    parts = [
        f'[receipts]\nenabled = false\nledger = "{tmp / "l.db"}"\nkey = "{tmp / "k.pem"}"\n',
        "[routing]\nbackoff_s = 0.05\nfailure_threshold = 1000000\n",
    ]
    for i, (name, url) in enumerate(urls.items()):
        parts.append(
            f'[[backends]]\nname = "{name}"\nbase_url = "{url}"\nretries = {retries}\n'
            f"timeout_s = 30\n[[backends.models]]\nname = \"{MODEL}\"\nid = \"fake-llama\"\n"
            f"input_price = {0.1 * (i + 1)}\noutput_price = {0.2 * (i + 1)}\n"
        )
    return "\n".join(parts)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return (time.perf_counter() - t0) * 1000


async def failover(gw: Gateway, broken: str, n: int) -> dict[str, float]:
    """Interleave the healthy backend alone and ``[broken, healthy]``; p50s and the difference."""
    alone = Intent(model=MODEL, prompt="hi", max_tokens=8, networks=["b"], verifiability="none")
    over = Intent(model=MODEL, prompt="hi", max_tokens=8, networks=[broken, "b"],
                  verifiability="none")
    base: list[float] = []
    case: list[float] = []
    starts: list[float] = []
    for _ in range(n):
        base.append(await timed(lambda: gw.ainfer(alone)))
        t0 = time.perf_counter()
        res = await gw.ainfer(over)
        case.append((time.perf_counter() - t0) * 1000)
        starts.append(res.attempts[-1].started_ms)
    b50, c50 = statistics.median(base), statistics.median(case)
    return {
        "baseline_p50_ms": b50,
        "failover_p50_ms": c50,
        "added_p50_ms": c50 - b50,
        "fallback_started_p50_ms": statistics.median(starts),
    }


async def silent(gw: Gateway, **limits: float) -> float:
    i = Intent(model=MODEL, prompt="hi", max_tokens=8, networks=["silent", "b"],
               verifiability="none", **limits)
    return await timed(lambda: gw.ainfer(i))


async def straggler(gw: Gateway, n: int, first: str, hedge: bool | float) -> list[float]:
    i = Intent(model=MODEL, prompt="hi", max_tokens=8, networks=[first, "b"], hedge=hedge,
               verifiability="none")
    return [await timed(lambda: gw.ainfer(i)) for _ in range(n)]


_UPSTREAMS = """
import json, sys
from intentmesh.testing import FakeOpenAIProvider, Fault
made = {name: FakeOpenAIProvider(["fake-llama"]).start()
        for name in ("a", "b", "unavailable", "silent", "straggler")}
made["unavailable"].always(Fault.status(503))
made["silent"].always(Fault.hang())
made["straggler"].fail_rate(0.05, Fault.latency(500), seed=1)
print(json.dumps({name: p.base_url for name, p in made.items()}), flush=True)
sys.stdin.read()
"""


@contextmanager
def upstreams() -> Iterator[dict[str, str]]:
    """The fake providers in their own process, so they do not share this one's GIL."""
    proc = subprocess.Popen([sys.executable, "-c", _UPSTREAMS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.communicate("")


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_dir, upstreams() as urls:
        urls["refused"] = refused_url()
        order = ("refused", "unavailable", "silent", "straggler", "a", "b")  # b: priciest, last
        gw = Gateway(parse_config(config({k: urls[k] for k in order}, Path(tmp_dir))))
        for _ in range(20):  # warm connections and latency estimates
            await gw.ainfer(Intent(model=MODEL, prompt="hi", max_tokens=8, networks=["b"],
                                   verifiability="none"))
        print("failover off a refused connection:", fmt(await failover(gw, "refused", n)))
        print("failover off a 503:               ", fmt(await failover(gw, "unavailable", n)))
        deadline = {"max_latency_ms": 2000.0}
        for limits in (deadline, {**deadline, "max_ttft_ms": 200.0}):
            ms = [await silent(gw, **limits) for _ in range(3)]
            bound = limits.get("max_ttft_ms", limits["max_latency_ms"])
            print(f"silent first backend, {limits}: answer in {statistics.median(ms):.0f} ms "
                  f"(median of 3) = {statistics.median(ms) / bound:.2f} x the tightest limit")
        healthy = await straggler(gw, n, "a", False)
        slow = await straggler(gw, n, "straggler", False)
        hedged = await straggler(gw, n, "straggler", 50.0)
        print(f"straggler p99: no straggler {pct(healthy, 0.99):.1f} ms, 5% stragglers "
              f"{pct(slow, 0.99):.1f} ms, hedged at 50 ms {pct(hedged, 0.99):.1f} ms "
              f"(p50 {statistics.median(healthy):.1f} / {statistics.median(slow):.1f} / "
              f"{statistics.median(hedged):.1f} ms)")
        await gw.aclose()
        gw.close()


def fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in d.items())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(main(parser.parse_args().requests))
