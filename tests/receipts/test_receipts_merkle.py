"""Merkle checkpoints: sealing, inclusion proofs without the ledger, export/import with roots,
and tampering (deletion, insertion, reordering, rewriting) that the roots expose."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import (
    InclusionProof,
    Ledger,
    SigningKey,
    inclusion_problem,
    verify_inclusion,
)
from intentmesh.receipts._merkle import inclusion_path, merkle_root, verify_path


def fill(ledger: Ledger, key: SigningKey, n: int) -> None:
    for i in range(n):
        ledger.append({"i": i, "cost_usd": 0.001 * i}, key)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 33])
def test_every_leaf_has_a_path_to_the_root(n: int) -> None:
    values = [bytes([i]) * 32 for i in range(n)]
    root = merkle_root(values)
    for i in range(n):
        path = inclusion_path(values, i)
        assert len(path) <= max(1, (n - 1).bit_length())
        assert verify_path(values[i], i, n, path, root)
        if n > 1:
            assert not verify_path(values[(i + 1) % n], i, n, path, root)
            assert not verify_path(values[i], (i + 1) % n, n, path, root)


def test_batches_seal_automatically_and_proofs_are_short(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3", batch_size=8) as ledger:
        fill(ledger, key, 20)
        cps = ledger.checkpoints()
        assert [(c.first_seq, c.last_seq) for c in cps] == [(1, 8), (9, 16)]
        receipts = list(ledger)
        proof = ledger.prove(receipts[10].id)
        assert len(proof.path) == 3 and proof.checkpoint.batch == 2
        assert verify_inclusion(proof, key.public_key_hex())
        with pytest.raises(ReceiptError, match="not sealed"):
            ledger.prove(receipts[18].id)
        tail = ledger.prove(receipts[18].id, key)  # seals the tail
        assert tail.checkpoint.last_seq == 19 and verify_inclusion(tail, key)
        assert ledger.verify({key.key_id: key.public_key_hex()})


def test_proof_round_trips_as_json_and_needs_no_ledger(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        fill(ledger, key, 5)
        rid = list(ledger)[3].id
        text = ledger.prove(rid, key).to_json()
    (tmp_path / "l.sqlite3").unlink()
    assert verify_inclusion(text, key.public_key_pem())
    assert verify_inclusion(json.loads(text)) and verify_inclusion(InclusionProof.from_json(text))
    assert not verify_inclusion(text, SigningKey.generate().public_key_hex())


def _mutations(proof: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for mutate in (
        lambda p: p["receipt"]["body"].__setitem__("cost_usd", 9),
        lambda p: p["checkpoint"]["body"].__setitem__("root", "sha256:" + "1" * 64),
        lambda p: p.__setitem__("leaf_index", p["leaf_index"] ^ 1),
        lambda p: p["path"].__setitem__(0, "00" * 32),
        lambda p: p["path"].pop(),
        lambda p: p["checkpoint"]["body"].__setitem__("size", 99),
        lambda p: p.__setitem__("path", "nope"),
    ):
        copy = json.loads(json.dumps(proof))
        mutate(copy)
        out.append(copy)
    return out


def test_a_changed_proof_fails(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        fill(ledger, key, 6)
        proof = ledger.prove(list(ledger)[2].id, key).to_dict()
    for bad in _mutations(proof):
        assert not verify_inclusion(bad), bad
        assert inclusion_problem(bad) is not None


def test_export_import_keeps_roots(tmp_path: Path) -> None:
    key = SigningKey.generate()
    out = io.StringIO()
    with Ledger(tmp_path / "a.sqlite3", batch_size=4) as ledger:
        fill(ledger, key, 10)
        ledger.seal(key)
        ledger.export_jsonl(out)
    lines = out.getvalue().splitlines()
    assert sum('"checkpoint"' in line[:14] for line in lines) == 3 and len(lines) == 13
    with Ledger(tmp_path / "b.sqlite3", batch_size=4) as copy:
        assert copy.import_jsonl(io.StringIO(out.getvalue())) == 10
        assert len(copy.checkpoints()) == 3 and copy.verify(), copy.verify()
        assert verify_inclusion(copy.prove(list(copy)[9].id), key)
    rewritten = [json.loads(x) for x in lines]
    rewritten[4]["checkpoint"]["body"]["root"] = "sha256:" + "2" * 64
    with Ledger(tmp_path / "c.sqlite3") as bad, pytest.raises(ReceiptError, match="line 5"):
        bad.import_jsonl(io.StringIO("\n".join(json.dumps(x) for x in rewritten)))
    dropped = [x for x in lines if '"batch":2' not in x]
    with Ledger(tmp_path / "d.sqlite3") as bad, pytest.raises(ReceiptError, match="batch 3"):
        bad.import_jsonl(io.StringIO("\n".join(dropped)))


# -- tampering with the file itself -------------------------------------------------------


def raw(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for t in ("receipts_no_update", "receipts_no_delete", "checkpoints_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {t}")
    return conn


@pytest.fixture
def sealed(tmp_path: Path) -> tuple[Path, SigningKey]:
    key = SigningKey.generate()
    path = tmp_path / "t.sqlite3"
    with Ledger(path, batch_size=4) as ledger:
        fill(ledger, key, 12)
    return path, key


def report_of(path: Path, key: SigningKey | None = None) -> Any:
    with Ledger(path) as ledger:
        return ledger.verify({key.key_id: key.public_key_hex()} if key else None)


def test_sealed_ledger_verifies(sealed: tuple[Path, SigningKey]) -> None:
    path, key = sealed
    assert report_of(path, key).count == 12


def test_truncating_the_end_is_caught_by_the_last_root(sealed: tuple[Path, SigningKey]) -> None:
    path, key = sealed
    raw(path).execute("DELETE FROM receipts WHERE seq > 10")
    report = report_of(path, key)
    assert not report and "removed from the end" in str(report.problem)


def test_deleting_a_checkpoint_is_caught(sealed: tuple[Path, SigningKey]) -> None:
    path, _ = sealed
    raw(path).execute("DELETE FROM checkpoints WHERE batch = 2")
    report = report_of(path)
    assert not report and "batch 3" in str(report.problem)


def test_reordering_checkpoints_is_caught(sealed: tuple[Path, SigningKey]) -> None:
    path, _ = sealed
    conn = raw(path)
    conn.execute("DROP TRIGGER IF EXISTS checkpoints_no_update")
    conn.execute("UPDATE checkpoints SET batch = 99 WHERE batch = 1")
    conn.execute("UPDATE checkpoints SET batch = 1 WHERE batch = 2")
    conn.execute("UPDATE checkpoints SET batch = 2 WHERE batch = 99")
    assert not report_of(path)


def test_inserting_a_receipt_is_caught(sealed: tuple[Path, SigningKey]) -> None:
    path, key = sealed
    conn = raw(path)
    row = conn.execute("SELECT * FROM receipts WHERE seq = 5").fetchone()
    conn.execute("UPDATE receipts SET seq = seq + 1000 WHERE seq >= 5")
    conn.execute("INSERT INTO receipts VALUES (5, 'rcpt_x', ?, ?, ?, ?)", row[2:])
    report = report_of(path, key)
    assert not report and report.first_bad_seq is not None


def test_a_chain_rewritten_with_another_key_fails_its_roots(
    sealed: tuple[Path, SigningKey], tmp_path: Path
) -> None:
    """An attacker with write access re-signs every receipt with their own key: the chain is
    consistent again, but the old checkpoints (signed by the real key) no longer match."""
    path, _ = sealed
    forger = SigningKey.generate()
    forged = tmp_path / "forged.sqlite3"
    with Ledger(path) as ledger:
        bodies = [r.body for r in ledger]
        cps = ledger._store.checkpoints()
    with Ledger(forged, batch_size=10**6) as copy:
        for body in bodies:
            fields = {k: v for k, v in body.items() if k not in _CHAIN}
            if body["seq"] == 6:
                fields["cost_usd"] = 0.0
            copy.append(fields, forger)
    conn = raw(forged)
    conn.executemany("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)", cps)
    report = report_of(forged)
    assert not report and "Merkle root does not match" in str(report.problem)


_CHAIN = {"version", "id", "seq", "timestamp", "prev_hash", "key_id", "public_key"}


def _seal_writer(path: str, seed: bytes, writer: int) -> None:
    key = SigningKey.from_seed(seed)
    with Ledger(path, batch_size=7) as ledger:
        for i in range(30):
            ledger.append({"writer": writer, "i": i}, key)
        ledger.seal(key)


def test_processes_appending_and_sealing_keep_one_chain_of_roots(tmp_path: Path) -> None:
    seed = bytes(range(32))
    path = tmp_path / "multi.sqlite3"
    Ledger(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_seal_writer, args=(str(path), seed, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    key = SigningKey.from_seed(seed)
    with Ledger(path) as ledger:
        report = ledger.verify({key.key_id: key.public_key_hex()})
        assert report and report.count == 120, report
        cps = ledger.checkpoints()
        assert cps[-1].last_seq == 120
        assert all(c.size <= 7 for c in cps)
        assert all(verify_inclusion(ledger.prove(r.id), key) for r in list(ledger)[::11])


def _shape(cps: list[Any]) -> list[tuple[Any, ...]]:
    keys = ("batch", "first_seq", "last_seq", "size", "day", "root", "head_hash")
    return [tuple(c.body[k] for k in keys) for c in cps]


def test_sealing_from_remembered_days_equals_sealing_from_the_bodies(tmp_path: Path) -> None:
    """The ledger that wrote the rows seals from what it remembers of them; a fresh ledger on
    a copy of the same file (nothing remembered) reads every body: the same checkpoints."""
    import intentmesh.receipts._ledger as receipts

    days = iter([0, 0, 0, 86_400, 86_400, 86_400, 2 * 86_400] * 3)
    real = receipts.time.time_ns
    key = SigningKey.generate()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(receipts.time, "time_ns", lambda: next(days, 0) * 10**9 + real() % 10**9)
        with Ledger(tmp_path / "a.sqlite3", batch_size=4) as writer:
            fill(writer, key, 14)  # seals as it goes, from memory
            assert writer._days  # the unsealed tail is remembered
            copy = tmp_path / "b.sqlite3"
            sqlite3.connect(tmp_path / "a.sqlite3").backup(sqlite3.connect(copy))
            from_memory = writer.checkpoints() + writer.seal(key)
            assert not writer._days  # sealed rows are forgotten
    with Ledger(copy, batch_size=4) as fresh:
        from_bodies = fresh.checkpoints() + fresh.seal(key)
    assert _shape(from_memory) == _shape(from_bodies)
    assert {c.body["day"] for c in from_memory} == {"1970-01-01", "1970-01-02", "1970-01-03"}


def test_a_remembered_day_whose_hash_was_never_stored_is_ignored(tmp_path: Path) -> None:
    """A row built in a transaction that rolled back leaves a memory under its seq; when
    another writer stores a row at that seq, its hash differs and its body's day counts."""
    key = SigningKey.generate()
    path = tmp_path / "l.sqlite3"
    with Ledger(path, batch_size=100) as ledger, Ledger(path, batch_size=100) as other:
        fill(ledger, key, 3)
        with pytest.raises(RuntimeError), ledger._store.writing() as add:
            add(ledger.row_builder({"i": "rolled back"}, key))
            raise RuntimeError("the transaction fails after building row 4")
        stale_hash = ledger._days[4][0]
        ledger._days[4] = (stale_hash, "1999-12-31")  # as if built just before a midnight
        fill(other, key, 2)  # rows 4 and 5, stored by a writer with no memory of them
        cps = ledger.seal(key)
        assert list(other)[3].hash != stale_hash
    assert [(c.first_seq, c.last_seq) for c in cps] == [(1, 5)]
    assert cps[0].body["day"] != "1999-12-31"


def test_batches_never_span_two_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import intentmesh.receipts._ledger as receipts

    days = iter([0, 0, 0, 86_400, 86_400] * 2)
    real = receipts.time.time_ns
    monkeypatch.setattr(receipts.time, "time_ns", lambda: next(days, 0) * 10**9 + real() % 10**9)
    key = SigningKey.generate()
    with Ledger(tmp_path / "days.sqlite3") as ledger:
        fill(ledger, key, 5)
        cps = ledger.seal(key)
    assert [(c.first_seq, c.last_seq, c.body["day"]) for c in cps] == [
        (1, 3, "1970-01-01"),
        (4, 5, "1970-01-02"),
    ]
