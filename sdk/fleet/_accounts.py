"""Named accounts: a USD budget and rate limits (requests/min, tokens/min, USD/day) per name.

A request is *admitted* before dispatch: its rate windows are checked and its worst-case cost is
reserved, in one step; it is *settled* afterwards with the real cost and tokens. The embedded
store (:class:`LocalAccounts`) keeps budgets in a :class:`SpendBook` and rate windows in memory;
the fleet store (:class:`~intentmesh.fleet._redis.RedisAccounts`) keeps all of it in Redis.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from intentmesh.errors import LimitExceeded
from intentmesh.fleet._sqlite import SpendBook

__all__ = [
    "AccountStore",
    "Balance",
    "Hold",
    "Limits",
    "LocalAccounts",
    "budget_refusal",
    "day_refusal",
    "rate_refusal",
    "seconds_to_midnight",
    "utc_day",
]

_EPS = 1e-12
WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What a key or a ``[[limits]]`` entry declares (None: no such limit)."""

    budget_usd: float | None = None
    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    usd_per_day: float | None = None

    @property
    def spends(self) -> bool:
        """Whether admission reserves money (a budget or a daily USD limit)."""
        return self.budget_usd is not None or self.usd_per_day is not None

    @property
    def any(self) -> bool:
        return self.spends or self.requests_per_min is not None or self.tokens_per_min is not None


@dataclass(frozen=True, slots=True)
class Hold:
    """An admitted request: ``amount`` USD reserved (None: nothing reserved)."""

    account: str
    id: str
    amount: float | None
    day: str
    limits: Limits


@dataclass(frozen=True, slots=True)
class Balance:
    budget: float | None
    spent: float
    reserved: float


class AccountStore(Protocol):
    """Where accounts live: in this process (embedded) or in Redis (fleet)."""

    async def aadmit(self, name: str, limits: Limits, want: float, minimum: float) -> Hold:
        """Check the rate windows and reserve up to ``want`` USD (at least ``minimum``).

        Raises :class:`~intentmesh.errors.LimitExceeded` when a limit refuses.
        """
        ...

    async def asettle(self, hold: Hold, actual_usd: float, tokens: int) -> None:
        """Turn the hold into spend (capped at the reservation) and count the tokens."""
        ...

    async def abalance(self, name: str, limits: Limits) -> Balance: ...

    async def aclose(self) -> None: ...


