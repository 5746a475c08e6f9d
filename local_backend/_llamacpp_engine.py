"""The llama.cpp engine: a GGUF file through llama-cpp-python, inside our own ASGI app.

Running ``llama_cpp.Llama`` behind the same app as the torch engine gives both the same surface
(``/health``, ``/metrics``, errors, ``return_token_ids``, stop handling); llama-cpp-python's own
server has neither ``/health`` nor ``/metrics``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from intentmesh.local_backend._generation import SamplingParams

__all__ = ["LlamaCppEngine"]

_MAX_CONTEXT = 8192


class LlamaCppEngine:
    """One ``llama_cpp.Llama`` and the chat template from the GGUF metadata."""

    def __init__(self, model_id: str, llama: Any):
        self.model_id = model_id
        self._llama = llama
        self.context_length = min(int(llama.n_ctx()), int(llama._model.n_ctx_train()))
        self.eos_token_ids = frozenset({int(llama.token_eos())})
        self._formatter = _chat_formatter(llama)

    @classmethod
    def load(
        cls, path: str | Path, *, model_id: str | None = None, threads: int | None = None
    ) -> LlamaCppEngine:
        """Load a GGUF file with ``threads`` CPU threads (default: the usable cores)."""
        from intentmesh.local_backend._xllamacpp_engine import usable_cores

        llama = import_module("llama_cpp").Llama(
            model_path=str(path), n_ctx=_MAX_CONTEXT, verbose=False,
            n_threads=threads or usable_cores(), n_threads_batch=threads or usable_cores(),
        )  # fmt: skip
        return cls(model_id or Path(path).stem, llama)

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        if self._formatter is None:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
            return self._tokenize(text, add_bos=True)
        prompt = self._formatter(messages=list(messages)).prompt
        return self._tokenize(prompt, add_bos=False)

    def encode_prompt(self, prompt: str) -> list[int]:
        return self._tokenize(prompt, add_bos=True)

    def decode(self, token_ids: Sequence[int]) -> str:
        raw: bytes = self._llama.detokenize(list(token_ids), special=False)
        return raw.decode("utf-8", errors="replace")

    def sample(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[int]:
        seed = params.seed if params.seed is not None else secrets.randbits(31)
        self._llama.set_seed(seed)
        # Evaluate the whole prompt afresh. llama-cpp-python 0.3.36 otherwise reuses the
        # cached prefix (replaying one token to refresh the logits), and the same seed then
        # gave a different answer on a repeat (tests/local/test_smollm2.py).
        self._llama.reset()
        tokens = self._llama.generate(
            list(prompt_ids), temp=params.temperature, top_p=params.top_p, top_k=0,
            min_p=0.0, repeat_penalty=1.0, reset=True,
        )  # fmt: skip
        for token in tokens:
            yield int(token)

    def _tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        ids = self._llama.tokenize(text.encode(), add_bos=add_bos, special=True)
        return [int(i) for i in ids]


def _chat_formatter(llama: Any) -> Any:
    formatter: Any = import_module("llama_cpp.llama_chat_format").Jinja2ChatFormatter
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    vocab = llama._model  # token texts for the template's bos/eos variables
    bos = vocab.token_get_text(llama.token_bos()) if llama.token_bos() >= 0 else ""
    eos = vocab.token_get_text(llama.token_eos()) if llama.token_eos() >= 0 else ""
    return formatter(template=template, eos_token=eos, bos_token=bos)
