"""The background receipt writer over a PostgreSQL ledger (no group transaction there: it
commits receipt by receipt, on the writer's thread)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fleet_support import POSTGRES_URL, unavailable

from intentmesh.errors import ReceiptError
from intentmesh.receipts import Ledger, SigningKey
from intentmesh.receipts._writer import ReceiptWriter


@pytest.fixture
def pg_url() -> Iterator[str]:
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install 'intentmesh[postgres]')")
    schema = f"imtest_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        unavailable(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    admin.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{joiner}options={quote(f'-csearch_path={schema}')}"
    admin.execute(f"DROP SCHEMA {schema} CASCADE")
    admin.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_writer_commits_every_receipt_to_postgres(pg_url: str, mode: str) -> None:
    key = SigningKey.generate()
    with Ledger(pg_url, batch_size=4) as ledger:
        writer = ReceiptWriter(ledger, key, mode=mode)  # type: ignore[arg-type]
        futures = [writer.submit({"n": i}) for i in range(9)]
        bad = writer.submit({"password": "hunter2"})
        seqs = [f.result(timeout=60).seq for f in futures]
        with pytest.raises(ReceiptError, match="secret"):
            bad.result(timeout=60)
        writer.close()
        assert seqs == list(range(1, 10))
        with Ledger(pg_url) as other:  # another connection sees them all, committed
            assert len(other) == 9 and other.verify().ok
        sealed = ledger.checkpoints()  # sealed after commits; how depends on the grouping
        assert sealed and sealed[0].first_seq == 1 and ledger.verify().ok
