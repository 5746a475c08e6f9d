"""The OpenAI/vLLM wire format, as pure functions: validate a request, plan the answer
deterministically, and render it as a JSON body or as SSE events.

Token accounting (no tokenizer, exact and documented):

* a *word* is a maximal run of non-whitespace characters (``str.split()``);
* chat ``prompt_tokens`` = words in every message's text content + 3 per message;
  completions ``prompt_tokens`` = words in the prompt(s);
* ``completion_tokens`` = words in the answer; a stream sends one word per content chunk (each
  with its leading whitespace, so the chunks concatenate to the exact text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from intentmesh.testing._faults import error_body

__all__ = [
    "Plan",
    "WireError",
    "Wire",
    "chat_prompt_tokens",
    "count_words",
    "default_reply",
    "full_body",
    "parse_request",
    "plan_answer",
    "split_words",
    "stream_events",
]

Kind = Literal["chat", "text"]
ReplyFn = Callable[[Any], str]

TOKENS_PER_MESSAGE = 3
_WORD = re.compile(r"\s*\S+")


class WireError(Exception):
    """A request the fake rejects: ``status`` plus the OpenAI error body."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, status, param)


@dataclass(frozen=True, slots=True)
class Wire:
    """The parts of a generation request the fake acts on."""

    kind: Kind
    model: str
    prompt: Any  # the messages list (chat) or the prompt string (completions)
    stream: bool
    include_usage: bool
    max_tokens: int | None
    stop: tuple[str, ...]
    prefill: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole answer, decided before the first byte is sent."""

    wire: Wire
    words: tuple[str, ...]
    finish_reason: str
    prompt_tokens: int

    @property
    def text(self) -> str:
        return "".join(self.words)

    def usage(self, factor: float = 1.0) -> dict[str, int]:
        prompt = round(self.prompt_tokens * factor)
        completion = round(len(self.words) * factor)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


def count_words(text: str) -> int:
    return len(text.split())


def split_words(text: str) -> list[str]:
    """Each word with its leading whitespace; ``"".join`` gives ``text`` minus trailing space."""
    return _WORD.findall(text)


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or the ``text`` of each part of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def chat_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(count_words(content_text(m.get("content"))) + TOKENS_PER_MESSAGE for m in messages)


def default_reply(prompt: Any) -> str:
    """``"echo: <last user message>"`` for chat, ``"echo: <prompt>"`` for completions."""
    if isinstance(prompt, str):
        return f"echo: {prompt}"
    users = [m for m in prompt if m.get("role") == "user"]
    return f"echo: {content_text(users[-1].get('content')) if users else ''}"


# -- request validation ----------------------------------------------------------------------


def parse_request(kind: Kind, payload: Any) -> Wire:
    """Validate a generation request the way vLLM does, raising :class:`WireError` (400)."""
    if not isinstance(payload, dict):
        raise WireError(400, "request body must be a JSON object")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "'model' is required and must be a string", "model")
    prompt = _parse_messages(payload) if kind == "chat" else _parse_prompt(payload)
    prefill = None
    if kind == "chat" and payload.get("continue_final_message") is True:
        if prompt[-1].get("role") != "assistant":
            raise WireError(400, "continue_final_message needs a final assistant message")
        prefill, prompt = content_text(prompt[-1].get("content")), prompt[:-1]
    stream = payload.get("stream") or False
    if not isinstance(stream, bool):
        raise WireError(400, "'stream' must be a boolean", "stream")
    options = payload.get("stream_options") or {}
    if not isinstance(options, dict):
        raise WireError(400, "'stream_options' must be an object", "stream_options")
    if payload.get("n", 1) not in (1, None):
        raise WireError(400, "the fake provider only supports n=1", "n")
    return Wire(
        kind=kind,
        model=model,
        prompt=prompt,
        stream=stream,
        include_usage=bool(options.get("include_usage")),
        max_tokens=_parse_max_tokens(payload),
        stop=_parse_stop(payload.get("stop")),
        prefill=prefill,
    )


def _parse_messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages = payload.get("messages")
    if messages is None:
        raise WireError(400, "'messages' is a required property", "messages")
    if not isinstance(messages, list) or not messages:
        raise WireError(400, "'messages' must be a non-empty list", "messages")
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise WireError(400, "each message must be an object with a 'role'", "messages")
    return messages


def _parse_prompt(payload: dict[str, Any]) -> str:
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return "\n".join(prompt)
    raise WireError(400, "'prompt' must be a string or a list of strings", "prompt")


def _parse_max_tokens(payload: dict[str, Any]) -> int | None:
    for key in ("max_tokens", "max_completion_tokens"):
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise WireError(400, f"'{key}' must be a positive integer", key)
        return value
    return None


def _parse_stop(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    if isinstance(stop, str):
        return (stop,) if stop else ()
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return tuple(s for s in stop if s)
    raise WireError(400, "'stop' must be a string or a list of strings", "stop")


# -- planning --------------------------------------------------------------------------------


def plan_answer(wire: Wire, reply: ReplyFn, fill: bool) -> Plan:
    """Apply ``stop`` (cut before the earliest match, ``finish_reason="stop"``) and then
    ``max_tokens`` (keep that many words, ``"length"``). With ``fill`` and ``max_tokens`` the
    reply is repeated past ``max_tokens``, so the answer always ends by ``"length"``."""
    text = reply(wire.prompt)
    if wire.prefill and text.startswith(wire.prefill):  # vLLM continue_final_message
        text = text[len(wire.prefill) :]
    if fill and wire.max_tokens is not None and text.strip():
        base = text.split()
        repeats = wire.max_tokens // len(base) + 2
        text = " ".join(base * repeats)
    cuts = [i for i in (text.find(s) for s in wire.stop) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    words = split_words(text)
    finish = "stop"
    if wire.max_tokens is not None and len(words) > wire.max_tokens:
        words, finish = words[: wire.max_tokens], "length"
    if wire.kind == "chat":
        prompt_tokens = chat_prompt_tokens(wire.prompt)
    else:
        prompt_tokens = count_words(wire.prompt)
    return Plan(wire, tuple(words), finish, prompt_tokens)


# -- rendering -------------------------------------------------------------------------------


def full_body(plan: Plan, ident: str, created: int, model: str, usage_factor: float) -> bytes:
    if plan.wire.kind == "chat":
        message = {"role": "assistant", "content": plan.text}
        choice: dict[str, Any] = {"index": 0, "message": message}
        obj = "chat.completion"
    else:
        choice, obj = {"index": 0, "text": plan.text}, "text_completion"
    choice.update(logprobs=None, finish_reason=plan.finish_reason)
    body = {
        "id": ident,
        "object": obj,
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": plan.usage(usage_factor),
    }
    return _dumps(body)


def stream_events(
    plan: Plan, ident: str, created: int, model: str, usage_factor: float
) -> tuple[list[bytes], int]:
    """Every SSE event of the answer, ``[DONE]`` included, and the finish chunk's index."""
    chat = plan.wire.kind == "chat"
    obj = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        chunk = {"id": ident, "object": obj, "created": created, "model": model}
        return b"data: " + _dumps({**chunk, "choices": choices, **extra}) + b"\n\n"

    def choice(piece: str | None, finish: str | None) -> dict[str, Any]:
        if chat:
            delta = {} if piece is None else {"content": piece}
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish}

    events = []
    if chat:
        role = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        events.append(event([role]))
    events.extend(event([choice(word, None)]) for word in plan.words)
    finish_index = len(events)
    events.append(event([choice(None, plan.finish_reason)]))
    if plan.wire.include_usage:
        events.append(event([], usage=plan.usage(usage_factor)))
    events.append(b"data: [DONE]\n\n")
    return events, finish_index


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
