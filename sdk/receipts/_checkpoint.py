"""Merkle checkpoints over batches of receipts, and inclusion proofs checked without a ledger.

A checkpoint is a signed body naming the Merkle root (``_merkle``) of one batch of receipt
hashes, chained to the previous checkpoint like receipts are chained to each other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from intentmesh.errors import ReceiptError
from intentmesh.receipts._canonical import canonical_json
from intentmesh.receipts._keys import SigningKey, load_public_key, public_key_id
from intentmesh.receipts._merkle import merkle_root, root_from_path
from intentmesh.receipts._receipt import (
    GENESIS_HASH,
    RECEIPT_VERSION,
    Receipt,
    _b64,
    _ChainCheck,
    _hash_of,
    _loads_body,
    _timestamp,
)
from intentmesh.receipts._store import CheckpointRow, Row

__all__ = [
    "CHECKPOINT_TYPE",
    "Checkpoint",
    "InclusionProof",
    "inclusion_problem",
    "verify_inclusion",
]

CHECKPOINT_TYPE = "intentmesh.checkpoint"
"""The ``type`` of a checkpoint body: a signed Merkle root over one batch of receipts."""


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
        return CheckpointRow(
            self.batch, self.first_seq, self.last_seq, self.hash, text, self.signature
        )

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


class Pending(NamedTuple):
    """One unsealed receipt as a checkpoint needs it: its place, hash and UTC day."""

    seq: int
    hash: str
    day: str


def _batches(pending: list[Pending], size: int) -> list[list[Pending]]:
    """Split unsealed receipts into batches of at most ``size`` receipts of one UTC day each."""
    out: list[list[Pending]] = []
    day = ""
    for row in pending:
        if not out or len(out[-1]) >= size or row.day != day:
            out.append([])
            day = row.day
        out[-1].append(row)
    return out


def day_of(body: str) -> str:
    """The UTC day (``YYYY-MM-DD``) of a stored receipt body's timestamp."""
    return str(_loads_body(body).get("timestamp", ""))[:10]


def _checkpoint_rows(
    last: CheckpointRow | None, batches: list[list[Pending]], key: SigningKey
) -> list[CheckpointRow]:
    batch, prev = (last.batch, last.hash) if last else (0, GENESIS_HASH)
    now = _timestamp(time.time_ns())
    made: list[CheckpointRow] = []
    for rows in batches:
        batch += 1
        first, head = rows[0], rows[-1]
        body = {
            "type": CHECKPOINT_TYPE,
            "version": RECEIPT_VERSION,
            "batch": batch,
            "first_seq": first.seq,
            "last_seq": head.seq,
            "size": len(rows),
            "day": first.day,
            "root": _root_of([r.hash for r in rows]),
            "head_hash": head.hash,
            "prev_checkpoint": prev,
            "timestamp": now,
            "key_id": key.key_id,
            "public_key": key.public_key_hex(),
        }
        text = canonical_json(body)
        signature = _b64(key.sign(text))
        prev = _hash_of(text, signature)
        made.append(
            CheckpointRow(batch, first.seq, head.seq, prev, text.decode("utf-8"), signature)
        )
    return made


def _checkpoint(row: CheckpointRow) -> Checkpoint:
    return Checkpoint(json.loads(row.body), row.signature, row.hash)


class _RootCheck:
    """Checks checkpoints against the receipt hashes seen since the previous checkpoint."""

    def __init__(self, chain: _ChainCheck) -> None:
        self.chain = chain
        self.hashes: list[str] = []
        self.batch = 0
        self.next_first = 1
        self.prev = GENESIS_HASH

    def add_receipt(self, row: Row) -> None:
        self.hashes.append(row.hash)

    def add_checkpoint(self, row: CheckpointRow) -> str | None:
        where = f"checkpoint batch {row.batch} (seq {row.first_seq}-{row.last_seq})"
        try:
            cp = Checkpoint(json.loads(row.body), row.signature, row.hash)
            problem = self._problem(cp, row)
        except (ValueError, TypeError, KeyError, ReceiptError) as exc:
            problem = f"malformed: {exc}"
        if problem is not None:
            return f"{where}: {problem}"
        self.batch, self.next_first, self.prev = row.batch, row.last_seq + 1, row.hash
        self.hashes = []
        return None

    def _problem(self, cp: Checkpoint, row: CheckpointRow) -> str | None:
        b = cp.body
        if b.get("type") != CHECKPOINT_TYPE or b.get("version") != RECEIPT_VERSION:
            return "not a version 1 checkpoint"
        if (cp.batch, cp.first_seq, cp.last_seq) != (row.batch, row.first_seq, row.last_seq):
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
            f"checkpoint batch {row.batch} covers seq {row.first_seq}-{row.last_seq} but the "
            f"ledger ends at seq {count} (receipts were removed from the end)"
        )
