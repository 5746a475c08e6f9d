"""The background receipt writer over a PostgreSQL ledger (no group transaction there: it
commits receipt by receipt, on the writer's thread)."""

from __future__ import annotations

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import Ledger, ReceiptWriter, SigningKey


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
