"""One signed receipt, its verification, and the chain check that walks a ledger's rows.

A receipt is a JSON ``body``, an Ed25519 ``signature`` over ``canonical_json(body)`` and a
``hash`` over both; each body names the previous receipt's hash (``prev_hash``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from intentmesh.adapters import loads_json
from intentmesh.errors import ReceiptError
from intentmesh.receipts._canonical import _encode_str, canonical_json
from intentmesh.receipts._keys import key_id_of, load_public_key, public_key_id
from intentmesh.receipts._store import Row

__all__ = ["GENESIS_HASH", "RECEIPT_VERSION", "LedgerReport", "Receipt", "verify_receipt"]

RECEIPT_VERSION = 1
GENESIS_HASH = "sha256:" + "0" * 64
"""The ``prev_hash`` of the first receipt in a ledger."""


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(raw: bytes) -> str:
    """base64url of ``raw`` without padding (``base64.urlsafe_b64encode``'s digits)."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Decode an 86-char base64url signature; only the canonical spelling is accepted."""
    raw = base64.urlsafe_b64decode(text + "==")
    if len(raw) != 64 or _b64(raw) != text:
        raise ValueError("not a canonical base64url Ed25519 signature")
    return raw


def _hash_of(body: bytes, signature: str) -> str:
    """``sha256`` of canonical JSON ``{"body": body, "signature": signature}``."""
    envelope = b'{"body":' + body + b',"signature":' + _encode_str(signature).encode() + b"}"
    return "sha256:" + hashlib.sha256(envelope).hexdigest()


@dataclass(frozen=True, slots=True)
class Receipt:
    """One signed record. Treat ``body`` as read-only: the signature covers all of it.

    ``signature`` is the Ed25519 signature of ``canonical_json(body)`` in base64url without
    padding (86 characters); ``hash`` is ``digest({"body": body, "signature": signature})``.
    """

    body: dict[str, Any]
    signature: str
    hash: str

    def __hash__(self) -> int:
        return hash(self.hash)

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def seq(self) -> int:
        return int(self.body["seq"])

    @property
    def prev_hash(self) -> str:
        return str(self.body["prev_hash"])

    @property
    def timestamp(self) -> str:
        return str(self.body["timestamp"])

    @property
    def key_id(self) -> str:
        return str(self.body["key_id"])

    @property
    def public_key(self) -> str:
        """Hex of the raw public key that signed the receipt (as the receipt claims it)."""
        return str(self.body["public_key"])

    def __getitem__(self, name: str) -> Any:
        return self.body[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.body.get(name, default)

    def verify(self, public_key: object) -> bool:
        """Same as :func:`verify_receipt` (``self``, ``public_key``)."""
        return verify_receipt(self, public_key)

    def to_dict(self) -> dict[str, Any]:
        return {"body": self.body, "signature": self.signature, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Receipt:
        body, signature, hash_ = data.get("body"), data.get("signature"), data.get("hash")
        if not isinstance(body, dict):
            raise ReceiptError("a receipt needs a JSON object 'body'")
        if not isinstance(signature, str) or not isinstance(hash_, str):
            raise ReceiptError("a receipt needs string 'signature' and 'hash'")
        return cls(body, signature, hash_)

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict` (one line)."""
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> Receipt:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReceiptError(f"a receipt must be JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ReceiptError("a receipt must be a JSON object")
        return cls.from_dict(data)


def _coerce(receipt: Receipt | Mapping[str, Any] | str | bytes) -> Receipt:
    if isinstance(receipt, Receipt):
        return receipt
    if isinstance(receipt, str | bytes):
        return Receipt.from_json(receipt)
    return Receipt.from_dict(receipt)


def _signed_problem(r: Receipt, key: Ed25519PublicKey) -> str | None:
    """Why ``r`` is not signed by ``key`` and hashed correctly, or None if it is."""
    body = canonical_json(r.body)
    try:
        key.verify(_unb64(r.signature), body)
    except (InvalidSignature, ValueError):
        return "the signature does not verify"
    if _hash_of(body, r.signature) != r.hash:
        return "the hash does not match body and signature"
    return None


def verify_receipt(receipt: Receipt | Mapping[str, Any] | str | bytes, public_key: object) -> bool:
    """True iff ``receipt`` is signed by ``public_key`` and its hash is right.

    ``receipt`` may be a :class:`Receipt`, its ``to_dict()`` form or its JSON. ``public_key``
    may be raw 32 bytes, 64 hex digits, PEM (str or bytes), an ``Ed25519PublicKey`` or a
    :class:`SigningKey`. A bad receipt gives False; only an unusable key raises ReceiptError.
    """
    key = load_public_key(public_key)
    try:
        r = _coerce(receipt)
        claimed = r.body.get("key_id")
        if claimed is not None and claimed != public_key_id(key):
            return False
        return _signed_problem(r, key) is None
    except Exception:  # a malformed receipt of any shape is simply not valid
        return False


@dataclass(frozen=True, slots=True)
class LedgerReport:
    """What :meth:`Ledger.verify` found. Truthy iff ``ok``.

    ``count`` is the number of receipts that verified before the first problem (all of them
    when ``ok``); ``first_bad_id``/``first_bad_seq`` locate the first bad receipt.
    """

    ok: bool
    count: int
    first_bad_id: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"ledger ok: {self.count} receipts verified"
        return (
            f"ledger broken at seq {self.first_bad_seq} ({self.first_bad_id}): {self.problem} "
            f"({self.count} receipts before it verified)"
        )

    def raise_if_bad(self) -> None:
        """Raise :class:`ReceiptError` naming the first bad receipt, if there is one."""
        if not self.ok:
            raise ReceiptError(str(self), receipt_id=self.first_bad_id)


class _ChainCheck:
    """Checks rows one after another, from seq 1, against the chain and the signatures."""

    def __init__(self, public_keys: Mapping[str, object] | None) -> None:
        self.trusted: dict[str, Ed25519PublicKey] | None = None
        if public_keys is not None:
            self.trusted = {}
            for key_id, value in public_keys.items():
                key = load_public_key(value)
                if public_key_id(key) != key_id:
                    raise ReceiptError(f"public_keys: {key_id!r} is not the key_id of its key")
                self.trusted[key_id] = key
        self.embedded: dict[str, tuple[str, Ed25519PublicKey]] = {}
        self.expected_seq = 1
        self.prev_hash = GENESIS_HASH

    def check(self, row: Row) -> str | None:
        if row.seq != self.expected_seq:
            return f"seq is {row.seq} where {self.expected_seq} was expected (receipts were removed, inserted or reordered)"  # noqa: E501
        if row.prev_hash != self.prev_hash:
            return "prev_hash is not the previous receipt's hash (the chain is broken)"
        try:
            body = json.loads(row.body)
        except ValueError:
            return "the body is not valid JSON"
        if not isinstance(body, dict):
            return "the body is not a JSON object"
        problem = self._fields_problem(body, row) or self.signature_problem(
            Receipt(body, row.signature, row.hash)
        )
        if problem is None:
            self.expected_seq += 1
            self.prev_hash = row.hash
        return problem

    @staticmethod
    def _fields_problem(body: dict[str, Any], row: Row) -> str | None:
        if body.get("version") != RECEIPT_VERSION:
            return f"unsupported receipt version {body.get('version')!r}"
        for name, stored in (("seq", row.seq), ("id", row.id), ("prev_hash", row.prev_hash)):
            if body.get(name) != stored:
                return f"the body's {name} {body.get(name)!r} differs from the stored {stored!r}"
        return None

    def signature_problem(self, r: Receipt) -> str | None:
        key_id, embedded = r.body.get("key_id"), r.body.get("public_key")
        if not isinstance(embedded, str):
            return "the body has no public_key"
        cached = self.embedded.get(embedded)
        if cached is None:
            try:
                raw = bytes.fromhex(embedded)
                cached = (key_id_of(raw), load_public_key(raw))
            except (ValueError, ReceiptError):
                return "the body's public_key is not a valid Ed25519 key"
            self.embedded[embedded] = cached
        if cached[0] != key_id:
            return "key_id does not match the embedded public_key"
        key = cached[1]
        if self.trusted is not None:
            trusted = self.trusted.get(cached[0])
            if trusted is None:
                return f"signed by key {key_id}, which is not in public_keys"
            key = trusted
        return _signed_problem(r, key)


def _receipt(row: Row) -> Receipt:
    return Receipt(_loads_body(row.body), row.signature, row.hash)


_loads_body = loads_json
"""A stored body's parser: orjson when installed (a stored body is canonical JSON, which both
parse to the same values, orjson in a fraction of the time), ``json`` for what orjson refuses."""


_last_second: tuple[int, str] = (-1, "")


def _timestamp(now_ns: int) -> str:
    """``now_ns`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC); the seconds part is formatted once
    per second."""
    global _last_second
    seconds, ms = divmod(now_ns // 1_000_000, 1000)
    second, text = _last_second
    if second != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    return f"{text}.{ms:03d}Z"
