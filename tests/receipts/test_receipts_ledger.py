"""Ledger: chaining, verification against tampering in the SQLite file, export and import."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import (
    GENESIS_HASH,
    Ledger,
    LedgerReport,
    Receipt,
    SigningKey,
    assert_no_secrets,
    verify_receipt,
)

N = 6


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def path(tmp_path: Path, key: SigningKey) -> Path:
    p = tmp_path / "receipts.sqlite3"
    with Ledger(p) as ledger:
        for i in range(N):
            ledger.append({"model": f"m{i}", "cost_usd": 0.001 * (i + 1), "usage": {"n": i}}, key)
    return p


@pytest.fixture
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """Direct access to the file, as an attacker would have, triggers dropped."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER receipts_no_update")
    conn.execute("DROP TRIGGER receipts_no_delete")
    yield conn
    conn.close()


def report(path: Path, key: SigningKey | None = None) -> LedgerReport:
    with Ledger(path) as ledger:
        return ledger.verify({key.key_id: key.public_key_bytes()} if key else None)


def row(conn: sqlite3.Connection, seq: int) -> tuple[str, str, str, str, str]:
    r = conn.execute(
        "SELECT id, hash, prev_hash, body, signature FROM receipts WHERE seq = ?", (seq,)
    ).fetchone()
    assert r is not None
    return r  # type: ignore[no-any-return]


def test_chain_links_and_verifies(path: Path, key: SigningKey) -> None:
    with Ledger(path) as ledger:
        receipts = list(ledger)
        assert len(ledger) == N and [r.seq for r in receipts] == list(range(1, N + 1))
        assert receipts[0].prev_hash == GENESIS_HASH
        for before, after in zip(receipts, receipts[1:], strict=False):
            assert after.prev_hash == before.hash
        assert all(verify_receipt(r, key.public_key_bytes()) for r in receipts)
        assert ledger.get(receipts[2].id) == receipts[2]
        assert ledger.get("rcpt_missing") is None
        assert ledger.last() == receipts[-1]
        good = ledger.verify()
        assert good and good.count == N and str(good) == f"ledger ok: {N} receipts verified"
        assert ledger.verify({key.key_id: key.public_key_pem()})
        good.raise_if_bad()


def test_append_returns_what_is_stored(tmp_path: Path, key: SigningKey) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        fields = {"attempts": [{"latency_ms": 2.0}], "tuple": (1, 2), "é": "ü", "\U0001f600": 1}
        r = ledger.append(fields, key)
        fields["attempts"][0]["latency_ms"] = 99  # the caller's objects are not shared
        assert ledger.get(r.id) == r and r["attempts"] == [{"latency_ms": 2}]
        assert verify_receipt(r, key.public_key_bytes()) and ledger.verify()


def test_empty_ledger(tmp_path: Path) -> None:
    with Ledger(tmp_path / "empty.sqlite3") as ledger:
        assert len(ledger) == 0 and ledger.last() is None and list(ledger) == []
        assert ledger.verify().ok and ledger.verify().count == 0


def test_ledger_is_append_only_through_sqlite_triggers(path: Path) -> None:
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE receipts SET body = '{}' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM receipts WHERE seq = 1")
    conn.close()


def test_altered_body_is_detected(path: Path, raw: sqlite3.Connection) -> None:
    body = row(raw, 3)[3]
    assert '"cost_usd":0.003' in body
    raw.execute("UPDATE receipts SET body = ? WHERE seq = 3", (body.replace("0.003", "0.0001"),))
    bad = report(path)
    assert not bad and bad.first_bad_seq == 3 and bad.count == 2
    assert "signature" in (bad.problem or "")
    assert "seq 3" in str(bad)
    with pytest.raises(ReceiptError) as info:
        bad.raise_if_bad()
    assert info.value.receipt_id == bad.first_bad_id == row(raw, 3)[0]


@pytest.mark.parametrize("column", ["id", "hash", "prev_hash", "signature"])
def test_altered_columns_are_detected(path: Path, raw: sqlite3.Connection, column: str) -> None:
    value = raw.execute(f"SELECT {column} FROM receipts WHERE seq = 4").fetchone()[0]
    changed = value[:12] + ("B" if value[12] != "B" else "C") + value[13:]
    raw.execute(f"UPDATE receipts SET {column} = ? WHERE seq = 4", (changed,))
    bad = report(path)
    assert not bad and bad.first_bad_seq == 4, bad


