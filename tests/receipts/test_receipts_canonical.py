"""canonical_json and digest: RFC 8785 (JCS) vectors."""

from __future__ import annotations

import hashlib
import json
import math
import struct
from enum import IntEnum

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import canonical_json, digest


def from_bits(bits: int) -> float:
    return float(struct.unpack(">d", bits.to_bytes(8, "big"))[0])


# RFC 8785 Appendix B: IEEE 754 bits -> ECMAScript text
RFC_NUMBERS = [
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7FEFFFFFFFFFFFFF, "1.7976931348623157e+308"),
    (0xFFEFFFFFFFFFFFFF, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xC340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44B52D02C7E14AF5, "9.999999999999997e+22"),
    (0x44B52D02C7E14AF6, "1e+23"),
    (0x44B52D02C7E14AF7, "1.0000000000000001e+23"),
    (0x444B1AE4D6E2EF4E, "999999999999999700000"),
    (0x444B1AE4D6E2EF4F, "999999999999999900000"),
    (0x444B1AE4D6E2EF50, "1e+21"),
    (0x3EB0C6F7A0B5ED8C, "9.999999999999997e-7"),
    (0x3EB0C6F7A0B5ED8D, "0.000001"),
    (0x41B3DE4355555553, "333333333.3333332"),
    (0x41B3DE4355555554, "333333333.33333325"),
    (0x41B3DE4355555555, "333333333.3333333"),
    (0x41B3DE4355555556, "333333333.3333334"),
    (0x41B3DE4355555557, "333333333.33333343"),
    (0xBECBF647612F3696, "-0.0000033333333333333333"),
    (0x43143FF3C1CB0959, "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC_NUMBERS)
def test_rfc8785_numbers(bits: int, expected: str) -> None:
    assert canonical_json(from_bits(bits)) == expected.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2.0, "2"),
        (-0.0, "0"),
        (1, "1"),
        (-17, "-17"),
        (0.1, "0.1"),
        (4.5, "4.5"),
        (0.002, "0.002"),
        (1e-4, "0.0001"),
        (1e-5, "0.00001"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (4.263e-05, "0.00004263"),
        (1e16, "10000000000000000"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e30, "1e+30"),
        (1.5e300, "1.5e+300"),
        (123456789012.5, "123456789012.5"),
        (2**53, "9007199254740992"),
        (2**60, "1152921504606847000"),  # beyond 2**53: the nearest double, as JCS says
        (True, "true"),
        (False, "false"),
        (None, "null"),
    ],
)
def test_number_and_literal_format(value: object, expected: str) -> None:
    assert canonical_json(value) == expected.encode()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, [1.0, math.nan], {"a": math.inf}])
def test_nan_and_infinity_are_rejected(bad: object) -> None:
    with pytest.raises(ReceiptError, match="NaN"):
        canonical_json(bad)


def test_rfc8785_example_object() -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(text)) == expected.encode()


def test_keys_sort_by_utf16_code_units() -> None:
    # RFC 8785 3.2.3: the emoji (a surrogate pair, 0xD83D...) sorts before U+FB33.
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = list(json.loads(canonical_json(obj)))
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_nested_sorting_no_whitespace_and_utf8() -> None:
    obj = {"b": [1, {"z": 1, "a": "é"}], "a": {"y": None, "x": (1, 2)}, "B": ""}
    assert (
        canonical_json(obj) == '{"B":"","a":{"x":[1,2],"y":null},"b":[1,{"a":"é","z":1}]}'.encode()
    )


def test_string_escapes_are_minimal() -> None:
    assert (
        canonical_json('\x00\x1f\x7f\u2028"\\/\t') == b'"\\u0000\\u001f\x7f\xe2\x80\xa8\\"\\\\/\\t"'
    )


def test_subclasses_are_encoded_as_their_base() -> None:
    class Level(IntEnum):
        HIGH = 3

    assert canonical_json({"level": Level.HIGH}) == b'{"level":3}'


@pytest.mark.parametrize(
    "bad", [{1: "x"}, {"a": {None: 1}}, {"a": object()}, {"a": b"bytes"}, "\ud800"]
)
def test_unencodable_values_raise_receipt_error(bad: object) -> None:
    with pytest.raises(ReceiptError):
        canonical_json(bad)


def test_round_trip_is_stable() -> None:
    obj = {"cost": 4.263e-05, "big": 1e20, "tiny": 5e-324, "i": 2.0, "n": -0.0, "x": 2**60}
    once = canonical_json(obj)
    assert canonical_json(json.loads(once)) == once


def test_digest() -> None:
    assert digest({"b": 1, "a": 2}) == "sha256:" + hashlib.sha256(b'{"a":2,"b":1}').hexdigest()
    assert digest(b"raw") == "sha256:" + hashlib.sha256(b"raw").hexdigest()
    assert digest("héllo") == "sha256:" + hashlib.sha256("héllo".encode()).hexdigest()
    assert len(digest([])) == len("sha256:") + 64


def test_stored_bodies_parse_to_what_json_reads() -> None:
    """A receipt's body is parsed with orjson when installed: on canonical JSON it must give
    the values the standard library gives (numbers bit for bit; an integer written past
    2**64 may come back as the float it was), and re-encode to the very same bytes."""
    from intentmesh.receipts._receipt import _loads_body

    numbers = [from_bits(bits) for bits, _ in RFC_NUMBERS]
    numbers += [2**53, -(2**53), 2**60, 0.1, 1e-7, 1e21, -0.0, 12.0]
    obj = {
        "numbers": numbers,
        "text": ["é", "€", "\U0001f600", "\u2028", 'q"\\/', "\x00\x1f\x7f", ""],
        "nested": {"\u00e9": [True, False, None, {}], "a": [[], [{}]]},
    }
    text = canonical_json(obj)
    parsed, expected = _loads_body(text.decode()), json.loads(text)
    assert canonical_json(parsed) == text
    assert {k: v for k, v in parsed.items() if k != "numbers"} == {
        k: v for k, v in expected.items() if k != "numbers"
    }
    for got, want in zip(parsed["numbers"], expected["numbers"], strict=True):
        assert struct.pack(">d", got) == struct.pack(">d", want)
        assert type(got) is type(want) or abs(want) >= 2**64
