"""Engine-neutral generation: what an engine must provide, and the loop that drives it.

An engine only turns text into token ids, samples token ids, and turns ids back into text.
Everything OpenAI-visible about an answer (stop sequences, ``max_tokens``, finish reasons, streamed
deltas that never split a UTF-8 character or leak the start of a stop sequence) lives here, once,
so every engine behaves the same and this logic is tested without torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "Engine",
    "GenerationResult",
    "PromptTooLong",
    "replayed",
    "SamplingParams",
    "TextAssembler",
    "run_generation",
]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to sample one answer: ``temperature == 0`` is greedy, ``seed`` makes it repeatable."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # vLLM's extension, for benchmarks


@dataclass(slots=True)
class GenerationResult:
    """One finished answer: visible text, every generated id (EOS included) and why it ended."""

    text: str
    prompt_token_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    extension: dict[str, Any] = field(default_factory=dict)
    """Extension fields for the answer's choice (``toploc_proofs``, ``toploc_verification``)."""

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


class PromptTooLong(ValueError):
    """The prompt plus the requested answer does not fit the model's context."""


class Engine(Protocol):
    """The few things a generation engine does; it runs on one worker thread only."""

    model_id: str
    context_length: int
    eos_token_ids: frozenset[int]

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Token ids of a chat, through the model's chat template when it has one."""
        ...

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a raw completion prompt."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``, special tokens left out."""
        ...

    def sample(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[int]:
        """Yield sampled token ids one by one, without end; closing the iterator frees its state."""
        ...


class TextAssembler:
    """Turns a growing list of token ids into safe text deltas and finds stop sequences."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stop: Sequence[str]):
        self._decode = decode
        self._stop = [s for s in stop if s]
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self._text = ""
        self.emitted = ""
        self.stopped = False

    def push(self, token_ids: Sequence[int]) -> str:
        """Take the ids so far; return the new text that is safe to show (may be empty)."""
        self._text = self._decode(token_ids)
        cut = self._find_stop()
        if cut is not None:
            self.stopped = True
            self._text = self._text[:cut]
            return self._take(len(self._text))
        safe = len(self._text.rstrip("\ufffd"))  # an unfinished UTF-8 character waits
        safe = min(safe, len(self._text) - self._stop_prefix_len())
        return self._take(safe)

    def finish(self) -> str:
        """The text still held back, once generation is over."""
        return self._take(len(self._text))

    def _take(self, end: int) -> str:
        if end <= len(self.emitted) or not self._text.startswith(self.emitted):
            return ""
        delta = self._text[len(self.emitted) : end]
        self.emitted += delta
        return delta

    def _find_stop(self) -> int | None:
        start = max(0, len(self.emitted) - self._longest_stop)
        hits = [i for i in (self._text.find(s, start) for s in self._stop) if i >= 0]
        return min(hits) if hits else None

    def _stop_prefix_len(self) -> int:
        """Length of the longest tail of the text that could still grow into a stop sequence."""
        for size in range(min(self._longest_stop - 1, len(self._text)), 0, -1):
            tail = self._text[-size:]
            if any(s.startswith(tail) for s in self._stop):
                return size
        return 0


def check_budget(engine: Engine, prompt_ids: Sequence[int], max_tokens: int | None) -> int:
    """The number of tokens the answer may have; raises :class:`PromptTooLong`."""
    room = engine.context_length - len(prompt_ids)
    if room <= 0 or (max_tokens is not None and max_tokens > room):
        wanted = max_tokens if max_tokens is not None else 0
        raise PromptTooLong(
            f"This model's maximum context length is {engine.context_length} tokens. However, "
            f"you requested {len(prompt_ids) + wanted} tokens ({len(prompt_ids)} in the "
            f"messages, {wanted} in the completion). Please reduce the length of the messages "
            "or completion."
        )
    return room if max_tokens is None else max_tokens


def replayed(engine: Engine, prompt_ids: list[int], token_ids: list[int]) -> GenerationResult:
    """Another engine's answer taken as given (to check it), not generated here."""
    ended = bool(token_ids) and token_ids[-1] in engine.eos_token_ids
    return GenerationResult(
        text=engine.decode(token_ids), prompt_token_ids=prompt_ids, token_ids=list(token_ids),
        finish_reason="stop" if ended else "length",
    )  # fmt: skip


def run_generation(
    engine: Engine,
    prompt_ids: list[int],
    params: SamplingParams,
    on_delta: Callable[[str], None],
    cancel: threading.Event,
) -> GenerationResult:
    """Generate one answer on the calling (worker) thread, reporting text deltas as they form."""
    result = GenerationResult(text="", prompt_token_ids=prompt_ids)
    assembler = TextAssembler(engine.decode, params.stop)
    visible: list[int] = []
    tokens = engine.sample(prompt_ids, params)
    try:
        for token in tokens:
            result.token_ids.append(token)
            if token in engine.eos_token_ids and not params.ignore_eos:
                result.finish_reason = "stop"
                break
            visible.append(token)
            delta = assembler.push(visible)
            if delta:
                on_delta(delta)
            if assembler.stopped:
                result.finish_reason = "stop"
                break
            if len(result.token_ids) >= params.max_tokens or cancel.is_set():
                result.finish_reason = "abort" if cancel.is_set() else "length"
                break
    finally:
        close = getattr(tokens, "close", None)
        if close is not None:
            close()
    tail = assembler.finish()
    if tail:
        on_delta(tail)
    result.text = assembler.emitted
    return result
