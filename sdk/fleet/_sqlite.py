"""Embedded USD budgets: reserve a request's worst case before dispatch, settle the real cost after.

Balances live in SQLite (``:memory:`` by default; a file shares them between workers and keeps
them across restarts). A reservation is one conditional ``UPDATE``, so concurrent requests can
never together spend more than the budget.
"""

from __future__ import annotations

import sqlite3
import threading

from intentmesh._sqlite import use_wal

__all__ = ["SpendBook"]

_EPS = 1e-12
_BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (
    name TEXT PRIMARY KEY,
    budget REAL NOT NULL,
    spent REAL NOT NULL DEFAULT 0,
    reserved REAL NOT NULL DEFAULT 0
)
"""


class SpendBook:
    """Spent and reserved USD per key; only keys with a budget are tracked."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        use_wal(self._db, path, _BUSY_TIMEOUT_S)
        self._db.execute(_SCHEMA)

    def open_account(self, name: str, budget: float) -> None:
        """Create the account, or update its budget (spend so far is kept)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO budgets(name, budget) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET budget = excluded.budget",
                (name, budget),
            )

    def release_all_reservations(self) -> None:
        """Forget reservations of requests that died with their process (call at start-up)."""
        with self._lock:
            self._db.execute("UPDATE budgets SET reserved = 0")

    def try_reserve(self, name: str, amount: float) -> bool:
        """Reserve ``amount`` if spent + reserved + amount stays within the budget."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE budgets SET reserved = reserved + ? "
                "WHERE name = ? AND spent + reserved + ? <= budget + ?",
                (amount, name, amount, _EPS),
            )
            return cur.rowcount == 1

    def settle(self, name: str, reserved: float, actual: float) -> None:
        """Turn a reservation into spend (``actual`` is capped at what was reserved)."""
        with self._lock:
            self._db.execute(
                "UPDATE budgets SET reserved = MAX(reserved - ?, 0), spent = spent + ? "
                "WHERE name = ?",
                (reserved, min(actual, reserved), name),
            )

    def balance(self, name: str) -> tuple[float, float, float]:
        """``(budget, spent, reserved)`` for ``name``."""
        with self._lock:
            row = self._db.execute(
                "SELECT budget, spent, reserved FROM budgets WHERE name = ?", (name,)
            ).fetchone()
        if row is None:
            raise KeyError(name)
        return float(row[0]), float(row[1]), float(row[2])

    def left(self, name: str) -> float:
        budget, spent, reserved = self.balance(name)
        return max(budget - spent - reserved, 0.0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
