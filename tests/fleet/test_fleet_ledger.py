"""Receipts in PostgreSQL: the same ledger (chain, checkpoints, proofs, export, CLI verify),
appended to by many processes at once. Each test gets its own schema, dropped after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_support import INTENTMESH, MODEL, backend_toml

from intentmesh import Gateway, ReceiptError
from intentmesh.config import parse_config
from intentmesh.receipts import Ledger, SigningKey, verify_inclusion
from intentmesh.testing import FakeOpenAIProvider

APPEND_SCRIPT = """
import sys
from intentmesh.receipts import Ledger, SigningKey
key = SigningKey.generate()
with Ledger(sys.argv[1], batch_size=16) as ledger:
    for i in range(int(sys.argv[2])):
        ledger.append({"worker": sys.argv[3], "i": i}, key)
"""



def test_chain_checkpoints_proofs_and_export_work_as_on_sqlite(
    pg_url: str, tmp_path: Path
) -> None:
    key = SigningKey.generate()
    with Ledger(pg_url, batch_size=4) as ledger:
        made = [ledger.append({"n": i}, key) for i in range(10)]
        assert len(ledger) == 10 and ledger.last() == made[-1]
        assert [r.seq for r in ledger] == list(range(1, 11))
        assert ledger.verify().ok
        proof = ledger.prove(made[9].id, key)  # seals the last, partial batch
        assert verify_inclusion(proof, key.public_key_hex())
        assert [cp.last_seq for cp in ledger.checkpoints()] == [4, 8, 10]
        assert ledger.get(made[3].id) == made[3]
        exported = tmp_path / "receipts.jsonl"
        assert ledger.export_jsonl(exported) == 10
        assert "postgresql://" in ledger.path and "options" not in ledger.path
    with Ledger(":memory:") as copy:
        assert copy.import_jsonl(exported, {key.key_id: key.public_key_hex()}) == 10
        assert copy.verify().ok and len(copy.checkpoints()) == 3


def test_the_tables_are_append_only_and_tampering_is_found(pg_url: str) -> None:
    import psycopg

    key = SigningKey.generate()
    with Ledger(pg_url) as ledger:
        victim = [ledger.append({"n": i}, key) for i in range(3)][1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("UPDATE receipts SET body = body WHERE seq = 2")
        conn.execute("ALTER TABLE receipts DISABLE TRIGGER receipts_append_only")
        conn.execute("UPDATE receipts SET body = replace(body, '\"n\":1', '\"n\":7') WHERE seq = 2")
    with Ledger(pg_url) as ledger:
        report = ledger.verify()
    assert not report.ok and report.first_bad_id == victim.id


def test_many_processes_append_to_one_unforked_chain(pg_url: str, tmp_path: Path) -> None:
    script = tmp_path / "append.py"
    script.write_text(APPEND_SCRIPT)
    workers = [
        subprocess.Popen([sys.executable, str(script), pg_url, "25", f"w{i}"]) for i in range(4)
    ]
    for proc in workers:
        assert proc.wait(timeout=180) == 0
    with Ledger(pg_url) as ledger:
        receipts = list(ledger)
        assert [r.seq for r in receipts] == list(range(1, 101))
        assert len({r.body["key_id"] for r in receipts}) == 4  # four signers, one chain
        assert ledger.verify().ok
        sealed = ledger.checkpoints()
    pairs = zip(sealed, sealed[1:], strict=False)
    assert sealed and all(b.first_seq == a.last_seq + 1 for a, b in pairs)


def test_cli_verifies_a_postgres_ledger(pg_url: str) -> None:
    key = SigningKey.generate()
    with Ledger(pg_url) as ledger:
        for i in range(3):
            ledger.append({"n": i}, key)
    done = subprocess.run(
        [INTENTMESH, "receipts", "verify", "--ledger", pg_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True


def test_gateway_writes_receipts_to_postgres(
    pg_url: str, provider: FakeOpenAIProvider, tmp_path: Path
) -> None:
    text = f'[receipts]\nledger = "{pg_url}"\nkey = "{tmp_path / "k.pem"}"\n'
    with Gateway(parse_config(text + backend_toml("fake", provider.base_url))) as gw:
        result = gw.infer(model=MODEL, prompt="hi", max_tokens=8)
        assert result.receipt_id and gw.ledger.get(result.receipt_id) is not None
        assert gw.verify_ledger().ok


def test_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(ReceiptError, match="cannot open the PostgreSQL ledger at postgresql://"):
        Ledger("postgresql://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(ReceiptError) as info:
        Ledger("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(info.value)
