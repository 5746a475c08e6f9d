"""Merkle trees over receipt hashes, RFC 9162 (Certificate Transparency v2) style.

Leaves are the 32-byte SHA-256 values of receipt hashes; ``leaf = H(0x00 || value)`` and
``node = H(0x01 || left || right)``, so a leaf can never pass for a node. A tree of ``n``
leaves splits at the largest power of two below ``n``, which is the same as building it bottom
up and carrying an odd last node up unchanged. An inclusion path has at most
``ceil(log2(n))`` hashes: 10 for a batch of 1,024 receipts.

    >>> leaves = [bytes([i]) * 32 for i in range(5)]
    >>> root = merkle_root(leaves)
    >>> verify_path(leaves[3], 3, 5, inclusion_path(leaves, 3), root)
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "inclusion_path",
    "leaf_hash",
    "merkle_root",
    "root_from_path",
    "verify_path",
]

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(value: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + value).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _next_level(level: list[bytes]) -> list[bytes]:
    up = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        up.append(level[-1])  # an odd node is carried up unchanged
    return up


def merkle_root(values: Sequence[bytes]) -> bytes:
    """The root over ``values`` (raw leaf data, not yet leaf-hashed)."""
    if not values:
        return EMPTY_ROOT
    level = [leaf_hash(v) for v in values]
    while len(level) > 1:
        level = _next_level(level)
    return level[0]


def inclusion_path(values: Sequence[bytes], index: int) -> list[bytes]:
    """The sibling hashes from leaf ``index`` up to the root (RFC 9162 ``PATH``)."""
    if not 0 <= index < len(values):
        raise IndexError(f"leaf {index} is outside a tree of {len(values)}")
    level = [leaf_hash(v) for v in values]
    path: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        level = _next_level(level)
        index >>= 1
    return path


def root_from_path(value: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root that ``path`` proves for leaf ``value`` at ``index``; None if it cannot fit."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf_hash(value)
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def verify_path(
    value: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """True iff ``path`` proves leaf ``value`` at ``index`` of a ``size`` tree with ``root``."""
    return root_from_path(value, index, size, path) == root
