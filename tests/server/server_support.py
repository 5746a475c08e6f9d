"""Names shared by the server tests (kept out of conftest.py, whose module name is not unique)."""

from __future__ import annotations

from collections.abc import Callable

from intentmesh.server import ThreadedServer

MODEL = "llama-3.1-8b-instruct"
ServeFactory = Callable[..., ThreadedServer]