@pytest.mark.parametrize("seq", [1, 3, N])
def test_deleted_row_is_detected(
    path: Path, raw: sqlite3.Connection, key: SigningKey, seq: int
) -> None:
    raw.execute("DELETE FROM receipts WHERE seq = ?", (seq,))
    bad = report(path, key)
    if seq == N:  # the newest receipt: only an anchored head hash can show it is missing
        assert bad and bad.count == N - 1
    else:
        assert not bad and bad.first_bad_seq == seq + 1 and "removed" in (bad.problem or "")


def test_swapped_rows_are_detected(path: Path, raw: sqlite3.Connection) -> None:
    a, b = row(raw, 2), row(raw, 3)
    raw.execute("UPDATE receipts SET id = 'tmp' WHERE seq = 2")
    raw.execute(
        "UPDATE receipts SET id=?, hash=?, prev_hash=?, body=?, signature=? WHERE seq = 3", a
    )
    raw.execute(
        "UPDATE receipts SET id=?, hash=?, prev_hash=?, body=?, signature=? WHERE seq = 2", b
    )
    bad = report(path)
    assert not bad and bad.first_bad_seq == 2


def test_renumbered_rows_are_detected(path: Path, raw: sqlite3.Connection) -> None:
    raw.execute("UPDATE receipts SET seq = 100 WHERE seq = 2")
    raw.execute("UPDATE receipts SET seq = 2 WHERE seq = 3")
    raw.execute("UPDATE receipts SET seq = 3 WHERE seq = 100")
    assert report(path).first_bad_seq == 2


def forged_row(
    forger: SigningKey, seq: int, prev_hash: str, like: Receipt
) -> tuple[int, str, str, str, str, str]:
    """A row for a receipt the forger signed with their own key, copying a real one."""
    with Ledger(":memory:") as scratch:
        for _ in range(seq - 1):
            scratch.append({}, forger)
        fields = {
            k: v
            for k, v in like.body.items()
            if k not in {"version", "id", "seq", "timestamp", "prev_hash", "key_id", "public_key"}
        }
        fields["cost_usd"] = 0.0
        made = scratch.append(fields, forger)
    body = dict(made.body, prev_hash=prev_hash)
    from intentmesh.receipts import canonical_json
    from intentmesh.receipts._receipt import _b64, _hash_of

    text = canonical_json(body)
    sig = _b64(forger.sign(text))
    return (seq, made.id, _hash_of(text, sig), prev_hash, text.decode(), sig)


def test_forged_row_inserted_in_the_middle_is_detected(
    path: Path, raw: sqlite3.Connection, key: SigningKey
) -> None:
    _, hash_, _, body, signature = row(raw, 3)
    third = Receipt(json.loads(body), signature, hash_)
    raw.execute("DELETE FROM receipts WHERE seq = 3")
    raw.execute(
        "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?)",
        forged_row(SigningKey.generate(), 3, third.prev_hash, third),
    )
    untrusting = report(path)  # the forgery is self-consistent; the next link is not
    assert not untrusting and untrusting.first_bad_seq == 4
    trusting = report(path, key)
    assert not trusting and trusting.first_bad_seq == 3 and "not in public_keys" in str(trusting)


def test_forged_row_appended_needs_the_trusted_key_list(
    path: Path, raw: sqlite3.Connection, key: SigningKey
) -> None:
    with Ledger(path) as ledger:
        last = ledger.last()
    assert last is not None
    raw.execute(
        "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?)",
        forged_row(SigningKey.generate(), N + 1, last.hash, last),
    )
    assert report(path)  # embedded keys are trusted: pass public_keys to catch this
    bad = report(path, key)
    assert not bad and bad.first_bad_seq == N + 1


def test_mismatched_key_id_is_detected(path: Path, raw: sqlite3.Connection) -> None:
    other = SigningKey.generate()
    body = row(raw, 2)[3].replace('"public_key":"', '"public_key":"' + other.public_key_hex()[:64])
    body = (
        body[: body.index('"public_key":"') + 14 + 64]
        + body[body.index('"public_key":"') + 14 + 128 :]
    )
    raw.execute("UPDATE receipts SET body = ? WHERE seq = 2", (body,))
    bad = report(path)
    assert not bad and bad.first_bad_seq == 2 and "key_id" in (bad.problem or "")


def test_public_keys_must_match_their_ids(path: Path, key: SigningKey) -> None:
    with Ledger(path) as ledger, pytest.raises(ReceiptError, match="key_id"):
        ledger.verify({"0000000000000000": key.public_key_bytes()})


