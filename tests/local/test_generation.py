"""The engine-neutral generation loop, with a scripted fake engine (no torch needed)."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from intentmesh.local_backend._generation import (
    PromptTooLong,
    SamplingParams,
    TextAssembler,
    check_budget,
    run_generation,
)

EOS = 0


class ScriptEngine:
    """Each token id is one byte; id 0 is EOS. ``script`` is what it will sample."""

    model_id = "script"
    context_length = 64
    eos_token_ids = frozenset({EOS})

    def __init__(self, script: bytes | list[int]):
        self.script = list(script)
        self.closed = False

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        return list("".join(m["content"] for m in messages).encode())

    def encode_prompt(self, prompt: str) -> list[int]:
        return list(prompt.encode())

    def decode(self, token_ids: Sequence[int]) -> str:
        return bytes(token_ids).decode("utf-8", errors="replace")

    def sample(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[int]:
        try:
            yield from self.script
            while True:
                yield ord("z")
        finally:
            self.closed = True


def generate(script: bytes | list[int], **params: Any) -> tuple[list[str], Any, ScriptEngine]:
    engine = ScriptEngine(script)
    deltas: list[str] = []
    params.setdefault("max_tokens", 50)
    result = run_generation(engine, [1], SamplingParams(**params), deltas.append, threading.Event())
    return deltas, result, engine


def test_stops_at_eos_and_counts_it() -> None:
    deltas, result, engine = generate(b"hello\x00more")
    assert result.text == "hello" == "".join(deltas)
    assert result.finish_reason == "stop"
    assert result.completion_tokens == 6
    assert engine.closed


def test_ignore_eos_runs_to_max_tokens() -> None:
    _, result, _ = generate(b"ab\x00cd", max_tokens=4, ignore_eos=True)
    assert (result.finish_reason, result.completion_tokens) == ("length", 4)


def test_max_tokens_gives_length() -> None:
    _, result, _ = generate(b"abcdefgh", max_tokens=3)
    assert (result.text, result.finish_reason, result.completion_tokens) == ("abc", "length", 3)


def test_stop_sequence_is_cut_and_never_streamed() -> None:
    deltas, result, _ = generate(b"one END two", stop=("END",))
    assert result.text == "one "
    assert "".join(deltas) == "one "
    assert result.finish_reason == "stop"
    assert result.completion_tokens == len("one END")


def test_a_partial_stop_match_is_released_when_it_does_not_complete() -> None:
    deltas, result, _ = generate(b"a EN b\x00", stop=("END",))
    assert result.text == "a EN b" == "".join(deltas)
    assert result.finish_reason == "stop"


def test_earliest_of_several_stops_wins() -> None:
    _, result, _ = generate(b"x--y##z", stop=("##", "--"))
    assert result.text == "x"


def test_utf8_characters_are_never_split_across_deltas() -> None:
    deltas, result, _ = generate("héllo €".encode() + b"\x00")
    assert result.text == "héllo €"
    assert all("\ufffd" not in d for d in deltas)


def test_invalid_bytes_still_reach_the_text_at_the_end() -> None:
    deltas, result, _ = generate([ord("a"), 0xE2, 0x82], max_tokens=3)
    assert result.text == "a\ufffd"
    assert "".join(deltas) == result.text


def test_cancel_stops_generation() -> None:
    engine = ScriptEngine(b"")
    cancel = threading.Event()
    cancel.set()
    result = run_generation(engine, [1], SamplingParams(max_tokens=50), lambda d: None, cancel)
    assert result.finish_reason == "abort"
    assert result.completion_tokens == 1


def test_text_assembler_holds_back_possible_stop_prefixes() -> None:
    assembler = TextAssembler(lambda ids: bytes(ids).decode(), ["STOP"])
    assert assembler.push(list(b"abc ST")) == "abc "
    assert assembler.push(list(b"abc STO")) == ""
    assert assembler.push(list(b"abc STOP")) == ""
    assert assembler.stopped


def test_budget_fills_the_context_or_refuses() -> None:
    engine = ScriptEngine(b"")
    assert check_budget(engine, [1] * 10, None) == 54
    assert check_budget(engine, [1] * 10, 54) == 54
    with pytest.raises(PromptTooLong, match="maximum context length is 64"):
        check_budget(engine, [1] * 10, 55)
    with pytest.raises(PromptTooLong):
        check_budget(engine, [1] * 64, None)


def test_importing_the_package_loads_no_heavy_module() -> None:
    code = (
        "import sys, intentmesh, intentmesh.local_backend, intentmesh.local_backend.cli\n"
        "heavy = {'torch', 'transformers', 'llama_cpp', 'vllm', 'uvicorn', 'starlette'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
