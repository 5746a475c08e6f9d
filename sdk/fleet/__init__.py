"""Fleet mode: budgets, rate limits, breakers, latency and prices shared through Redis.

``[state] url = "redis://host:6379/0"`` (or ``$INTENTMESH_STATE_URL``) turns it on for the SDK
and ``intentmesh serve`` alike; without it everything stays in-process (SQLite for server key
budgets). The pieces are small interfaces with an embedded and a Redis implementation:

* :class:`AccountStore` — budgets and rate limits: :class:`LocalAccounts` / :class:`RedisAccounts`;
* :class:`~intentmesh.router.HealthShare` — breakers and latency: :class:`RedisHealthShare`;
* :class:`~intentmesh._discovery.PriceCache` — discovered prices: :class:`RedisPriceCache`.

The Redis client is imported only when a state URL is configured (extra ``redis``).
"""

from __future__ import annotations

from collections.abc import Sequence

from intentmesh.config import StateConfig
from intentmesh.fleet._accounts import AccountStore, Balance, Hold, Limits, LocalAccounts
from intentmesh.fleet._health import RedisHealthShare
from intentmesh.fleet._prices import RedisPriceCache
from intentmesh.fleet._redis import RedisAccounts, RedisState
from intentmesh.fleet._spend import Limited, admit, cost_of_failure, settle
from intentmesh.fleet._sqlite import SpendBook

__all__ = [
    "AccountStore",
    "Balance",
    "Fleet",
    "Hold",
    "Limited",
    "Limits",
    "LocalAccounts",
    "RedisAccounts",
    "RedisHealthShare",
    "RedisPriceCache",
    "RedisState",
    "SpendBook",
    "admit",
    "cost_of_failure",
    "open_fleet",
    "settle",
]


class Fleet:
    """Everything one ``[state] url`` shares: accounts, a health share, the price cache."""

    def __init__(self, config: StateConfig, url: str, *, check: bool = True) -> None:
        self.state = RedisState(config, url)
        if check:
            self.state.check()
        self.accounts = RedisAccounts(self.state)
        self.prices = RedisPriceCache(self.state)
        self._shares: list[RedisHealthShare] = []

    def health_share(self, backends: Sequence[str]) -> RedisHealthShare:
        share = RedisHealthShare(self.state, backends)
        self._shares.append(share)
        return share

    async def aclose(self) -> None:
        """Close the running loop's connection (pending settlements are flushed first)."""
        await self.accounts.aclose()

    def close(self) -> None:
        """Stop the health sync threads."""
        for share in self._shares:
            share.close()
        self._shares.clear()


def open_fleet(config: StateConfig) -> Fleet | None:
    """The fleet for ``[state]`` (checked once: unreachable is a clear StateUnavailable), or
    None when no state URL is configured (embedded, in-process state)."""
    url = config.resolved_url()
    return Fleet(config, url) if url else None
