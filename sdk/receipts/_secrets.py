"""The secrets guard: receipts never hold a field whose name looks like a credential."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

from intentmesh.errors import ReceiptError

__all__ = ["assert_no_secrets", "names_look_safe"]

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


def names_look_safe(d: Mapping[object, object]) -> bool:
    """True when none of ``d``'s own keys names a secret (its values are not looked at): the
    check :func:`assert_no_secrets` makes at each level, for a walk that visits every level."""
    return _known_safe.issuperset(d) or _secret_key(d) is None


def _secret_name(obj: object) -> str | None:
    if type(obj) is dict or isinstance(obj, Mapping):  # exact dicts skip the ABC check
        if not _known_safe.issuperset(obj):
            name = _secret_key(obj)
            if name is not None:
                return name
        values: Iterable[object] = obj.values()
    elif type(obj) is list or isinstance(obj, list | tuple):
        values = obj
    else:
        return None
    for v in values:
        if type(v) not in _SCALARS:
            name = _secret_name(v)
            if name is not None:
                return name
    return None


def _secret_key(d: Mapping[object, object]) -> str | None:
    """The first of ``d``'s own keys that names a secret; the others are remembered as safe."""
    for k in d:
        if isinstance(k, str):
            if _looks_secret(k):
                return k
            if len(_known_safe) < 4096:
                _known_safe.add(k)
    return None