class LocalAccounts:
    """Embedded accounts: budgets in a :class:`SpendBook`, rate windows in this process."""

    def __init__(
        self, book: SpendBook | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.book = book or SpendBook()
        self._clock = clock
        self._lock = threading.Lock()
        self._opened: dict[str, float] = {}
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._days: dict[tuple[str, str], list[float]] = {}  # [spent, reserved]

    def open_account(self, name: str, budget: float) -> None:
        if self._opened.get(name) != budget:
            self.book.open_account(name, budget)
            self._opened[name] = budget

    async def aadmit(self, name: str, limits: Limits, want: float, minimum: float) -> Hold:
        with self._lock:
            now = self._clock()
            self._check_rates(name, limits, now)
            day = utc_day(now)
            amount = self._reserve(name, limits, day, want, minimum) if limits.spends else None
            if limits.requests_per_min is not None:
                self._requests.setdefault(name, deque()).append(now)
        return Hold(name, uuid.uuid4().hex, amount, day, limits)

    async def asettle(self, hold: Hold, actual_usd: float, tokens: int) -> None:
        with self._lock:
            if hold.amount is not None:
                charge = min(actual_usd, hold.amount)
                if hold.limits.budget_usd is not None:
                    self.book.settle(hold.account, hold.amount, actual_usd)
                if hold.limits.usd_per_day is not None:
                    slot = self._days.setdefault((hold.account, hold.day), [0.0, 0.0])
                    slot[1] = max(slot[1] - hold.amount, 0.0)
                    slot[0] += charge
            if hold.limits.tokens_per_min is not None and tokens:
                self._tokens.setdefault(hold.account, deque()).append((self._clock(), tokens))

    async def abalance(self, name: str, limits: Limits) -> Balance:
        if limits.budget_usd is None:
            return Balance(None, 0.0, 0.0)
        self.open_account(name, limits.budget_usd)
        budget, spent, reserved = self.book.balance(name)
        return Balance(budget, spent, reserved)

    async def aclose(self) -> None:
        self.book.close()

    # -- internals ---------------------------------------------------------------------------

    def _check_rates(self, name: str, limits: Limits, now: float) -> None:
        if limits.requests_per_min is not None:
            seen = _trimmed(self._requests.setdefault(name, deque()), now)
            if len(seen) >= limits.requests_per_min:
                wait = seen[len(seen) - limits.requests_per_min] + WINDOW_S - now
                raise rate_refusal(name, "requests_per_min", limits.requests_per_min, wait)
        if limits.tokens_per_min is not None:
            used = self._tokens.setdefault(name, deque())
            while used and used[0][0] <= now - WINDOW_S:
                used.popleft()
            total = sum(n for _, n in used)
            if total >= limits.tokens_per_min:
                wait = _tokens_wait(used, total, limits.tokens_per_min, now)
                raise rate_refusal(name, "tokens_per_min", limits.tokens_per_min, wait)

    def _reserve(self, name: str, limits: Limits, day: str, want: float, minimum: float) -> float:
        amount = want
        if limits.usd_per_day is not None:
            spent, reserved = self._days.setdefault((name, day), [0.0, 0.0])
            amount = min(amount, limits.usd_per_day - spent - reserved)
            if amount + _EPS < minimum:
                raise day_refusal(name, limits.usd_per_day, spent, reserved, minimum, self._clock())
        if limits.budget_usd is not None:
            self.open_account(name, limits.budget_usd)
            amount = self._reserve_budget(name, limits.budget_usd, amount, minimum)
        if limits.usd_per_day is not None:
            self._days[(name, day)][1] += amount
        return amount

    def _reserve_budget(self, name: str, budget: float, want: float, minimum: float) -> float:
        for _ in range(3):  # another worker sharing the SQLite file may take the money first
            amount = min(want, self.book.left(name))
            if amount + _EPS < minimum:
                break
            if self.book.try_reserve(name, amount):
                return amount
        _, spent, reserved = self.book.balance(name)
        raise budget_refusal(name, budget, spent, reserved, minimum)


def _trimmed(seen: deque[float], now: float) -> deque[float]:
    while seen and seen[0] <= now - WINDOW_S:
        seen.popleft()
    return seen


def _tokens_wait(used: deque[tuple[float, int]], total: int, limit: int, now: float) -> float:
    for at, n in used:
        total -= n
        if total < limit:
            return at + WINDOW_S - now
    return WINDOW_S


def utc_day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d")


def seconds_to_midnight(now: float) -> float:
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), dt.UTC)
    return max(midnight.timestamp() - now, 1.0)


def rate_refusal(name: str, kind: str, limit: int, wait_s: float) -> LimitExceeded:
    unit = "requests" if kind == "requests_per_min" else "tokens"
    wait = max(wait_s, 0.001)
    return LimitExceeded(
        f"limit {name!r}: {limit} {unit} per minute reached; retry in {wait:.3g} s",
        limit=name,
        kind=kind,
        retry_after=wait,
    )


def budget_refusal(
    name: str, budget: float, spent: float, reserved: float, cheapest: float
) -> LimitExceeded:
    left = max(budget - spent - reserved, 0.0)
    return LimitExceeded(
        f"{name!r} has ${left:.6g} of its ${budget:.6g} budget left (${spent:.6g} spent, "
        f"${reserved:.6g} reserved by requests in flight); this request's cheapest worst case "
        f"is ${cheapest:.6g}",
        limit=name,
        kind="budget",
    )


def day_refusal(
    name: str, per_day: float, spent: float, reserved: float, cheapest: float, now: float
) -> LimitExceeded:
    left = max(per_day - spent - reserved, 0.0)
    return LimitExceeded(
        f"{name!r} has ${left:.6g} of its ${per_day:.6g} per-day limit left today (UTC); this "
        f"request's cheapest worst case is ${cheapest:.6g}",
        limit=name,
        kind="usd_per_day",
        retry_after=seconds_to_midnight(now),
    )
