"""The SQLite storage under :class:`intentmesh.receipts.Ledger`: rows in, rows out.

This module knows nothing about signatures or JSON; the rest of ``receipts`` builds and checks
the rows. Rows are named tuples: sqlite receives them as plain tuples, readers use field names.
Writers in many threads and processes are serialised by one ``BEGIN IMMEDIATE`` transaction per
append, in which the caller's ``build`` function sees the last row, so the chain cannot fork.
The database runs in WAL mode with ``synchronous=NORMAL``: a commit survives a process crash,
and the last few commits may be lost (never corrupted) if the machine loses power.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from intentmesh._sqlite import use_wal
from intentmesh.errors import ReceiptError

__all__ = ["CheckpointRow", "Row", "RowStore", "SealBuild", "Unsealed"]


class Row(NamedTuple):
    """One stored receipt; ``body`` is its canonical JSON text."""

    seq: int
    id: str
    hash: str
    prev_hash: str
    body: str
    signature: str


Unsealed = list[tuple[int, str]]
"""``(seq, hash)`` of each unsealed receipt, oldest first."""
SealBuild = Callable[
    ["CheckpointRow | None", Unsealed, Callable[[int], str]], list["CheckpointRow"]
]
"""``build(last_checkpoint, unsealed, body_of)``: the checkpoints to insert; ``body_of(seq)``
reads one unsealed receipt's body, in the same transaction."""


class CheckpointRow(NamedTuple):
    """One stored checkpoint: a signed Merkle root over receipts ``first_seq..last_seq``."""

    batch: int
    first_seq: int
    last_seq: int
    hash: str
    body: str
    signature: str


SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS receipts_no_update BEFORE UPDATE ON receipts
BEGIN SELECT RAISE(ABORT, 'the receipt ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS receipts_no_delete BEFORE DELETE ON receipts
BEGIN SELECT RAISE(ABORT, 'the receipt ledger is append-only'); END;
CREATE TABLE IF NOT EXISTS checkpoints (
    batch INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL UNIQUE,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'the receipt ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'the receipt ledger is append-only'); END;
"""

_COLUMNS = "seq, id, hash, prev_hash, body, signature"
_LAST = f"SELECT {_COLUMNS} FROM receipts ORDER BY seq DESC LIMIT 1"
_HEAD = "SELECT seq, hash FROM receipts ORDER BY seq DESC LIMIT 1"
_GET = f"SELECT {_COLUMNS} FROM receipts WHERE id = ?"
_PAGE = f"SELECT {_COLUMNS} FROM receipts WHERE seq > ? ORDER BY seq LIMIT ?"
_INSERT = f"INSERT INTO receipts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_CP_COLUMNS = "batch, first_seq, last_seq, hash, body, signature"
_CP_LAST = f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY batch DESC LIMIT 1"
_CP_FOR = f"SELECT {_CP_COLUMNS} FROM checkpoints WHERE first_seq <= ? AND last_seq >= ?"
_CP_ALL = f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY batch"
_CP_INSERT = f"INSERT INTO checkpoints ({_CP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_PENDING = "SELECT seq, hash FROM receipts WHERE seq > ? AND seq <= ? ORDER BY seq"
_BODY = "SELECT body FROM receipts WHERE seq = ?"
_HASHES = "SELECT hash FROM receipts WHERE seq >= ? AND seq <= ? ORDER BY seq"


def _insert_next(conn: sqlite3.Connection, build: Callable[[int, str | None], Row]) -> Row:
    """Insert ``build(last_seq, last_hash)`` after the chain's head, inside the caller's write
    transaction (which makes reading the head and inserting one step)."""
    head = conn.execute(_HEAD).fetchone()  # (seq, hash) or None
    row = build(head[0], head[1]) if head else build(0, None)
    conn.execute(_INSERT, row)
    return row


def _would_wait(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY/LOCKED: another connection holds a lock this one would have to wait for."""
    text = str(exc)
    return "locked" in text or "busy" in text


class RowStore:
    """One SQLite connection guarded by a lock; reopened after ``fork``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pid = -1
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._nowait: sqlite3.Connection | None = None
        self._nowait_pid = -1
        self._closed = False
        self._connect()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        try:
            use_wal(conn, self.path, BUSY_TIMEOUT_S)
        except sqlite3.OperationalError:
            conn.close()
            raise
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ReceiptError(
                    f"{self.path}: ledger schema {version} is newer than this intentmesh "
                    f"({SCHEMA_VERSION}); upgrade intentmesh"
                )
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            conn.close()
            raise
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None or self._pid != os.getpid():
            if self._closed:
                raise ReceiptError(f"{self.path}: the ledger is closed")
            # A connection must not cross fork(); the child opens its own.
            self._lock = threading.Lock()
            conn = self._connect()
        return conn

    def _nowait_connection(self) -> sqlite3.Connection:
        """A second connection that never waits for another process's lock (busy_timeout 0)
        and never checkpoints the WAL; an in-memory ledger has only the one (no other
        process can reach it)."""
        main = self._connection()
        if self.path == ":memory:":
            return main
        conn = self._nowait
        if conn is None or self._nowait_pid != self._pid:
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA synchronous = NORMAL")
            # No WAL checkpoints (and their fsync) here, on the caller's thread: the writer
            # thread's connection runs them when it commits (it seals every Merkle batch).
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._nowait, self._nowait_pid = conn, self._pid
        return conn

    def append(self, build: Callable[[int, str | None], Row]) -> Row:
        """Insert ``build(last_seq, last_hash)`` in the same write transaction that read them."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = _insert_next(conn, build)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return row

    def try_append(self, build: Callable[[int, str | None], Row]) -> Row | None:
        """:meth:`append` if it need not wait, else None (nothing written): another thread of
        this process is writing, or another process holds the ledger's write lock."""
        lock = self._lock
        if not lock.acquire(blocking=False):
            return None
        try:
            conn = self._nowait_connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _would_wait(exc):
                    return None
                raise
            try:
                row = _insert_next(conn, build)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _would_wait(exc):
                    return None  # rolled back: nothing written, the caller may wait elsewhere
                raise
        finally:
            lock.release()
        return row

    @contextmanager
    def writing(self) -> Iterator[Callable[[Callable[[int, str | None], Row]], Row]]:
        """One write transaction for many rows (group commit): yields ``add(build)``, which
        inserts ``build(last_seq, last_hash)`` chained after the row added before it. Commits
        when the block ends, rolls every row back if it raises."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                head = conn.execute(_HEAD).fetchone()
                last: list[Any] = [head[0], head[1]] if head else [0, None]

                def add(build: Callable[[int, str | None], Row]) -> Row:
                    row = build(last[0], last[1])
                    conn.execute(_INSERT, row)
                    last[0], last[1] = row.seq, row.hash
                    return row

                yield add
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def seal(self, build: SealBuild, upto: int | None = None) -> list[CheckpointRow]:
        """Insert ``build(last_checkpoint, unsealed, body_of)`` in the transaction that read
        them (:data:`SealBuild`)."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = _checkpoint_row(conn.execute(_CP_LAST).fetchone())
                after = last.last_seq if last else 0
                limit = upto if upto is not None else 2**62
                pending = conn.execute(_PENDING, (after, limit)).fetchall()

                def body_of(seq: int) -> str:
                    return str(conn.execute(_BODY, (seq,)).fetchone()[0])

                made = build(last, pending, body_of) if pending else []
                conn.executemany(_CP_INSERT, made)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return made

    def checkpoint_for(self, seq: int) -> CheckpointRow | None:
        with self._lock:
            found = self._connection().execute(_CP_FOR, (seq, seq)).fetchone()
        return _checkpoint_row(found)

    def checkpoints(self) -> list[CheckpointRow]:
        with self._lock:
            found = self._connection().execute(_CP_ALL).fetchall()
        return [CheckpointRow._make(r) for r in found]

    def last_checkpoint(self) -> CheckpointRow | None:
        with self._lock:
            found = self._connection().execute(_CP_LAST).fetchone()
        return _checkpoint_row(found)

    def hashes(self, first_seq: int, last_seq: int) -> list[str]:
        with self._lock:
            found = self._connection().execute(_HASHES, (first_seq, last_seq)).fetchall()
        return [h for (h,) in found]

    def insert_into_empty(
        self, rows: Iterable[Row], checkpoints: Callable[[], Iterable[CheckpointRow]] = list
    ) -> int:
        """Insert ``rows``, then ``checkpoints()``, in one transaction into an empty ledger."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute(_HEAD).fetchone() is not None:
                    raise ReceiptError(f"{self.path}: import needs an empty ledger")
                count = 0
                for row in rows:
                    conn.execute(_INSERT, row)
                    count += 1
                conn.executemany(_CP_INSERT, checkpoints())
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return count

    def get(self, receipt_id: str) -> Row | None:
        with self._lock:
            found = self._connection().execute(_GET, (receipt_id,)).fetchone()
        return _row(found)

    def last(self) -> Row | None:
        with self._lock:
            found = self._connection().execute(_LAST).fetchone()
        return _row(found)

    def count(self) -> int:
        with self._lock:
            n: int = self._connection().execute("SELECT count(*) FROM receipts").fetchone()[0]
        return n

    def rows(self, page: int = 1000) -> Iterator[Row]:
        """Every row in ``seq`` order, read a page at a time so appends are not held up."""
        after = -1
        while True:
            with self._lock:
                batch = self._connection().execute(_PAGE, (after, page)).fetchall()
            yield from map(Row._make, batch)
            if len(batch) < page:
                return
            after = batch[-1][0]  # the seq column of a raw sqlite row

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for conn in (self._conn, self._nowait):
                if conn is not None and self._pid == os.getpid():
                    conn.close()
            self._conn = self._nowait = None


def _row(found: tuple[Any, ...] | None) -> Row | None:
    return Row._make(found) if found is not None else None


def _checkpoint_row(found: tuple[Any, ...] | None) -> CheckpointRow | None:
    return CheckpointRow._make(found) if found is not None else None
