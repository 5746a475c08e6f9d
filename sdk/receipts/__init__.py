"""Signed, hash-chained receipts and the SQLite ledger that keeps them.

Every call the gateway makes ends in one :class:`Receipt`: a JSON ``body`` (what happened, plus
the chain fields ``version``, ``id``, ``seq``, ``timestamp``, ``prev_hash``, ``key_id`` and
``public_key``), an Ed25519 ``signature`` over the canonical JSON of the body, and a ``hash`` over
body and signature. Each body names the previous receipt's hash, so :meth:`Ledger.verify` finds
any altered, removed, inserted or reordered receipt. The format is in ``docs/receipts.md``.

One module per job: ``_canonical`` (RFC 8785 JSON, digests), ``_secrets`` (no credentials in
a receipt), ``_keys`` (Ed25519 keys, rotation, file locations), ``_receipt`` (one receipt, its
check, the chain check), ``_merkle`` and ``_checkpoint`` (signed Merkle roots, inclusion
proofs), ``_store`` (SQLite rows), ``_ledger`` (the :class:`Ledger` facade) and ``_body`` (the
gateway's receipt fields for one result).

    >>> key = SigningKey.generate()
    >>> with Ledger(":memory:") as ledger:
    ...     receipt = ledger.append({"model": "m", "cost_usd": 0.00012}, key)
    ...     ok = verify_receipt(receipt.to_json(), key.public_key_bytes())
    >>> ok
    True
"""

from __future__ import annotations

from intentmesh.receipts._body import RequestDigests, receipt_fields
from intentmesh.receipts._canonical import canonical_json, digest
from intentmesh.receipts._checkpoint import (
    CHECKPOINT_TYPE,
    Checkpoint,
    InclusionProof,
    inclusion_problem,
    verify_inclusion,
)
from intentmesh.receipts._keys import (
    KeyHistory,
    KeyRecord,
    SigningKey,
    default_key_path,
    default_ledger_path,
    intentmesh_home,
    load_public_key,
    load_signing_key,
    public_key_id,
    rotate_key,
)
from intentmesh.receipts._ledger import DEFAULT_BATCH_SIZE, Ledger
from intentmesh.receipts._receipt import (
    GENESIS_HASH,
    RECEIPT_VERSION,
    LedgerReport,
    Receipt,
    verify_receipt,
)
from intentmesh.receipts._secrets import assert_no_secrets
from intentmesh.receipts._writer import ReceiptWriter

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
    "ReceiptWriter",
    "RequestDigests",
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
    "public_key_id",
    "receipt_fields",
    "rotate_key",
    "verify_inclusion",
    "verify_receipt",
]
