"""Opening SQLite files that several processes share (ledgers, budget books)."""

from __future__ import annotations

import sqlite3
import time

__all__ = ["use_wal"]


def use_wal(conn: sqlite3.Connection, path: str, timeout_s: float) -> None:
    """Switch ``conn`` to WAL, retried within ``timeout_s``.

    Switching while another connection writes fails at once with "database is locked" (SQLite
    skips its busy handler there), so processes that open a new file together must retry.
    """
    if path == ":memory:":
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.01)
