"""Canonical JSON's orjson fast path gives exactly the pure encoder's bytes, or steps aside.

Every receipt is signed over these bytes, so the fast path is checked against the pure encoder
(the reference, tested against RFC 8785's vectors elsewhere) on random data, on a large sample
of doubles, on the boundaries where number formats change, and on every type it must refuse.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import random
import struct
import types
import uuid
from typing import Any

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import SigningKey, canonical_json
from intentmesh.receipts._canonical import _encode, _fast, _utf8
from intentmesh.receipts._ledger import (
    _ROW_FIELDS,
    _encode_members,
    _encode_str,
    _fast_template,
    _row_template,
)

orjson = pytest.importorskip("orjson")

KEYS = ["a", "b", "B", "_", "id", "seq", "a b", "zz", "10", "9", ""]
KEYS += ["ü", "é", "😀", "\ue000", "\x7f", "a\nb"]  # \ue000 vs 😀: UTF-16 order differs from UTF-8
CHARS = ["a", "Z", "0", " ", '"', "\\", "/", "\x00", "\x1f", "\x7f", "\u2028", "é", "€", "😀"]
EDGE_FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 1e-4, 9.999999999999999e-05, 1e-5, 1e-6, 1.5e-6, 1e-7, 2.5e-7,
    1e16, 9999999999999998.0, 1e21, 1e-324, 5e-324, 1.7976931348623157e308, 123.456, 1e15 + 0.5,
    2.0**53, 2.0**53 + 2, 0.1 + 0.2, 1 / 3, -2.5e-7, 100.0, 1e22,
]  # fmt: skip
EDGE_INTS = [0, -1, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30]


def pure(obj: object) -> bytes:
    return _utf8(_encode(obj))


def outcome(fn: Any, obj: object) -> tuple[str, object]:
    try:
        return "ok", fn(obj)
    except ReceiptError as exc:
        return "error", str(exc)


def random_double(rng: random.Random) -> float:
    return struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]  # type: ignore[no-any-return]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    if depth < 3 and roll < 0.35:
        items = [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return items if rng.random() < 0.7 else tuple(items)
    if roll < 0.55:
        return "".join(rng.choice(CHARS) if rng.random() < 0.3 else "x" for _ in range(6))
    if roll < 0.7:
        return rng.choice(EDGE_FLOATS + [rng.uniform(-1e3, 1e3), 10 ** rng.uniform(-9, 22)])
    if roll < 0.8:
        return rng.choice(EDGE_INTS + [rng.randint(-1000, 1000)])
    if roll < 0.85:
        return random_double(rng)  # NaN and Infinity included, now and then
    return rng.choice([True, False, None])


def test_random_documents_encode_alike_and_most_take_the_fast_path() -> None:
    rng = random.Random(8785)
    fast = 0
    for _ in range(4000):
        doc = {rng.choice(KEYS): random_value(rng) for _ in range(rng.randint(1, 8))}
        assert outcome(canonical_json, doc) == outcome(pure, doc), doc
        fast += _fast(doc) is not None
    assert fast > 500  # the comparison above exercised the fast path, not only the fallback


def test_doubles_encode_alike() -> None:
    rng = random.Random(754)
    sample = EDGE_FLOATS + [random_double(rng) for _ in range(50_000)]
    sample += [10 ** rng.uniform(-8, 22) * rng.choice([1, -1]) for _ in range(50_000)]
    sample += [float(rng.randint(-(2**60), 2**60)) for _ in range(5_000)]
    for x in sample:
        if math.isfinite(x):
            assert canonical_json([x]) == pure([x]), repr(x)
        else:
            with pytest.raises(ReceiptError, match="NaN and Infinity"):
                canonical_json([x])


def test_integers_past_two_to_the_53_become_doubles_as_jcs_says() -> None:
    for n in EDGE_INTS:
        assert canonical_json({"n": n}) == pure({"n": n}), n
    assert canonical_json(2**53 + 1) == b"9007199254740992"


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    ONE = 1


class Name(str):
    pass


class Box(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize(
    "value",
    [
        Colour.RED,
        Level.ONE,
        Name("x"),
        Box(a=1),
        types.MappingProxyType({"a": 1}),
        uuid.UUID(int=7),
        decimal.Decimal("1.5"),
        datetime.datetime(2026, 12, 1),
        {1, 2},
        b"bytes",
        orjson.Fragment(b'{"raw":true}'),
        {1: "non-string key"},
        "lone \ud800 surrogate",
    ],
    ids=repr,
)
def test_what_the_fast_path_does_not_vouch_for_gets_the_pure_encoders_answer(
    value: object,
) -> None:
    doc = {"field": value, "other": [1.0, 2.5e-7]}
    assert _fast(doc) is None
    assert outcome(canonical_json, doc) == outcome(pure, doc)


def test_receipt_bodies_get_the_same_template_either_way() -> None:
    """The ledger's one-pass template (orjson, chain fields as slots) joins to the same text as
    the member-by-member template, for random fields and random chain values."""
    rng = random.Random(1024)
    key = SigningKey.generate()
    fixed = {"version": 1, "key_id": key.key_id, "public_key": key.public_key_hex()}
    taken = 0
    for _ in range(1500):
        fields = {rng.choice(KEYS) + str(i): random_value(rng) for i in range(rng.randint(0, 8))}
        fields = {k: v for k, v in fields.items() if k not in {*_ROW_FIELDS, *fixed}}
        body = {**fields, **fixed}
        try:
            members, ascii_only = _encode_members(body)
        except ReceiptError:
            assert _fast_template(body) is None
            continue
        slow = _row_template(members, ascii_only)
        fast = _fast_template(body)
        if fast is None:
            continue
        taken += 1
        chain = ['"rcpt_X"', '"sha256:00"', str(rng.randint(1, 10**9)), '"2026-12-01T00:00Z"']
        assert joined(fast, chain) == joined(slow, chain), body
        assert joined(fast, chain).encode() == pure(
            {**body, **dict(zip(_ROW_FIELDS, [orjson.loads(c) for c in chain], strict=True))}
        )
    assert taken > 300


def joined(template: list[str | int], chain: list[str]) -> str:
    return "".join(chain[p] if isinstance(p, int) else p for p in template)


def test_a_receipt_with_non_ascii_fields_is_written_by_the_pure_encoder_and_verifies(
    tmp_path: Any,
) -> None:
    from intentmesh.receipts import Ledger

    ledger = Ledger(tmp_path / "l.db")
    key = SigningKey.generate()
    receipt = ledger.append({"model": "modèle", "cost_usd": 2.5e-7, "flags": ["ü"]}, key)
    assert receipt.body["model"] == "modèle"
    assert ledger.verify().ok
    assert _encode_str("é") == '"é"'
