"""Fleet state in Redis (or Valkey): connections, and accounts whose every step is one Lua script.

Needs the ``redis`` extra (``pip install 'intentmesh[redis]'``); imported only when ``[state]
url`` is set. An unreachable store is a :class:`~intentmesh.errors.StateUnavailable`: at
start-up (:meth:`RedisState.check`), and for every admission while it is down (budgets fail
closed). A settlement that cannot be written is kept and retried; its hold meanwhile keeps the
worst case reserved until ``reservation_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from intentmesh.config import StateConfig
from intentmesh.errors import ConfigurationError, StateUnavailable
from intentmesh.fleet import _lua
from intentmesh.fleet._accounts import (
    Balance,
    Hold,
    Limits,
    budget_refusal,
    day_refusal,
    rate_refusal,
    utc_day,
)

__all__ = ["RedisAccounts", "RedisState", "redacted"]

_log = logging.getLogger("intentmesh.fleet")
_NANO = 1_000_000_000
# (kind, (account hash, expiry zset, holds hash), limit in USD, keep_ms: 0 = forever)
_Account = tuple[str, tuple[str, str, str], float, int]
_DAY_KEEP_MS = 2 * 86_400_000


def redacted(url: str) -> str:
    """The URL without its password (safe for messages and logs)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _import_redis() -> Any:
    try:
        import redis
        import redis.asyncio
    except ImportError:
        raise ConfigurationError(
            "[state] url needs the Redis client: pip install 'intentmesh[redis]'"
        ) from None
    return redis


@dataclass(slots=True)
class _Conn:
    client: Any
    scripts: dict[str, Any]