def test_export_import_round_trip(path: Path, tmp_path: Path, key: SigningKey) -> None:
    out = tmp_path / "export.jsonl"
    with Ledger(path) as ledger:
        assert ledger.export_jsonl(out) == N
        originals = list(ledger)
    lines = out.read_text().splitlines()
    assert lines == [r.to_json() for r in originals]
    with Ledger(tmp_path / "copy.sqlite3") as copy:
        assert copy.import_jsonl(out, {key.key_id: key.public_key_hex()}) == N
        assert list(copy) == originals and copy.verify()
        with pytest.raises(ReceiptError, match="empty"):
            copy.import_jsonl(out)
        buffer = io.StringIO()
        copy.export_jsonl(buffer)
        assert buffer.getvalue() == out.read_text()
        copy.append({"after": "import"}, key)
        assert copy.verify()


def test_import_refuses_a_tampered_file(path: Path, tmp_path: Path) -> None:
    buffer = io.StringIO()
    with Ledger(path) as ledger:
        ledger.export_jsonl(buffer)
    lines = buffer.getvalue().splitlines()
    changed = json.loads(lines[2])
    changed["body"]["model"] = "other"
    for bad_lines in ([*lines[:2], json.dumps(changed), *lines[3:]], lines[:2] + lines[3:], ["{"]):
        with Ledger(tmp_path / "target.sqlite3") as target:
            with pytest.raises(ReceiptError, match="line"):
                target.import_jsonl(io.StringIO("\n".join(bad_lines)))
            assert len(target) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"api_key": "sk-1"},
        {"Authorization": "Bearer x"},
        {"headers": {"x-api-key": "k"}},
        {"attempts": [{"apiKey": "k"}]},
        {"access_token": "t"},
        {"client_secret": "s"},
        {"password": "p"},
        {"nested": {"deeper": [{"privateKey": "p"}]}},
        {"seq": 1, "api_key": "k"},  # a secret is said before a chain field
        {"cost_usd": 1e-6, "t": ({"password": "p"},)},
        {"cost_usd": float("nan"), "view": MappingProxyType({"bearer": "b"})},
    ],
)
def test_secrets_are_refused(fields: dict[str, object], key: SigningKey) -> None:
    with pytest.raises(ReceiptError, match="secret"):
        assert_no_secrets(fields)
    with Ledger(":memory:") as ledger, pytest.raises(ReceiptError, match="secret"):
        ledger.append(fields, key)


def test_ordinary_fields_are_not_secrets() -> None:
    assert_no_secrets(
        {
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "max_tokens": 5,
            "key_id": "k",
            "public_key": "p",
            "flags": ["tokenizer"],
        }
    )


@pytest.mark.parametrize(
    "name", ["id", "seq", "prev_hash", "timestamp", "key_id", "public_key", "version"]
)
def test_chain_fields_cannot_be_supplied(name: str, key: SigningKey) -> None:
    with Ledger(":memory:") as ledger, pytest.raises(ReceiptError, match="ledger sets"):
        ledger.append({name: 1}, key)


def test_append_rejects_bad_input(key: SigningKey) -> None:
    with Ledger(":memory:") as ledger:
        with pytest.raises(ReceiptError):
            ledger.append({"x": float("nan")}, key)
        with pytest.raises(ReceiptError):
            ledger.append({1: "x"}, key)  # type: ignore[dict-item]
        with pytest.raises(ReceiptError):
            ledger.append({"x": "\ud800"}, key)
        with pytest.raises(ReceiptError):
            ledger.append({"x": 1}, "not a key")  # type: ignore[arg-type]
        assert len(ledger) == 0


def test_closed_ledger_refuses_work(tmp_path: Path, key: SigningKey) -> None:
    ledger = Ledger(tmp_path / "c.sqlite3")
    ledger.close()
    with pytest.raises(ReceiptError, match="closed"):
        ledger.append({}, key)


def test_wal_mode(path: Path) -> None:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def test_receipt_ids_are_ulids_of_the_receipt_time(tmp_path: Path, key: SigningKey) -> None:
    """``rcpt_`` + 26 Crockford digits of (48-bit Unix milliseconds << 80 | 80 random bits),
    as docs/receipts.md defines the ``id``; the milliseconds are the timestamp's."""
    import datetime

    with Ledger(tmp_path / "ids.sqlite3") as ledger:
        receipts = [ledger.append({"n": i}, key) for i in range(200)]
    randoms = set()
    for r in receipts:
        prefix, digits = r.id[:5], r.id[5:]
        assert prefix == "rcpt_" and len(digits) == 26 and set(digits) <= set(CROCKFORD)
        value = 0
        for d in digits:
            value = value * 32 + CROCKFORD.index(d)
        assert value < 2**128
        stamp = datetime.datetime.strptime(r.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
        ms = round(stamp.replace(tzinfo=datetime.UTC).timestamp() * 1000)
        assert value >> 80 == ms
        randoms.add(value & (2**80 - 1))
    assert len(randoms) == len(receipts)  # 80 random bits each
