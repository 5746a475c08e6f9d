"""One definition of error kinds, and every error class drawn in the tree of ``errors``."""

from __future__ import annotations

import intentmesh.errors as errors
from intentmesh.adapters._http import StreamTruncated
from intentmesh.local_backend import _errors as local_errors

CLASSES = [
    c for c in (getattr(errors, n) for n in errors.__all__)
    if isinstance(c, type) and issubclass(c, errors.IntentmeshError)
]  # fmt: skip
ELSEWHERE = [StreamTruncated] + [
    c for c in (getattr(local_errors, n) for n in local_errors.__all__)
    if isinstance(c, type) and issubclass(c, errors.IntentmeshError)
]  # fmt: skip


# The base names no kind; LimitExceeded's kind is per instance (which limit refused).
PER_INSTANCE = {errors.IntentmeshError, getattr(errors, "LimitExceeded", None)}


def test_every_error_class_states_its_kind_as_a_class_attribute() -> None:
    assert not hasattr(errors, "_KINDS")
    named = [cls for cls in CLASSES if cls not in PER_INSTANCE]
    for cls in named:
        assert isinstance(cls.__dict__.get("kind"), str), cls.__name__
    kinds = {cls.kind: cls for cls in named if cls is not errors.MissingApiKey}
    assert len(kinds) == len(named) - 1  # one kind per class; a missing key is an auth error
    assert errors.MissingApiKey("K").kind == errors.AuthenticationError.kind == "auth"


def test_subclasses_elsewhere_keep_their_parents_kind() -> None:
    assert StreamTruncated("cut").kind == "connection"
    assert local_errors.ServerStartFailed("down").kind == "unavailable"
    assert local_errors.ServerStartTimeout("slow").kind == "timeout"


def test_every_error_class_is_drawn_in_the_tree() -> None:
    tree = errors.__doc__ or ""
    for cls in CLASSES + ELSEWHERE:
        assert cls.__name__ in tree, f"{cls.__name__} is missing from the tree in errors.py"
