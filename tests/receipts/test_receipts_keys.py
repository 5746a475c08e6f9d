"""Key rotation with a key history, public-key export, and keys from env vars or files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import (
    KeyHistory,
    Ledger,
    SigningKey,
    default_key_path,
    load_signing_key,
    rotate_key,
    verify_inclusion,
    verify_receipt,
)


def test_rotation_keeps_old_receipts_verifiable(tmp_path: Path) -> None:
    first = SigningKey.load_or_create()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        old = ledger.append({"n": 1}, first)
        ledger.seal(first)
        second, history = rotate_key()
        assert second.key_id != first.key_id
        assert SigningKey.load(default_key_path()).key_id == second.key_id
        assert stat.S_IMODE(default_key_path().stat().st_mode) == 0o600
        new = ledger.append({"n": 2}, second)
        third, history = rotate_key()
        ledger.append({"n": 3}, third)
        keys = KeyHistory.load().public_keys()
        assert list(keys) == [first.key_id, second.key_id, third.key_id]
        assert ledger.verify(keys)
        assert not ledger.verify({third.key_id: third.public_key_hex()})
        assert verify_receipt(old, keys[first.key_id]) and verify_receipt(new, second)
        assert verify_inclusion(ledger.prove(old.id), keys)
    assert history.problem() is None


def test_history_document_round_trips_and_detects_a_forged_rotation() -> None:
    SigningKey.load_or_create()
    rotate_key()
    rotate_key()
    published = KeyHistory.load().to_json()
    again = KeyHistory.from_json(published)
    assert again.problem() is None and len(again.records) == 3
    assert "BEGIN PUBLIC KEY" in json.loads(published)["keys"][0]["public_key_pem"]
    doc = json.loads(published)
    intruder = SigningKey.generate()
    doc["keys"][2]["key_id"] = intruder.key_id
    doc["keys"][2]["public_key"] = intruder.public_key_hex()
    assert "not" in str(KeyHistory.from_json(json.dumps(doc)).problem())


def test_signing_key_from_env_file_or_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SigningKey.generate()
    monkeypatch.setenv("INTENTMESH_SIGNING_KEY", "not a key")
    with pytest.raises(ReceiptError):
        load_signing_key()
    monkeypatch.setenv("INTENTMESH_SIGNING_KEY", key._private_pem().decode())
    assert load_signing_key().key_id == key.key_id
    monkeypatch.delenv("INTENTMESH_SIGNING_KEY")
    file = tmp_path / "server.pem"
    file.write_bytes(key._private_pem())
    monkeypatch.setenv("INTENTMESH_SIGNING_KEY_FILE", str(file))
    assert load_signing_key().key_id == key.key_id
    monkeypatch.delenv("INTENTMESH_SIGNING_KEY_FILE")
    created = load_signing_key()
    assert created.key_id != key.key_id and default_key_path().exists()