class RedisState:
    """One Redis deployment: a sync client (background sync) and an async client per loop."""

    def __init__(self, config: StateConfig, url: str) -> None:
        self._redis = _import_redis()
        self.config = config
        self.url = url
        self.where = redacted(url)
        self.prefix = config.prefix
        self.id = uuid.uuid4().hex[:16]  # this process, for half-open trial leases
        self._conns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Conn] = (
            weakref.WeakKeyDictionary()
        )

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def sync_client(self) -> Any:
        timeout = self.config.timeout_s
        return self._redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def check(self) -> None:
        """Ping once; a clear :class:`StateUnavailable` when the store cannot be reached."""
        client = self.sync_client()
        try:
            with self.errors("start-up"):
                client.ping()
        finally:
            client.close()

    def conn(self) -> _Conn:
        """The async client of the running event loop (redis-py binds connections to a loop)."""
        loop = asyncio.get_running_loop()
        found = self._conns.get(loop)
        if found is None:
            timeout = self.config.timeout_s
            client = self._redis.asyncio.Redis.from_url(
                self.url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
            found = self._conns[loop] = _Conn(client, {})
        return found

    def script(self, conn: _Conn, name: str) -> Any:
        found = conn.scripts.get(name)
        if found is None:
            found = conn.scripts[name] = conn.client.register_script(getattr(_lua, name))
        return found

    async def aclose(self) -> None:
        """Close the running loop's client (other loops close theirs)."""
        with contextlib.suppress(RuntimeError):
            conn = self._conns.pop(asyncio.get_running_loop(), None)
            if conn is not None:
                await conn.client.aclose()

    @contextlib.contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Redis failures become :class:`StateUnavailable` naming the store (no password)."""
        try:
            yield
        except self._redis.RedisError as exc:
            raise StateUnavailable(
                f"shared state store {self.where} unavailable during {doing}: "
                f"{type(exc).__name__}: {exc}. Start it, fix [state] url / "
                "$INTENTMESH_STATE_URL, or remove both to run with in-process state"
            ) from None


class RedisAccounts:
    """:class:`~intentmesh.fleet.AccountStore` in Redis: one script to admit, one to settle."""

    def __init__(self, state: RedisState) -> None:
        self.state = state
        self.ttl_ms = max(1, round(state.config.reservation_ttl_s * 1000))
        self._pending: list[tuple[Hold, float, int]] = []

    async def aadmit(self, name: str, limits: Limits, want: float, minimum: float) -> Hold:
        await self._flush()
        hold_id = uuid.uuid4().hex
        now = time.time()
        day = utc_day(now)
        accounts = self._accounts(name, limits, day)
        keys = [self.state.key("rpm", name), self.state.key("tpm", name)]
        argv: list[Any] = [
            hold_id,
            math.floor(want * _NANO) if limits.spends else 0,
            math.ceil(minimum * _NANO) if limits.spends else 0,
            self.ttl_ms,
            limits.requests_per_min or 0,
            limits.tokens_per_min or 0,
            len(accounts),
        ]
        for _, triple, cap, keep in accounts:
            keys.extend(triple)
            argv.extend((math.floor(cap * _NANO), keep))
        conn = self.state.conn()
        with self.state.errors("budget admission"):
            reply = await self.state.script(conn, "ADMIT")(keys=keys, args=argv)
        code = int(reply[0])
        if code == 0:
            amount = int(reply[1]) / _NANO if limits.spends else None
            return Hold(name, hold_id, amount, day, limits)
        raise _refusal(name, limits, accounts, reply, minimum, now)

    async def asettle(self, hold: Hold, actual_usd: float, tokens: int) -> None:
        try:
            await self._settle(hold, actual_usd, tokens)
        except StateUnavailable as exc:
            _log.warning("settlement of %r deferred: %s", hold.account, exc)
            self._pending.append((hold, actual_usd, tokens))

    async def abalance(self, name: str, limits: Limits) -> Balance:
        if limits.budget_usd is None:
            return Balance(None, 0.0, 0.0)
        conn = self.state.conn()
        with self.state.errors("balance"):
            spent, reserved = await self.state.script(conn, "BALANCE")(
                keys=list(self._triple("budget", name))
            )
        return Balance(limits.budget_usd, int(spent) / _NANO, int(reserved) / _NANO)

    async def aclose(self) -> None:
        with contextlib.suppress(StateUnavailable):
            await self._flush()
        await self.state.aclose()

    @property
    def pending(self) -> int:
        """Settlements waiting for the store to come back."""
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------------

    async def _settle(self, hold: Hold, actual_usd: float, tokens: int) -> None:
        accounts = self._accounts(hold.account, hold.limits, hold.day)
        keys = [self.state.key("tpm", hold.account)]
        for _, triple, _, _ in accounts:
            keys.extend(triple)
        reserved = hold.amount or 0.0
        counted = tokens if hold.limits.tokens_per_min is not None else 0
        argv = [
            hold.id,
            math.floor(reserved * _NANO),
            math.ceil(max(actual_usd, 0.0) * _NANO),
            counted,
            self.ttl_ms,
            len(accounts) if hold.amount is not None else 0,
        ]
        if not counted and not argv[5]:
            return
        conn = self.state.conn()
        with self.state.errors("settlement"):
            await self.state.script(conn, "SETTLE")(keys=keys, args=argv)

    async def _flush(self) -> None:
        while self._pending:
            hold, actual, tokens = self._pending[0]
            await self._settle(hold, actual, tokens)
            self._pending.pop(0)

    def _triple(self, kind: str, name: str, *more: str) -> tuple[str, str, str]:
        return (
            self.state.key(kind, name, *more),
            self.state.key(kind, name, *more, "expiry"),
            self.state.key(kind, name, *more, "holds"),
        )

    def _accounts(self, name: str, limits: Limits, day: str) -> list[_Account]:
        out: list[_Account] = []
        if limits.budget_usd is not None:
            out.append(("budget", self._triple("budget", name), limits.budget_usd, 0))
        if limits.usd_per_day is not None:
            out.append(("day", self._triple("day", name, day), limits.usd_per_day, _DAY_KEEP_MS))
        return out


def _refusal(
    name: str,
    limits: Limits,
    accounts: list[_Account],
    reply: list[Any],
    minimum: float,
    now: float,
) -> Exception:
    code = int(reply[0])
    if code in (1, 2):
        kind = "requests_per_min" if code == 1 else "tokens_per_min"
        limit = limits.requests_per_min if code == 1 else limits.tokens_per_min
        return rate_refusal(name, kind, limit or 0, int(reply[1]) / 1000)
    which, _, cap, _ = accounts[int(reply[1]) - 1]
    spent, reserved = int(reply[2]) / _NANO, int(reply[3]) / _NANO
    if which == "day":
        return day_refusal(name, cap, spent, reserved, minimum, now)
    return budget_refusal(name, cap, spent, reserved, minimum)
