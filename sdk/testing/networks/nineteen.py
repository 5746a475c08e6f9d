"""``FakeNineteen``: Nineteen's (SN19) OpenAI-compatible API on loopback.

Bearer auth and FastAPI ``{"detail": ...}`` errors (Nineteen's error bodies are not documented;
this is the FastAPI shape its stack uses, UNCONFIRMED).
"""

from __future__ import annotations

from typing import Any, ClassVar

from intentmesh.testing.networks._base import NetworkFake

__all__ = ["FakeNineteen"]


class FakeNineteen(NetworkFake):
    """Nineteen on loopback."""

    messages: ClassVar[dict[int, str]] = {401: "Invalid API key", 429: "Rate limit exceeded"}

    def __init__(self, models: Any = ("unsloth/Llama-3.2-3B-Instruct",), **kwargs: Any) -> None:
        super().__init__(models, **kwargs)
