"""The xllamacpp engine: llama.cpp's own server loop, in process, from a prebuilt wheel.

``xllamacpp`` ships manylinux abi3 wheels of llama.cpp with its OpenAI-style handlers, so the
default local engine installs in seconds and compiles nothing. It takes whole OpenAI bodies (chat
template, sampling, stop, ``response_format`` grammars are llama.cpp's), so it is a
:class:`NativeEngine` rather than a token-level :class:`~._generation.Engine`: our app validates
the request, calls :meth:`XLlamaCppEngine.handle` on a thread, and answers in our own shapes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any, Literal, Protocol

__all__ = ["NativeEngine", "XLlamaCppEngine", "usable_cores"]

_MAX_CONTEXT = 8192

Kind = Literal["chat", "completion"]
OnChunk = Callable[[dict[str, Any]], bool]
"""Gets each streamed chunk; returns True to stop generation."""


class NativeEngine(Protocol):
    """An engine that answers OpenAI request bodies itself, on the calling thread."""

    model_id: str
    context_length: int

    def handle(self, kind: Kind, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any]:
        """The whole answer (``on_chunk`` None) or stream chunks to ``on_chunk``; returns
        ``{}`` after a stream. Errors come back as ``{"error": {...}}`` or raise."""
        ...


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class XLlamaCppEngine:
    """One ``xllamacpp.Server`` (one slot: requests run one at a time, in order)."""

    def __init__(self, model_id: str, server: Any, context_length: int):
        self.model_id = model_id
        self.context_length = context_length
        self._server = server

    @classmethod
    def load(
        cls, path: str | Path, *, model_id: str | None = None, threads: int | None = None
    ) -> XLlamaCppEngine:
        """Load a GGUF file with ``threads`` CPU threads (default: the usable cores)."""
        x: Any = import_module("xllamacpp")
        params = x.CommonParams()
        params.model.path = str(path)
        params.n_ctx = _MAX_CONTEXT
        params.n_parallel = 1
        params.use_jinja = True  # the GGUF's own chat template, as transformers renders it
        params.warmup = False
        params.cache_prompt = False  # a reused KV cache shifts greedy answers; same in, same out
        params.verbosity = -1
        params.cpuparams.n_threads = threads or usable_cores()
        params.cpuparams_batch.n_threads = threads or usable_cores()
        return cls(model_id or Path(path).stem, x.Server(params), _MAX_CONTEXT)

    def handle(self, kind: Kind, body: dict[str, Any], on_chunk: OnChunk | None) -> dict[str, Any]:
        call = (
            self._server.handle_chat_completions
            if kind == "chat"
            else self._server.handle_completions
        )
        if on_chunk is None:
            result: dict[str, Any] = call(body)
            return result
        call(body, on_chunk)
        return {}
