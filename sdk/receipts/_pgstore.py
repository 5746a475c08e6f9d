"""The PostgreSQL storage under :class:`intentmesh.receipts.Ledger` (``ledger = "postgresql://..."``).

Same rows and the same interface as the SQLite :class:`~intentmesh.receipts._store.RowStore`,
so the ledger, Merkle checkpoints, inclusion proofs, export/import and ``intentmesh receipts
verify`` work unchanged. Many replicas append concurrently: each append is one transaction that
takes a transaction-level advisory lock, reads the head and inserts the next row, so the chain
cannot fork (every signer's receipts go into the one chain, as on SQLite). The tables live in
the connection's schema (``?options=-csearch_path%3Dmyschema`` picks one) and are append-only
(triggers refuse UPDATE and DELETE). Needs the ``postgres`` extra (psycopg 3).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from intentmesh.errors import ReceiptError
from intentmesh.receipts._store import CheckpointRow, Row, SealBuild

__all__ = ["PgRowStore", "is_postgres_url"]

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS receipts (
        seq BIGINT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        body TEXT NOT NULL,
        signature TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS checkpoints (
        batch BIGINT PRIMARY KEY,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL UNIQUE,
        hash TEXT NOT NULL,
        body TEXT NOT NULL,
        signature TEXT NOT NULL)""",
    """CREATE OR REPLACE FUNCTION intentmesh_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION 'the receipt ledger is append-only'; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS receipts_append_only ON receipts",
    """CREATE TRIGGER receipts_append_only BEFORE UPDATE OR DELETE ON receipts
        FOR EACH ROW EXECUTE FUNCTION intentmesh_append_only()""",
    "DROP TRIGGER IF EXISTS checkpoints_append_only ON checkpoints",
    """CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints
        FOR EACH ROW EXECUTE FUNCTION intentmesh_append_only()""",
]

# One writer at a time per schema: the chain head is read and extended under this lock.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.intentmesh_ledger'))"
_COLUMNS = "seq, id, hash, prev_hash, body, signature"
_LAST = f"SELECT {_COLUMNS} FROM receipts ORDER BY seq DESC LIMIT 1"
_HEAD = "SELECT seq, hash FROM receipts ORDER BY seq DESC LIMIT 1"
_GET = f"SELECT {_COLUMNS} FROM receipts WHERE id = %s"
_PAGE = f"SELECT {_COLUMNS} FROM receipts WHERE seq > %s ORDER BY seq LIMIT %s"
_INSERT = f"INSERT INTO receipts ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
_CP_COLUMNS = "batch, first_seq, last_seq, hash, body, signature"
_CP_LAST = f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY batch DESC LIMIT 1"
_CP_FOR = f"SELECT {_CP_COLUMNS} FROM checkpoints WHERE first_seq <= %s AND last_seq >= %s"
_CP_ALL = f"SELECT {_CP_COLUMNS} FROM checkpoints ORDER BY batch"
_CP_INSERT = f"INSERT INTO checkpoints ({_CP_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
_PENDING = "SELECT seq, hash FROM receipts WHERE seq > %s AND seq <= %s ORDER BY seq"
_BODY = "SELECT body FROM receipts WHERE seq = %s"
_HASHES = "SELECT hash FROM receipts WHERE seq >= %s AND seq <= %s ORDER BY seq"


def is_postgres_url(path: object) -> bool:
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class PgRowStore:
    """One psycopg connection guarded by a lock; reopened after ``fork``."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ReceiptError(
                "a postgresql:// ledger needs psycopg: pip install 'intentmesh[postgres]'"
            ) from None
        self._psycopg = psycopg
        self.url = url
        self.path = _redacted(url)  # what messages show (never the password)
        self._pid = -1
        self._lock = threading.Lock()
        self._conn: Any = None
        self._closed = False
        self._connect()

    def _connect(self) -> Any:
        try:
            conn = self._psycopg.connect(self.url, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise ReceiptError(
                f"cannot open the PostgreSQL ledger at {self.path}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from None
        with conn.transaction():
            conn.execute(_LOCK)
            for statement in _SCHEMA:
                conn.execute(statement)
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _connection(self) -> Any:
        conn = self._conn
        if conn is None or self._pid != os.getpid() or conn.closed:
            if self._closed:
                raise ReceiptError(f"{self.path}: the ledger is closed")
            self._lock = threading.Lock()  # a connection must not cross fork()
            conn = self._connect()
        return conn

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                return list(conn.execute(sql, params).fetchall())

    def append(self, build: Callable[[int, str | None], Row]) -> Row:
        """Insert ``build(last_seq, last_hash)`` in the same transaction that read them."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute(_LOCK)
                head = conn.execute(_HEAD).fetchone()
                row = build(int(head[0]), head[1]) if head else build(0, None)
                conn.execute(_INSERT, tuple(row))
        return row

    def seal(self, build: SealBuild, upto: int | None = None) -> list[CheckpointRow]:
        """Insert ``build(last_checkpoint, unsealed, body_of)`` in the transaction that read
        them (:data:`~intentmesh.receipts._store.SealBuild`)."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute(_LOCK)
                last = _checkpoint_row(conn.execute(_CP_LAST).fetchone())
                after = last.last_seq if last else 0
                limit = upto if upto is not None else 2**62
                pending = [(int(seq), str(h)) for seq, h in conn.execute(_PENDING, (after, limit))]

                def body_of(seq: int) -> str:
                    found = conn.execute(_BODY, (seq,)).fetchone()
                    assert found is not None  # read in this transaction: the ledger never deletes
                    return str(found[0])

                made = build(last, pending, body_of) if pending else []
                for cp in made:
                    conn.execute(_CP_INSERT, tuple(cp))
        return made

    def checkpoint_for(self, seq: int) -> CheckpointRow | None:
        found = self._read(_CP_FOR, (seq, seq))
        return _checkpoint_row(found[0] if found else None)

    def checkpoints(self) -> list[CheckpointRow]:
        return [CheckpointRow._make(r) for r in self._read(_CP_ALL)]

    def last_checkpoint(self) -> CheckpointRow | None:
        found = self._read(_CP_LAST)
        return _checkpoint_row(found[0] if found else None)

    def hashes(self, first_seq: int, last_seq: int) -> list[str]:
        return [h for (h,) in self._read(_HASHES, (first_seq, last_seq))]

    def insert_into_empty(
        self, rows: Iterable[Row], checkpoints: Callable[[], Iterable[CheckpointRow]] = list
    ) -> int:
        """Insert ``rows``, then ``checkpoints()``, in one transaction into an empty ledger."""
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute(_LOCK)
                if conn.execute(_HEAD).fetchone() is not None:
                    raise ReceiptError(f"{self.path}: import needs an empty ledger")
                count = 0
                for row in rows:
                    conn.execute(_INSERT, tuple(row))
                    count += 1
                for cp in checkpoints():
                    conn.execute(_CP_INSERT, tuple(cp))
        return count

    def get(self, receipt_id: str) -> Row | None:
        found = self._read(_GET, (receipt_id,))
        return Row._make(found[0]) if found else None

    def last(self) -> Row | None:
        found = self._read(_LAST)
        return Row._make(found[0]) if found else None

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM receipts")[0][0])

    def rows(self, page: int = 1000) -> Iterator[Row]:
        """Every row in ``seq`` order, a page at a time."""
        after = -1
        while True:
            batch = self._read(_PAGE, (after, page))
            yield from map(Row._make, batch)
            if len(batch) < page:
                return
            after = batch[-1][0]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _checkpoint_row(found: tuple[Any, ...] | None) -> CheckpointRow | None:
    return CheckpointRow._make(found) if found is not None else None
