"""Canonical JSON (RFC 8785 / JCS) and the ``sha256:`` digests of receipts.

>>> canonical_json({"b": 1, "a": [1.0, "é"]}).decode()
'{"a":[1,"é"],"b":1}'
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from intentmesh.errors import ReceiptError

__all__ = ["canonical_json", "digest"]

_SAFE_INT = 2**53
_encode_str = json.encoder.encode_basestring  # the C version: minimal escapes, UTF-8 kept


def canonical_json(obj: object) -> bytes:
    """RFC 8785 (JCS) bytes of ``obj``: sorted keys, no whitespace, JS number format, UTF-8.

    Raises :class:`ReceiptError` for NaN/Infinity, non-string keys, lone surrogates and types
    JSON cannot hold. Integers beyond ±2**53 become the nearest double, as JCS prescribes.
    """
    fast = _fast(obj)
    return fast if fast is not None else _utf8(_encode(obj))


# -- the fast path: orjson, where its bytes are the JCS bytes --------------------------------

try:
    import orjson as _orjson
except ImportError:  # the pure encoder below serves alone
    _orjson = None  # type: ignore[assignment]


class _NotPlain(Exception):
    """A value the fast path does not vouch for: the pure encoder takes the whole object."""


SLOTS: tuple[Any, ...] = (
    tuple(_orjson.Fragment(f"\x00{i}\x00") for i in range(4)) if _orjson is not None else ()
)
"""Placeholders the ledger puts in a body where per-row values go: each comes out of
:func:`_fast` as ``NUL digit NUL``, which no JSON string can hold unescaped."""
_SLOT_IDS = frozenset(id(slot) for slot in SLOTS)


def _fast(obj: object, names_ok: NamesCheck | None = None) -> bytes | None:
    """orjson's bytes of ``obj`` when they are exactly the pure encoder's, else None.

    That holds for plain JSON data (exact ``dict`` with ``str`` keys, ``list``, ``tuple``,
    ``str``, ``int``, ``float``, ``bool``, ``None``) whose bytes are ASCII (then keys sort the
    same by code point and by UTF-16 unit): orjson escapes strings as ``json`` does, and the
    numbers it writes otherwise than ECMAScript go in pre-formatted. Anything else, errors
    included, is left to the pure encoder, which says what is wrong. ``names_ok`` vets each
    dict's own keys on the way (None when one fails: the caller's full check says why).
    """
    if _orjson is None:
        return None
    try:
        raw = _orjson.dumps(_plain(obj, names_ok), option=_orjson.OPT_SORT_KEYS)
    except (_NotPlain, TypeError, ReceiptError):  # orjson.JSONEncodeError is a TypeError
        return None
    return raw if raw.isascii() else None


NamesCheck = Callable[[dict[Any, Any]], bool]
"""Whether one dict's own keys (not its values') are acceptable, for :func:`_fast`."""


def _plain(o: Any, names_ok: NamesCheck | None = None) -> Any:
    """``o`` with each number orjson would write differently replaced by its JCS text.

    Copy on write: a container none of whose values changes is returned as it is, and the
    common leaves (strings, in-range numbers, slots) are checked in the container's loop, not
    by a call each.
    """
    t = type(o)
    if t is dict:
        return _plain_dict(o, names_ok)
    if t is list or t is tuple:
        return _plain_items(o, enumerate(o), list, names_ok)
    return _plain_leaf(o)


def _plain_dict(d: dict[Any, Any], names_ok: NamesCheck | None) -> Any:
    if names_ok is not None and not names_ok(d):
        raise _NotPlain
    return _plain_items(d, d.items(), dict, names_ok)


def _plain_leaf(o: Any) -> Any:
    """A value that is not a container, as :func:`_plain` returns it."""
    t = type(o)
    if t is str or t is bool or o is None:
        return o
    if t is float:
        if 1e-4 <= abs(o) < 1e16 and not o.is_integer():
            return o  # shortest round-trip digits, decimal notation: the same in both
        return _orjson.Fragment(_encode_float(o))  # NaN/Infinity raise ReceiptError
    if t is int:
        return o if -_SAFE_INT <= o <= _SAFE_INT else _orjson.Fragment(_encode(o))
    if id(o) in _SLOT_IDS:
        return o
    raise _NotPlain


def _plain_items(
    container: Any, items: Iterable[tuple[Any, Any]], copy: type, names_ok: NamesCheck | None
) -> Any:
    """``container`` (whose ``items`` are its keys or indexes and values), or a ``copy`` of it
    with the values that :func:`_plain` changes replaced."""
    out: Any = None
    for k, v in items:
        t = type(v)  # the leaves that go as they are, inline (a call each costs more)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if -_SAFE_INT <= v <= _SAFE_INT:
                continue
            new = _plain_leaf(v)
        elif t is float:
            if 1e-4 <= abs(v) < 1e16 and not v.is_integer():
                continue
            new = _plain_leaf(v)
        elif t is dict:
            new = _plain_dict(v, names_ok)
        elif t is list or t is tuple:
            new = _plain_items(v, enumerate(v), list, names_ok)
        elif id(v) in _SLOT_IDS:
            continue
        else:
            new = _plain_leaf(v)
        if new is not v:
            if out is None:
                out = copy(container)
            out[k] = new
    return container if out is None else out


# -- the pure encoder --------------------------------------------------------------------------


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; a lone surrogate, which UTF-8 cannot hold, is a ReceiptError."""
    try:
        return text.encode("utf-8")
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
    size = abs(x)
    if 1e-4 <= size < 1e16:
        return repr(x)  # Python's shortest repr is ECMAScript's in this range
    if 1e-6 <= size < 1e-4:  # small costs: repr writes "d[.ddd]e-05" or "d[.ddd]e-06"
        mantissa, _, exp = repr(size).partition("e")
        text = ("0.0000" if exp == "-05" else "0.00000") + mantissa.replace(".", "")
        return "-" + text if x < 0 else text
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
