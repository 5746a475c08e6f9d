"""The :class:`Ledger` facade: append, seal, prove, verify, export and import receipts.

It builds rows (``_receipt``, ``_checkpoint``) and hands them to the SQLite ``_store``, which
knows nothing about signatures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, Any

from intentmesh.errors import ReceiptError
from intentmesh.receipts._canonical import (
    SLOTS,
    _encode,
    _encode_str,
    _fast,
    _utf8,
    _utf16,
    canonical_json,
)
from intentmesh.receipts._checkpoint import (
    Checkpoint,
    InclusionProof,
    Pending,
    _batches,
    _checkpoint,
    _checkpoint_rows,
    _leaf,
    _RootCheck,
    day_of,
)
from intentmesh.receipts._keys import SigningKey, default_ledger_path
from intentmesh.receipts._merkle import inclusion_path
from intentmesh.receipts._pgstore import PgRowStore, is_postgres_url
from intentmesh.receipts._receipt import (
    GENESIS_HASH,
    RECEIPT_VERSION,
    LedgerReport,
    Receipt,
    _b64,
    _ChainCheck,
    _hash_of,
    _receipt,
    _timestamp,
)
from intentmesh.receipts._secrets import assert_no_secrets, names_look_safe
from intentmesh.receipts._store import CheckpointRow, Row, RowStore, Unsealed

__all__ = ["CHAIN_FIELDS", "DEFAULT_BATCH_SIZE", "Ledger"]

DEFAULT_BATCH_SIZE = 1024
"""Receipts per Merkle batch at most; a batch never spans two UTC days."""

CHAIN_FIELDS = frozenset({"version", "id", "seq", "timestamp", "prev_hash", "key_id", "public_key"})
"""Body fields the ledger sets; ``fields`` passed to :meth:`Ledger.append` may not hold them."""

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 chars


def _new_id(now_ns: int) -> str:
    """``rcpt_`` + a ULID: 48-bit milliseconds and 80 random bits in Crockford base32."""
    value = ((now_ns // 1_000_000) << 80) | int.from_bytes(os.urandom(10), "big")
    pairs = _CROCKFORD_PAIRS
    return "rcpt_" + "".join([pairs[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def _encode_members(fields: Mapping[str, Any]) -> tuple[list[tuple[str, str]], bool]:
    """``[(key, '"key":value')]`` for the caller's fields, and whether all keys are ASCII."""
    try:
        ascii_only = "".join(fields).isascii()
    except TypeError:
        raise ReceiptError("receipt field names must be strings") from None
    return [(k, _encode_str(k) + ":" + _encode(v)) for k, v in fields.items()], ascii_only


_ROW_FIELDS = ("id", "prev_hash", "seq", "timestamp")
"""The chain fields :meth:`Ledger.row_builder` sets per row, in the order it passes them."""


def _row_template(members: list[tuple[str, str]], ascii_only: bool) -> list[str | int]:
    """The body as literal text and, where each per-row chain field's value goes, its index
    in :data:`_ROW_FIELDS` (members in canonical order)."""
    slots: list[tuple[str, str | int]] = [*members, *((k, i) for i, k in enumerate(_ROW_FIELDS))]
    if ascii_only:
        slots.sort()  # names are unique: tuples compare by name alone
    else:
        slots.sort(key=lambda m: _utf16(m[0]))
    template: list[str | int] = []
    text = "{"
    for n, (name, value) in enumerate(slots):
        text += "," if n else ""
        if isinstance(value, int):
            template += [text + '"' + name + '":', value]
            text = ""
        else:
            text += value
    template.append(text + "}")
    return template


_CHAIN_SLOTS = dict(zip(_ROW_FIELDS, SLOTS, strict=True)) if SLOTS else {}
"""Each per-row chain field's placeholder in a body encoded by the fast path."""


def _fast_template(body: dict[str, Any]) -> list[str | int] | None:
    """:func:`_row_template`'s result from one orjson pass where the fast path of canonical
    JSON vouches for ``body`` and no name in it looks like a secret (else None): each chain
    field goes in as a placeholder slot."""
    text = _fast({**body, **_CHAIN_SLOTS}, names_look_safe)
    if text is None:
        return None
    parts = text.decode("ascii").split("\x00")  # literal, slot, literal, ..., literal
    if len(parts) != 2 * len(_ROW_FIELDS) + 1:
        return None
    return [int(part) if i % 2 else part for i, part in enumerate(parts)]


