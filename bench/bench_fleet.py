"""Fleet mode: what the shared-state path adds to one request over the embedded default.

    python bench/bench_fleet.py [--n 2000] [--redis redis://127.0.0.1:6379/0]

Per request the server (or ``gateway.limit(...)``) admits (rate windows + budget reservation),
settles after the answer, and the solver reads each backend's breaker. Embedded: a SpendBook in
SQLite ``:memory:`` and an in-process HealthBook. Fleet: the Redis Lua scripts and a HealthBook
synced by a RedisHealthShare. The two paths run interleaved in the same process, so machine
noise hits both; the figure is the difference of the per-request p50 / p99 (and the ratio).
Keys live under a fresh prefix, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from intentmesh.config import StateConfig
from intentmesh.fleet import Fleet, Limits, LocalAccounts
from intentmesh.router import HealthBook

LIMITS = Limits(budget_usd=1e9)  # a key with a budget; --rpm adds a requests/min window


async def one(accounts: object, health: HealthBook, limits: Limits = LIMITS) -> float:
    t0 = time.perf_counter()
    hold = await accounts.aadmit("bench", limits, 0.001, 0.0001)  # type: ignore[attr-defined]
    health.breaker_if_tripped("backend-a")
    await accounts.asettle(hold, 0.0005, 300)  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) * 1e6


async def round_trips(fleet: Fleet, n: int) -> float:
    """p50 of a do-nothing script: what one loopback round trip costs on this machine now."""
    script = fleet.state.conn().client.register_script("return 1")
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await script(keys=[], args=[])
        samples.append((time.perf_counter() - t0) * 1e6)
    return pct(samples, 0.5)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(n: int, url: str, rpm: bool) -> None:
    limits = Limits(budget_usd=1e9, requests_per_min=10**9) if rpm else LIMITS
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    fleet = Fleet(StateConfig(url=url, prefix=prefix), url)
    shared = HealthBook(share=fleet.health_share(["backend-a", "backend-b"]))
    local, plain = LocalAccounts(), HealthBook()
    embedded: list[float] = []
    redis: list[float] = []
    for _ in range(200):  # warm up both (connections, script cache)
        await one(local, plain, limits)
        await one(fleet.accounts, shared, limits)
    for _ in range(n):
        embedded.append(await one(local, plain, limits))
        redis.append(await one(fleet.accounts, shared, limits))
    bare = await round_trips(fleet, n)
    t0 = time.perf_counter()
    for _ in range(100_000):
        shared.breaker_if_tripped("backend-a")
    read_ns = (time.perf_counter() - t0) / 100_000 * 1e9
    await fleet.aclose()
    await local.aclose()
    fleet.close()
    cleanup = fleet.state.sync_client()
    keys = list(cleanup.scan_iter(match=f"{prefix}:*"))
    if keys:
        cleanup.delete(*keys)
    cleanup.close()
    e50, e99, r50, r99 = pct(embedded, 0.5), pct(embedded, 0.99), pct(redis, 0.5), pct(redis, 0.99)
    what = "budget + requests/min" if rpm else "budget"
    print(f"requests: {n} (admit + breaker read + settle; {what}), Redis at {fleet.state.where}")
    print(f"embedded (SQLite :memory:)  p50 {e50:7.1f} us   p99 {e99:7.1f} us")
    print(f"fleet (Redis)               p50 {r50:7.1f} us   p99 {r99:7.1f} us")
    print(f"added by fleet mode         p50 {r50 - e50:7.1f} us   p99 {r99 - e99:7.1f} us")
    print(f"ratio fleet/embedded        p50 {r50 / e50:7.2f} x    p99 {r99 / e99:7.2f} x")
    print(f"shared breaker read: {read_ns:.0f} ns (local view, no round trip)")
    print(f"machine baseline: one bare Redis round trip (EVALSHA 'return 1') p50 {bare:.1f} us;")
    print(f"  the fleet path makes two: {(r50 - e50) / bare:.1f} round trips' worth added")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rpm", action="store_true", help="also check a requests/min window")
    args = parser.parse_args()
    asyncio.run(run(args.n, args.redis, args.rpm))


if __name__ == "__main__":
    main()
