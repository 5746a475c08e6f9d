"""Signed, hash-chained receipts and the SQLite ledger that keeps them.

Every call the gateway makes ends in one :class:`Receipt`: a JSON ``body`` (what happened, plus
the chain fields ``version``, ``id``, ``seq``, ``timestamp``, ``prev_hash``, ``key_id`` and
``public_key``), an Ed25519 ``signature`` over the canonical JSON of the body, and a ``hash`` over
body and signature. Each body names the previous receipt's hash, so :meth:`Ledger.verify` finds
any altered, removed, inserted or reordered receipt. The format is in ``docs/receipts.md``.

    >>> key = SigningKey.generate()
    >>> with Ledger(":memory:") as ledger:
    ...     receipt = ledger.append({"model": "m", "cost_usd": 0.00012}, key)
    ...     ok = verify_receipt(receipt.to_json(), key.public_key_bytes())
    >>> ok
    True
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import IO, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from intentmesh._keys import (
    KeyHistory,
    KeyRecord,
    SigningKey,
    default_key_path,
    default_ledger_path,
    intentmesh_home,
    key_id_of,
    load_public_key,
    load_signing_key,
    public_key_id,
    rotate_key,
)
from intentmesh._ledger import CheckpointRow, Row, RowStore
from intentmesh._merkle import inclusion_path, merkle_root, root_from_path
from intentmesh.errors import ReceiptError

__all__ = [
    "CHECKPOINT_TYPE",
    "DEFAULT_BATCH_SIZE",
    "GENESIS_HASH",
    "Checkpoint",
    "InclusionProof",
    "KeyHistory",
    "KeyRecord",
    "RECEIPT_VERSION",
    "Ledger",
    "LedgerReport",
    "Receipt",
    "SigningKey",
    "assert_no_secrets",
    "canonical_json",
    "default_key_path",
    "default_ledger_path",
    "digest",
    "intentmesh_home",
    "inclusion_problem",
    "load_public_key",
    "load_signing_key",
    "rotate_key",
    "verify_inclusion",
    "verify_receipt",
]

RECEIPT_VERSION = 1
GENESIS_HASH = "sha256:" + "0" * 64
"""The ``prev_hash`` of the first receipt in a ledger."""

CHECKPOINT_TYPE = "intentmesh.checkpoint"
"""The ``type`` of a checkpoint body: a signed Merkle root over one batch of receipts."""
DEFAULT_BATCH_SIZE = 1024
"""Receipts per Merkle batch at most; a batch never spans two UTC days."""

CHAIN_FIELDS = frozenset({"version", "id", "seq", "timestamp", "prev_hash", "key_id", "public_key"})
"""Body fields the ledger sets; ``fields`` passed to :meth:`Ledger.append` may not hold them."""

# --------------------------------------------------------------------------------------------
# Canonical JSON (RFC 8785 / JCS)

_SAFE_INT = 2**53
_encode_str = json.encoder.encode_basestring  # the C version: minimal escapes, UTF-8 kept


def canonical_json(obj: object) -> bytes:
    """RFC 8785 (JCS) bytes of ``obj``: sorted keys, no whitespace, JS number format, UTF-8.

    Raises :class:`ReceiptError` for NaN/Infinity, non-string keys, lone surrogates and types
    JSON cannot hold. Integers beyond ±2**53 become the nearest double, as JCS prescribes.
    """
    try:
        return _encode(obj).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ReceiptError("canonical JSON: a string holds a lone surrogate") from exc


def digest(obj: object) -> str:
    """``"sha256:<hex>"`` of :func:`canonical_json` of ``obj``; bytes and str are hashed as is."""
    if isinstance(obj, bytes | bytearray | memoryview):
        data = bytes(obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
    else:
        data = canonical_json(obj)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _encode(o: object) -> str:
    t = type(o)
    if t is str:
        return _encode_str(o)  # type: ignore[arg-type]
    if t is dict:
        return _encode_dict(o)  # type: ignore[arg-type]
    if t is int:
        return repr(o) if -_SAFE_INT <= o <= _SAFE_INT else _encode_number(float(o))  # type: ignore[operator,arg-type]
    if t is float:
        return _encode_float(o)  # type: ignore[arg-type]
    if t is list or t is tuple:
        return "[" + ",".join([_encode(v) for v in o]) + "]"  # type: ignore[attr-defined]
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    return _encode_subclass(o)


def _encode_subclass(o: object) -> str:
    if isinstance(o, str):
        return _encode_str(str(o))
    if isinstance(o, int):  # IntEnum, numpy-free ints; bool was handled above
        return _encode(int(o))
    if isinstance(o, float):
        return _encode_float(float(o))
    if isinstance(o, Mapping):
        return _encode_dict(dict(o))
    if isinstance(o, list | tuple):
        return _encode(list(o))
    raise ReceiptError(f"canonical JSON: cannot encode {type(o).__name__}")


def _encode_dict(d: dict[Any, Any]) -> str:
    try:
        keys = sorted(d)
        ascii_only = "".join(keys).isascii()
    except TypeError:
        raise ReceiptError("canonical JSON: object keys must be strings") from None
    if not ascii_only:
        keys.sort(key=_utf16)
    return "{" + ",".join([_encode_str(k) + ":" + _encode(d[k]) for k in keys]) + "}"


def _utf16(key: str) -> bytes:
    """Sort key for JCS: UTF-16 code units, which big-endian bytes compare like."""
    return key.encode("utf-16-be", "surrogatepass")


def _encode_float(x: float) -> str:
    if x.is_integer():
        if -_SAFE_INT <= x <= _SAFE_INT:
            return repr(int(x))  # also turns -0.0 into 0
        return _encode_number(x)
    if 1e-4 <= abs(x) < 1e16:
        return repr(x)  # Python's shortest repr is ECMAScript's in this range
    return _encode_number(x)


def _encode_number(x: float) -> str:
    """ECMAScript Number::toString of a finite double (the JCS number format)."""
    if not math.isfinite(x):
        raise ReceiptError(f"canonical JSON: {x!r} is not allowed (NaN and Infinity)")
    if x == 0:
        return "0"
    mantissa, _, exp = repr(abs(x)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    point = len(whole) + (int(exp) if exp else 0) - (len(whole + frac) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        text = digits + "0" * (point - k)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        e = point - 1
        sign = "+" if e >= 0 else "-"
        text = (digits[0] + "." + digits[1:] if k > 1 else digits) + "e" + sign + str(abs(e))
    return "-" + text if x < 0 else text


# --------------------------------------------------------------------------------------------
# Secrets guard

_SECRET_PARTS = ("api_key", "apikey", "private_key", "secret", "password", "passwd", "authoriz")
_SECRET_WORDS = frozenset({"token", "bearer", "credential", "credentials", "cookie"})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


@lru_cache(maxsize=4096)
def _looks_secret(name: str) -> bool:
    norm = _CAMEL.sub(r"\1_\2", name).lower().replace("-", "_")
    if any(part in norm for part in _SECRET_PARTS):
        return True
    return not _SECRET_WORDS.isdisjoint(norm.split("_"))


_SCALARS = frozenset({str, int, float, bool, type(None)})
_known_safe: set[str] = set()  # a cache of names already checked; bounded below


def assert_no_secrets(fields: object) -> None:
    """Raise :class:`ReceiptError` if any key in ``fields`` (nested) names a secret.

    ``api_key``, ``Authorization``, ``access_token``, ``client_secret``, ``password`` and their
    spellings are refused; counters such as ``prompt_tokens`` are fine.
    """
    name = _secret_name(fields)
    if name is not None:
        raise ReceiptError(
            f"receipt field {name!r} looks like a secret; receipts never store API keys or "
            "credentials, so leave it out"
        )


def _secret_name(obj: object) -> str | None:
    if isinstance(obj, Mapping):
        if not _known_safe.issuperset(obj):
            for k in obj:
                if isinstance(k, str):
                    if _looks_secret(k):
                        return k
                    if len(_known_safe) < 4096:
                        _known_safe.add(k)
        values: Iterable[object] = obj.values()
    elif isinstance(obj, list | tuple):
        values = obj
    else:
        return None
    for v in values:
        if type(v) not in _SCALARS:
            name = _secret_name(v)
            if name is not None:
                return name
    return None


# --------------------------------------------------------------------------------------------
# Receipts


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


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


# --------------------------------------------------------------------------------------------
# Ledger


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
        seq, rid, hash_, prev, text, signature = row
        if seq != self.expected_seq:
            return f"seq is {seq} where {self.expected_seq} was expected (receipts were removed, inserted or reordered)"  # noqa: E501
        if prev != self.prev_hash:
            return "prev_hash is not the previous receipt's hash (the chain is broken)"
        try:
            body = json.loads(text)
        except ValueError:
            return "the body is not valid JSON"
        if not isinstance(body, dict):
            return "the body is not a JSON object"
        problem = self._fields_problem(body, row) or self.signature_problem(
            Receipt(body, signature, hash_)
        )
        if problem is None:
            self.expected_seq += 1
            self.prev_hash = hash_
        return problem

    @staticmethod
    def _fields_problem(body: dict[str, Any], row: Row) -> str | None:
        if body.get("version") != RECEIPT_VERSION:
            return f"unsupported receipt version {body.get('version')!r}"
        for name, stored in (("seq", row[0]), ("id", row[1]), ("prev_hash", row[3])):
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


# --------------------------------------------------------------------------------------------
# Merkle checkpoints and inclusion proofs


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed Merkle root over the receipts ``first_seq..last_seq`` (one batch).

    The body holds ``type``, ``version``, ``batch``, ``first_seq``, ``last_seq``, ``size``,
    ``day``, ``root``, ``head_hash``, ``prev_checkpoint``, ``timestamp``, ``key_id`` and
    ``public_key``; it is signed and hashed exactly like a receipt body.
    """

    body: dict[str, Any]
    signature: str
    hash: str

    @property
    def batch(self) -> int:
        return int(self.body["batch"])

    @property
    def first_seq(self) -> int:
        return int(self.body["first_seq"])

    @property
    def last_seq(self) -> int:
        return int(self.body["last_seq"])

    @property
    def size(self) -> int:
        return int(self.body["size"])

    @property
    def root(self) -> str:
        return str(self.body["root"])

    def as_receipt(self) -> Receipt:
        """The same signed object as a :class:`Receipt`, for signature checks."""
        return Receipt(self.body, self.signature, self.hash)

    def row(self) -> CheckpointRow:
        text = canonical_json(self.body).decode("utf-8")
        return (self.batch, self.first_seq, self.last_seq, self.hash, text, self.signature)

    def to_dict(self) -> dict[str, Any]:
        return {"body": self.body, "signature": self.signature, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        r = Receipt.from_dict(data)
        if r.body.get("type") != CHECKPOINT_TYPE:
            raise ReceiptError(f"a checkpoint body has type {CHECKPOINT_TYPE!r}")
        return cls(r.body, r.signature, r.hash)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Receipt + its batch's signed checkpoint + the Merkle path between them.

    Checked by :func:`verify_inclusion` with no ledger at hand; ``to_json``/``from_json``
    carry it around. The path has at most ``ceil(log2(batch size))`` hashes.
    """

    receipt: Receipt
    checkpoint: Checkpoint
    leaf_index: int
    path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "intentmesh.inclusion_proof",
            "version": 1,
            "receipt": self.receipt.to_dict(),
            "checkpoint": self.checkpoint.to_dict(),
            "leaf_index": self.leaf_index,
            "path": [p.hex() for p in self.path],
        }

    def to_json(self) -> str:
        return canonical_json(self.to_dict()).decode("utf-8")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InclusionProof:
        try:
            path = tuple(bytes.fromhex(p) for p in data["path"])
            index = data["leaf_index"]
            if not isinstance(index, int) or any(len(p) != 32 for p in path):
                raise ValueError("leaf_index must be an int and path entries 32-byte hex")
            return cls(
                Receipt.from_dict(data["receipt"]),
                Checkpoint.from_dict(data["checkpoint"]),
                index,
                path,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ReceiptError(f"not an inclusion proof: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> InclusionProof:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ReceiptError(f"an inclusion proof must be JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ReceiptError("an inclusion proof must be a JSON object")
        return cls.from_dict(data)


def inclusion_problem(
    proof: InclusionProof | Mapping[str, Any] | str | bytes, public_keys: object = None
) -> str | None:
    """Why ``proof`` does not hold, or None when it does. See :func:`verify_inclusion`."""
    try:
        if not isinstance(proof, InclusionProof):
            proof = (
                InclusionProof.from_json(proof)
                if isinstance(proof, str | bytes)
                else InclusionProof.from_dict(proof)
            )
        keys = public_keys if public_keys is None or isinstance(public_keys, Mapping) else None
        if keys is None and public_keys is not None:
            key = load_public_key(public_keys)
            keys = {public_key_id(key): key}
        check = _ChainCheck(keys)
        r, cp = proof.receipt, proof.checkpoint
        problem = check.signature_problem(r) or check.signature_problem(cp.as_receipt())
        if problem is not None:
            return problem
        if r.seq != cp.first_seq + proof.leaf_index or not cp.first_seq <= r.seq <= cp.last_seq:
            return f"receipt seq {r.seq} is not leaf {proof.leaf_index} of batch {cp.batch}"
        root = root_from_path(_leaf(r.hash), proof.leaf_index, cp.size, proof.path)
        if root is None or "sha256:" + root.hex() != cp.root:
            return "the Merkle path does not lead to the checkpoint's root"
        return None
    except ReceiptError as exc:
        return str(exc)
    except (KeyError, TypeError, ValueError) as exc:
        return f"malformed proof: {exc}"


def verify_inclusion(
    proof: InclusionProof | Mapping[str, Any] | str | bytes, public_keys: object = None
) -> bool:
    """True iff the receipt in ``proof`` is signed, and its path leads to a signed root.

    Needs no ledger. ``public_keys`` is one key (bytes, hex, PEM, key object), a mapping
    ``key_id`` → key (key history), or None to trust the keys embedded in the proof (which
    proves consistency, not who signed: pass the published key for that).
    """
    return inclusion_problem(proof, public_keys) is None


def _leaf(hash_: str) -> bytes:
    if not hash_.startswith("sha256:") or len(hash_) != 71:
        raise ReceiptError(f"not a sha256 hash: {hash_[:80]!r}")
    try:
        return bytes.fromhex(hash_[7:])
    except ValueError:
        raise ReceiptError(f"not a sha256 hash: {hash_[:80]!r}") from None


def _root_of(hashes: list[str]) -> str:
    return "sha256:" + merkle_root([_leaf(h) for h in hashes]).hex()


def _batches(pending: list[Row], size: int) -> list[list[Row]]:
    """Split unsealed rows into batches of at most ``size`` receipts of one UTC day each."""
    out: list[list[Row]] = []
    day = ""
    for row in pending:
        today = str(json.loads(row[4]).get("timestamp", ""))[:10]
        if not out or len(out[-1]) >= size or today != day:
            out.append([])
            day = today
        out[-1].append(row)
    return out


def _checkpoint_rows(
    last: CheckpointRow | None, batches: list[list[Row]], key: SigningKey
) -> list[CheckpointRow]:
    batch, prev = (last[0], last[3]) if last else (0, GENESIS_HASH)
    now = _timestamp(time.time_ns())
    made: list[CheckpointRow] = []
    for rows in batches:
        batch += 1
        body = {
            "type": CHECKPOINT_TYPE,
            "version": RECEIPT_VERSION,
            "batch": batch,
            "first_seq": rows[0][0],
            "last_seq": rows[-1][0],
            "size": len(rows),
            "day": str(json.loads(rows[0][4]).get("timestamp", ""))[:10],
            "root": _root_of([r[2] for r in rows]),
            "head_hash": rows[-1][2],
            "prev_checkpoint": prev,
            "timestamp": now,
            "key_id": key.key_id,
            "public_key": key.public_key_hex(),
        }
        text = canonical_json(body)
        signature = _b64(key.sign(text))
        prev = _hash_of(text, signature)
        made.append((batch, rows[0][0], rows[-1][0], prev, text.decode("utf-8"), signature))
    return made


def _checkpoint(row: CheckpointRow) -> Checkpoint:
    return Checkpoint(json.loads(row[4]), row[5], row[3])


class _RootCheck:
    """Checks checkpoints against the receipt hashes seen since the previous checkpoint."""

    def __init__(self, chain: _ChainCheck) -> None:
        self.chain = chain
        self.hashes: list[str] = []
        self.batch = 0
        self.next_first = 1
        self.prev = GENESIS_HASH

    def add_receipt(self, row: Row) -> None:
        self.hashes.append(row[2])

    def add_checkpoint(self, row: CheckpointRow) -> str | None:
        batch, first, last, hash_, text, signature = row
        where = f"checkpoint batch {batch} (seq {first}-{last})"
        try:
            cp = Checkpoint(json.loads(text), signature, hash_)
            problem = self._problem(cp, row)
        except (ValueError, TypeError, KeyError, ReceiptError) as exc:
            problem = f"malformed: {exc}"
        if problem is not None:
            return f"{where}: {problem}"
        self.batch, self.next_first, self.prev = batch, last + 1, hash_
        self.hashes = []
        return None

    def _problem(self, cp: Checkpoint, row: CheckpointRow) -> str | None:
        b = cp.body
        if b.get("type") != CHECKPOINT_TYPE or b.get("version") != RECEIPT_VERSION:
            return "not a version 1 checkpoint"
        if (cp.batch, cp.first_seq, cp.last_seq) != row[:3]:
            return "the body's batch/seq range differs from the stored one"
        if cp.batch != self.batch + 1 or cp.first_seq != self.next_first:
            return f"expected batch {self.batch + 1} from seq {self.next_first} (roots removed?)"
        if b.get("prev_checkpoint") != self.prev:
            return "prev_checkpoint is not the previous checkpoint's hash"
        if cp.size != len(self.hashes) or cp.last_seq - cp.first_seq + 1 != cp.size:
            return f"covers {cp.size} receipts where {len(self.hashes)} are in the ledger"
        if b.get("head_hash") != self.hashes[-1] or cp.root != _root_of(self.hashes):
            return "the Merkle root does not match the receipts (receipts were rewritten)"
        return self.chain.signature_problem(cp.as_receipt())

    @staticmethod
    def missing(row: CheckpointRow, count: int) -> str:
        return (
            f"checkpoint batch {row[0]} covers seq {row[1]}-{row[2]} but the ledger ends at seq "
            f"{count} (receipts were removed from the end)"
        )


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 chars


def _new_id(now_ns: int) -> str:
    """``rcpt_`` + a ULID: 48-bit milliseconds and 80 random bits in Crockford base32."""
    value = ((now_ns // 1_000_000) << 80) | int.from_bytes(os.urandom(10), "big")
    pairs = _CROCKFORD_PAIRS
    return "rcpt_" + "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def _timestamp(now_ns: int) -> str:
    seconds, ms = divmod(now_ns // 1_000_000, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def _encode_members(fields: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bool]:
    """``[(key, '"key":value')]`` for the caller's fields, and whether all keys are ASCII."""
    try:
        ascii_only = "".join(fields).isascii()
    except TypeError:
        raise ReceiptError("receipt field names must be strings") from None
    return [(k, _encode_str(k) + ":" + _encode(v)) for k, v in fields.items()], ascii_only


PathOrFile = str | os.PathLike[str] | IO[str]


class Ledger:
    """An append-only SQLite file of chained receipts, safe for many threads and processes.

    ``path`` defaults to :func:`default_ledger_path`; ``":memory:"`` keeps it in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ReceiptError("batch_size must be at least 1")
        self.path = os.fspath(path) if path is not None else os.fspath(default_ledger_path())
        self.batch_size = batch_size
        self._store = RowStore(self.path)
        last = self._store.last_checkpoint()
        self._sealed_hint = last[2] if last else 0

    def append(self, fields: Mapping[str, Any], key: SigningKey) -> Receipt:
        """Sign ``fields`` plus the chain fields as the next receipt, and store it."""
        if not isinstance(key, SigningKey):
            raise ReceiptError("Ledger.append needs a SigningKey")
        assert_no_secrets(fields)
        clash = CHAIN_FIELDS.intersection(fields)
        if clash:
            raise ReceiptError(f"the ledger sets {sorted(clash)}; leave them out of fields")
        members, ascii_only = _encode_members(fields)
        members += [
            ("version", f'"version":{RECEIPT_VERSION}'),
            ("key_id", '"key_id":"' + key.key_id + '"'),
            ("public_key", '"public_key":"' + key.public_key_hex() + '"'),
        ]

        def build(last_seq: int, last_hash: str | None) -> Row:
            now = time.time_ns()
            seq, rid, prev = last_seq + 1, _new_id(now), last_hash or GENESIS_HASH
            parts = [
                *members,
                ("id", '"id":"' + rid + '"'),
                ("seq", f'"seq":{seq}'),
                ("timestamp", '"timestamp":"' + _timestamp(now) + '"'),
                ("prev_hash", '"prev_hash":"' + prev + '"'),
            ]
            parts.sort(key=None if ascii_only else lambda m: _utf16(m[0]))
            text = "{" + ",".join([m[1] for m in parts]) + "}"
            body = text.encode("utf-8")
            signature = _b64(key.sign(body))
            return (seq, rid, _hash_of(body, signature), prev, text, signature)

        try:
            row = self._store.append(build)
        except UnicodeEncodeError as exc:
            raise ReceiptError("canonical JSON: a string holds a lone surrogate") from exc
        if row[0] - self._sealed_hint >= self.batch_size:
            self.seal(key)
        return _receipt(row)

    # -- Merkle checkpoints -----------------------------------------------------------

    def seal(self, key: SigningKey, upto_seq: int | None = None) -> list[Checkpoint]:
        """Close every unsealed receipt (up to ``upto_seq``) into signed Merkle checkpoints.

        A batch holds at most ``batch_size`` receipts of one UTC day. Safe to call from many
        processes: each batch is sealed once. Returns the new checkpoints (maybe none).
        """
        if not isinstance(key, SigningKey):
            raise ReceiptError("Ledger.seal needs a SigningKey")
        size = self.batch_size

        def build(last: CheckpointRow | None, pending: list[Row]) -> list[CheckpointRow]:
            return _checkpoint_rows(last, _batches(pending, size), key)

        made = self._store.seal(build, upto_seq)
        if made:
            self._sealed_hint = max(self._sealed_hint, made[-1][2])
        return [_checkpoint(row) for row in made]

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first."""
        return [_checkpoint(row) for row in self._store.checkpoints()]

    def prove(self, receipt_id: str, key: SigningKey | None = None) -> InclusionProof:
        """A short proof that receipt ``receipt_id`` is in its batch's signed Merkle root.

        An unsealed receipt is sealed first with ``key``; without a key it raises.
        """
        row = self._store.get(receipt_id)
        if row is None:
            raise ReceiptError(f"no receipt {receipt_id!r} in {self.path}", receipt_id=receipt_id)
        cp = self._store.checkpoint_for(row[0])
        if cp is None:
            if key is None:
                raise ReceiptError(
                    f"receipt {receipt_id} is not sealed yet; seal the ledger with a key first",
                    receipt_id=receipt_id,
                )
            self.seal(key, row[0])
            cp = self._store.checkpoint_for(row[0])
            assert cp is not None
        leaves = [_leaf(h) for h in self._store.hashes(cp[1], cp[2])]
        path = inclusion_path(leaves, row[0] - cp[1])
        return InclusionProof(_receipt(row), _checkpoint(cp), row[0] - cp[1], tuple(path))

    def get(self, receipt_id: str) -> Receipt | None:
        row = self._store.get(receipt_id)
        return _receipt(row) if row else None

    def last(self) -> Receipt | None:
        """The newest receipt; its ``hash`` is the head of the chain (worth anchoring)."""
        row = self._store.last()
        return _receipt(row) if row else None

    def __iter__(self) -> Iterator[Receipt]:
        return (_receipt(row) for row in self._store.rows())

    def __len__(self) -> int:
        return self._store.count()

    def verify(self, public_keys: Mapping[str, object] | None = None) -> LedgerReport:
        """Check every signature, hash and link, stopping at the first bad receipt.

        With ``public_keys`` (``key_id`` → key), only those keys are trusted. Without, each
        receipt's embedded ``public_key`` is used, checked against its ``key_id``.
        """
        check = _ChainCheck(public_keys)
        roots = _RootCheck(check)
        pending = list(self._store.checkpoints())
        count = 0
        last: Row | None = None
        for row in self._store.rows():
            problem = check.check(row)
            roots.add_receipt(row)
            while problem is None and pending and pending[0][2] <= row[0]:
                problem = roots.add_checkpoint(pending.pop(0))
            if problem is not None:
                return LedgerReport(False, count, row[1], row[0], problem)
            count += 1
            last = row
        if pending:
            return LedgerReport(
                False, count, last[1] if last else None, count, roots.missing(pending[0], count)
            )
        return LedgerReport(True, count)

    def export_jsonl(self, dest: PathOrFile) -> int:
        """Write every receipt as one canonical JSON line (``Receipt.to_json``); return count."""
        if isinstance(dest, str | os.PathLike):
            with open(dest, "w", encoding="utf-8") as fh:
                return self.export_jsonl(fh)
        count = 0
        pending = self._store.checkpoints()
        for seq, _, hash_, _, text, signature in self._store.rows():
            dest.write(f'{{"body":{text},"hash":"{hash_}","signature":"{signature}"}}\n')
            count += 1
            while pending and pending[0][2] <= seq:
                _, _, _, cp_hash, cp_text, cp_sig = pending.pop(0)
                dest.write(
                    f'{{"checkpoint":{{"body":{cp_text},"hash":"{cp_hash}",'
                    f'"signature":"{cp_sig}"}}}}\n'
                )
        return count

    def import_jsonl(self, src: PathOrFile, public_keys: Mapping[str, object] | None = None) -> int:
        """Load receipts written by :meth:`export_jsonl` into this empty ledger.

        Every receipt is verified as in :meth:`verify` first; on any problem nothing is
        imported and :class:`ReceiptError` names the line. Returns the count.
        """
        if isinstance(src, str | os.PathLike):
            with open(src, encoding="utf-8") as fh:
                return self.import_jsonl(fh, public_keys)
        check = _ChainCheck(public_keys)
        checkpoints: list[CheckpointRow] = []
        count = self._store.insert_into_empty(
            _checked_rows(src, check, checkpoints), lambda: checkpoints
        )
        last = self._store.last_checkpoint()
        self._sealed_hint = last[2] if last else 0
        return count

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Ledger({self.path!r})"


def _receipt(row: Row) -> Receipt:
    return Receipt(json.loads(row[4]), row[5], row[2])


def _checked_rows(
    lines: Iterable[str], check: _ChainCheck, checkpoints: list[CheckpointRow]
) -> Iterator[Row]:
    """Verified receipt rows of an export; verified checkpoint rows go to ``checkpoints``."""
    roots = _RootCheck(check)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if isinstance(data, dict) and "checkpoint" in data:
                cp = Checkpoint.from_dict(data["checkpoint"])
                row: Row | CheckpointRow = cp.row()
            else:
                r = Receipt.from_json(line)
                row = (
                    r.body.get("seq"),  # type: ignore[assignment]
                    r.body.get("id"),
                    r.hash,
                    r.body.get("prev_hash"),
                    canonical_json(r.body).decode("utf-8"),
                    r.signature,
                )
        except (ReceiptError, ValueError, TypeError, KeyError) as exc:
            raise ReceiptError(f"line {number}: {exc}") from exc
        if isinstance(row[1], int):  # a checkpoint
            cp_row: CheckpointRow = row
            problem = roots.add_checkpoint(cp_row)
            if problem is not None:
                raise ReceiptError(f"line {number}: {problem}")
            checkpoints.append(cp_row)
            continue
        receipt_row: Row = row
        problem = check.check(receipt_row)
        roots.add_receipt(receipt_row)
        if problem is not None:
            raise ReceiptError(
                f"line {number}: receipt {row[1]}: {problem}", receipt_id=str(row[1])
            )
        yield receipt_row