def _body_template(fields: Mapping[str, Any], key: SigningKey) -> list[str | int]:
    """The canonical body of ``fields`` plus the key's fixed members, with the chain fields
    left as slots: through orjson where it vouches for the bytes, else the pure encoder."""
    fixed = {"version": RECEIPT_VERSION, "key_id": key.key_id, "public_key": key.public_key_hex()}
    fast = _fast_template({**fields, **fixed})
    if fast is not None:
        return fast
    assert_no_secrets(fields)  # what made the fast path step aside may be a secret's name
    members, ascii_only = _encode_members(fields)
    members += [(name, _encode_str(name) + ":" + _encode(value)) for name, value in fixed.items()]
    return _row_template(members, ascii_only)


PathOrFile = str | os.PathLike[str] | IO[str]


class Ledger:
    """An append-only SQLite file of chained receipts, safe for many threads and processes.

    ``path`` defaults to :func:`default_ledger_path`; ``":memory:"`` keeps it in memory; a
    ``postgresql://`` URL keeps it in PostgreSQL (many hosts append to one chain).
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
        self._store: RowStore | PgRowStore
        if is_postgres_url(self.path):  # ledger = "postgresql://...": the fleet's ledger
            self._store = PgRowStore(self.path)
            self.path = self._store.path  # without the password
        else:
            self._store = RowStore(self.path)
        last = self._store.last_checkpoint()
        self._sealed_hint = last.last_seq if last else 0
        self._days: dict[int, tuple[str, str]] = {}
        """``seq -> (hash, UTC day)`` of rows this object built and has not sealed yet, so
        sealing need not read their bodies back; a row that never committed leaves an entry
        whose hash does not match, which is ignored. Emptied at four batches (4,096 rows at
        least)."""

    def append(self, fields: Mapping[str, Any], key: SigningKey) -> Receipt:
        """Sign ``fields`` plus the chain fields as the next receipt, and store it."""
        row = self._store.append(self.row_builder(fields, key))
        self.seal_if_due(row.seq, key)
        return _receipt(row)

    def row_builder(
        self, fields: Mapping[str, Any], key: SigningKey
    ) -> Callable[[int, str | None], Row]:
        """Check ``fields`` and encode them once; the result signs the row for a chain head.

        Used by :meth:`append` and by the background writer, which adds many rows in one
        transaction. Raises :class:`ReceiptError` for bad fields (secrets, chain fields).
        """
        if not isinstance(key, SigningKey):
            raise ReceiptError("Ledger.append needs a SigningKey")
        clash = CHAIN_FIELDS.intersection(fields)
        if clash:
            assert_no_secrets(fields)  # a secret is the first thing said, as everywhere
            raise ReceiptError(f"the ledger sets {sorted(clash)}; leave them out of fields")
        template = _body_template(fields, key)  # checks the names for secrets on its way
        days = self._days

        def build(last_seq: int, last_hash: str | None) -> Row:
            now = time.time_ns()
            seq, rid, prev = last_seq + 1, _new_id(now), last_hash or GENESIS_HASH
            stamp = _timestamp(now)
            chain = ('"' + rid + '"', '"' + prev + '"', str(seq), '"' + stamp + '"')
            text = "".join([chain[p] if isinstance(p, int) else p for p in template])
            body = _utf8(text)
            signature = _b64(key.sign(body))
            row_hash = _hash_of(body, signature)
            if len(days) >= max(4 * self.batch_size, 4096):  # sealing has not kept up
                days.clear()
            days[seq] = (row_hash, stamp[:10])
            return Row(seq, rid, row_hash, prev, text, signature)

        return build

    def seal_due(self, last_seq: int) -> bool:
        """Whether a whole Merkle batch is waiting behind ``last_seq``."""
        return last_seq - self._sealed_hint >= self.batch_size

    def seal_if_due(self, last_seq: int, key: SigningKey) -> None:
        """Seal when a whole Merkle batch is waiting behind ``last_seq``."""
        if self.seal_due(last_seq):
            self.seal(key)

    # -- Merkle checkpoints -----------------------------------------------------------

    def seal(self, key: SigningKey, upto_seq: int | None = None) -> list[Checkpoint]:
        """Close every unsealed receipt (up to ``upto_seq``) into signed Merkle checkpoints.

        A batch holds at most ``batch_size`` receipts of one UTC day. Safe to call from many
        processes: each batch is sealed once. Returns the new checkpoints (maybe none).
        """
        if not isinstance(key, SigningKey):
            raise ReceiptError("Ledger.seal needs a SigningKey")
        size = self.batch_size

        def build(
            last: CheckpointRow | None, unsealed: Unsealed, body_of: Callable[[int], str]
        ) -> list[CheckpointRow]:
            pending = [Pending(seq, h, self._day_of(seq, h, body_of)) for seq, h in unsealed]
            return _checkpoint_rows(last, _batches(pending, size), key)

        made = self._store.seal(build, upto_seq)
        if made:
            self._sealed_hint = max(self._sealed_hint, made[-1].last_seq)
        return [_checkpoint(row) for row in made]

    def _day_of(self, seq: int, row_hash: str, body_of: Callable[[int], str]) -> str:
        """The UTC day of receipt ``seq``: remembered when this object built it (and the
        stored hash is the one it built), else read from the stored body."""
        known = self._days.pop(seq, None)
        if known is not None and known[0] == row_hash:
            return known[1]
        return day_of(body_of(seq))

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
        cp = self._store.checkpoint_for(row.seq)
        if cp is None:
            if key is None:
                raise ReceiptError(
                    f"receipt {receipt_id} is not sealed yet; seal the ledger with a key first",
                    receipt_id=receipt_id,
                )
            self.seal(key, row.seq)
            cp = self._store.checkpoint_for(row.seq)
            assert cp is not None
        leaves = [_leaf(h) for h in self._store.hashes(cp.first_seq, cp.last_seq)]
        index = row.seq - cp.first_seq
        path = inclusion_path(leaves, index)
        return InclusionProof(_receipt(row), _checkpoint(cp), index, tuple(path))

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
            while problem is None and pending and pending[0].last_seq <= row.seq:
                problem = roots.add_checkpoint(pending.pop(0))
            if problem is not None:
                return LedgerReport(False, count, row.id, row.seq, problem)
            count += 1
            last = row
        if pending:
            return LedgerReport(
                False, count, last.id if last else None, count, roots.missing(pending[0], count)
            )
        return LedgerReport(True, count)

    def export_jsonl(self, dest: PathOrFile) -> int:
        """Write every receipt as one canonical JSON line (``Receipt.to_json``); return count."""
        if isinstance(dest, str | os.PathLike):
            with open(dest, "w", encoding="utf-8") as fh:
                return self.export_jsonl(fh)
        count = 0
        pending = self._store.checkpoints()
        for row in self._store.rows():
            dest.write(f'{{"body":{row.body},"hash":"{row.hash}","signature":"{row.signature}"}}\n')
            count += 1
            while pending and pending[0].last_seq <= row.seq:
                cp = pending.pop(0)
                dest.write(
                    f'{{"checkpoint":{{"body":{cp.body},"hash":"{cp.hash}",'
                    f'"signature":"{cp.signature}"}}}}\n'
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
        self._sealed_hint = last.last_seq if last else 0
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


def _checked_rows(
    lines: Iterable[str], check: _ChainCheck, checkpoints: list[CheckpointRow]
) -> Iterator[Row]:
    """Verified receipt rows of an export; verified checkpoint rows go to ``checkpoints``."""
    roots = _RootCheck(check)
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = _parsed_row(line)
        except (ReceiptError, ValueError, TypeError, KeyError) as exc:
            raise ReceiptError(f"line {number}: {exc}") from exc
        if isinstance(row, CheckpointRow):
            problem = roots.add_checkpoint(row)
            if problem is not None:
                raise ReceiptError(f"line {number}: {problem}")
            checkpoints.append(row)
            continue
        problem = check.check(row)
        roots.add_receipt(row)
        if problem is not None:
            raise ReceiptError(
                f"line {number}: receipt {row.id}: {problem}", receipt_id=str(row.id)
            )
        yield row


def _parsed_row(line: str) -> Row | CheckpointRow:
    """The stored row of one export line: a checkpoint or a receipt (checked by the caller)."""
    data = json.loads(line)
    if isinstance(data, dict) and "checkpoint" in data:
        return Checkpoint.from_dict(data["checkpoint"]).row()
    r = Receipt.from_json(line)
    return Row(
        r.body.get("seq"),  # type: ignore[arg-type]  # checked by _ChainCheck
        r.body.get("id"),  # type: ignore[arg-type]
        r.hash,
        r.body.get("prev_hash"),  # type: ignore[arg-type]
        canonical_json(r.body).decode("utf-8"),
        r.signature,
    )
