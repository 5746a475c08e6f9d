"""SigningKey, Receipt and verify_receipt: round trips, key forms and tampering."""

from __future__ import annotations

import base64
import copy
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import (
    Ledger,
    Receipt,
    SigningKey,
    default_key_path,
    default_ledger_path,
    load_public_key,
    verify_receipt,
)

FIELDS: dict[str, Any] = {
    "intent_digest": "sha256:" + "a" * 64,
    "request_digest": "sha256:" + "b" * 64,
    "response_digest": "sha256:" + "c" * 64,
    "backend": "openrouter",
    "network": "centralized",
    "endpoint_host": "openrouter.ai",
    "model": "llama-3.1-8b",
    "provider_model": "meta-llama/llama-3.1-8b-instruct",
    "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46, "estimated": False},
    "price": {"input_per_1m": 0.05, "output_per_1m": 0.08, "source": "catalog", "age_s": 60},
    "cost_usd": 4.263e-05,
    "latency_ms": 812.4,
    "attempts": [
        {
            "backend": "akash",
            "network": "akash",
            "model": "llama-3.1-8b",
            "provider_model": "llama3.1:8b",
            "outcome": "error",
            "error_kind": "timeout",
            "status_code": None,
            "latency_ms": 2000.0,
            "cost_usd": 0.0,
            "retry": 0,
            "hedge": False,
        },
        {
            "backend": "openrouter",
            "network": "centralized",
            "model": "llama-3.1-8b",
            "provider_model": "meta-llama/llama-3.1-8b-instruct",
            "outcome": "ok",
            "error_kind": None,
            "status_code": 200,
            "latency_ms": 812.4,
            "cost_usd": 4.263e-05,
            "retry": 0,
            "hedge": True,
        },
    ],
    "verifiability": "none",
    "cached": False,
    "flags": ["price_stale", "hedged"],
}


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def receipt(key: SigningKey) -> Receipt:
    with Ledger(":memory:") as ledger:
        ledger.append({"model": "first"}, key)
        return ledger.append(FIELDS, key)


def leaf_paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in leaf_paths(v, (*path, i))]
    return [path]


def altered(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("x" if value[-1:] != "x" else "y")
    raise AssertionError(value)


def test_round_trip_and_properties(key: SigningKey, receipt: Receipt) -> None:
    assert verify_receipt(receipt, key.public_key_bytes())
    assert receipt.seq == 2
    assert receipt.id.startswith("rcpt_") and len(receipt.id) == 31
    assert receipt.key_id == key.key_id and receipt.public_key == key.public_key_hex()
    assert receipt.timestamp.endswith("Z") and len(receipt.timestamp) == 24
    assert receipt.prev_hash.startswith("sha256:") and receipt.hash.startswith("sha256:")
    assert receipt["cost_usd"] == 4.263e-05 and receipt.get("nope", 7) == 7
    assert len(receipt.signature) == 86 and "=" not in receipt.signature
    assert Receipt.from_json(receipt.to_json()) == receipt
    assert Receipt.from_dict(receipt.to_dict()) == receipt
    assert {receipt, Receipt.from_json(receipt.to_json())} == {receipt}
    assert receipt.verify(key)


def test_every_public_key_form(key: SigningKey, receipt: Receipt) -> None:
    forms: list[object] = [
        key.public_key_bytes(),
        key.public_key_hex(),
        key.public_key_pem(),
        key.public_key_pem().encode(),
        key.public_key,
        key,
    ]
    for form in forms:
        assert verify_receipt(receipt, form)
        assert verify_receipt(receipt.to_dict(), form)
        assert verify_receipt(receipt.to_json(), form)


@pytest.mark.parametrize(
    "bad_key",
    [
        b"short",
        "not hex",
        "ab" * 31,
        42,
        "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----",
    ],
)
def test_unusable_public_key_raises(receipt: Receipt, bad_key: object) -> None:
    with pytest.raises(ReceiptError):
        verify_receipt(receipt, bad_key)


def test_other_key_fails(receipt: Receipt) -> None:
    assert not verify_receipt(receipt, SigningKey.generate().public_key_bytes())


def test_tampering_with_any_body_field_is_detected(key: SigningKey, receipt: Receipt) -> None:
    paths = leaf_paths(receipt.body)
    assert len(paths) > 40
    for path in paths:
        data = copy.deepcopy(receipt.to_dict())
        node = data["body"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = altered(node[path[-1]])
        assert not verify_receipt(data, key.public_key_bytes()), path


def test_adding_or_removing_a_field_is_detected(key: SigningKey, receipt: Receipt) -> None:
    for name in receipt.body:
        data = copy.deepcopy(receipt.to_dict())
        del data["body"][name]
        assert not verify_receipt(data, key.public_key_bytes()), name
    data = copy.deepcopy(receipt.to_dict())
    data["body"]["extra"] = 1
    assert not verify_receipt(data, key.public_key_bytes())


def test_tampering_with_signature_or_hash_is_detected(key: SigningKey, receipt: Receipt) -> None:
    sig = base64.urlsafe_b64decode(receipt.signature + "==")
    flipped = base64.urlsafe_b64encode(bytes([sig[0] ^ 1]) + sig[1:]).rstrip(b"=").decode()
    bad_hash = receipt.hash[:-1] + ("0" if receipt.hash[-1] != "0" else "1")
    for data in [
        {**receipt.to_dict(), "signature": flipped},
        {**receipt.to_dict(), "signature": receipt.signature + "A"},
        {**receipt.to_dict(), "signature": sig.hex()},
        {**receipt.to_dict(), "hash": bad_hash},
        {**receipt.to_dict(), "hash": receipt.hash.upper()},
    ]:
        assert not verify_receipt(data, key.public_key_bytes())


@pytest.mark.parametrize(
    "junk", ["", "{", "[]", "{}", '{"body": 1, "signature": "", "hash": ""}', b"\xff"]
)
def test_malformed_receipts_are_false_not_errors(key: SigningKey, junk: str | bytes) -> None:
    assert verify_receipt(junk, key.public_key_bytes()) is False
    assert verify_receipt({"body": {}, "signature": "x"}, key.public_key_bytes()) is False


def test_repr_never_shows_the_private_key(key: SigningKey) -> None:
    pem = key._private_pem().decode()
    secret_line = pem.splitlines()[1]
    assert secret_line not in repr(key) and secret_line not in str(key)
    assert repr(key) == f"SigningKey(key_id={key.key_id!r})"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_key_id_is_sha256_prefix(key: SigningKey) -> None:
    import hashlib

    assert key.key_id == hashlib.sha256(key.public_key_bytes()).hexdigest()[:16]
    assert len(key.public_key_bytes()) == 32
    assert load_public_key(key.public_key_pem()) is not None


def test_load_or_create_writes_0600_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "signing_key.pem"
    created = SigningKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    again = SigningKey.load_or_create(path)
    assert again.key_id == created.key_id
    assert SigningKey.load(path).key_id == created.key_id
    assert [p.name for p in path.parent.iterdir()] == ["signing_key.pem"]


def test_load_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_text("not a key")
    with pytest.raises(ReceiptError, match="k.pem"):
        SigningKey.load(path)


def test_from_env_accepts_pem_hex_and_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = os.urandom(32)
    expected = SigningKey.from_seed(seed)
    pem = expected._private_pem().decode()
    for value in [
        pem,
        pem.replace("\n", "\\n"),
        seed.hex(),
        base64.b64encode(seed).decode(),
        base64.urlsafe_b64encode(seed).rstrip(b"=").decode(),
    ]:
        monkeypatch.setenv("INTENTMESH_SIGNING_KEY", value)
        assert SigningKey.from_env().key_id == expected.key_id
    monkeypatch.setenv("OTHER_VAR", seed.hex())
    assert SigningKey.from_env("OTHER_VAR").key_id == expected.key_id


def test_from_env_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INTENTMESH_SIGNING_KEY", raising=False)
    with pytest.raises(ReceiptError, match="not set"):
        SigningKey.from_env()
    monkeypatch.setenv("INTENTMESH_SIGNING_KEY", "abcd")
    with pytest.raises(ReceiptError, match="INTENTMESH_SIGNING_KEY"):
        SigningKey.from_env()


def test_default_paths_follow_intentmesh_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INTENTMESH_HOME", str(tmp_path))
    assert default_ledger_path() == tmp_path / "receipts.sqlite3"
    assert default_key_path() == tmp_path / "signing_key.pem"
    monkeypatch.delenv("INTENTMESH_HOME")
    assert default_ledger_path().name == "receipts.sqlite3"
    assert "intentmesh" in str(default_ledger_path().parent)


def test_receipt_json_is_canonical(receipt: Receipt) -> None:
    from intentmesh.receipts import canonical_json

    assert receipt.to_json().encode() == canonical_json(receipt.to_dict())
    assert "0.00004263" in receipt.to_json()
