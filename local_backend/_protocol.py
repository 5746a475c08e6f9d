"""The OpenAI wire format, as vLLM's server speaks it: request models, answers, chunks, errors.

Pure data mapping, no I/O; the endpoints and error shapes are in ``docs/local.md`` ("Running it").
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from intentmesh.errors import validation_message
from intentmesh.local_backend._generation import GenerationResult, SamplingParams

__all__ = [
    "Extension",
    "LocalApiError",
    "ChatBody",
    "CompletionBody",
    "answer",
    "chunk",
    "error_body",
    "parse_body",
    "sse",
    "usage_chunk",
]

_ERROR_TYPES = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError"}
_ERROR_TYPES |= {405: "MethodNotAllowedError", 503: "ServiceUnavailableError"}


class LocalApiError(Exception):
    """An error answered as ``{"error": {...}}`` with ``status``."""

    def __init__(self, status: int, message: str, *, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param


ApiError = LocalApiError  # the earlier name, for code written before the rename


def error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """The OpenAI/vLLM error object."""
    kind = _ERROR_TYPES.get(status, "BadRequestError" if status < 500 else "InternalServerError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class StreamOptions(BaseModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

    def plain(self) -> dict[str, Any]:
        content = self.content
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        return {"role": self.role, "content": content or ""}


class ToplocCheck(BaseModel):
    """Another server's answer to check: its generated ids and their TOPLOC proofs."""

    model_config = ConfigDict(extra="forbid")
    token_ids: list[int]
    proofs: list[str]


class Extension(BaseModel):
    """The request's ``intentmesh`` field: ``toploc`` asks for commitments of the answer;
    ``toploc_verify`` replays another answer's ids instead of generating and checks its proofs."""

    model_config = ConfigDict(extra="forbid")
    toploc: bool = False
    toploc_verify: ToplocCheck | None = None

    @property
    def asked(self) -> str | None:
        """The first TOPLOC field set, as a ``param`` path, or ``None``."""
        if self.toploc_verify is not None:
            return "intentmesh.toploc_verify"
        return "intentmesh.toploc" if self.toploc else None


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    return_token_ids: bool = False
    ignore_eos: bool = False
    intentmesh: Extension = Field(default_factory=Extension)

    def refuse_toploc(self, engine: str) -> None:
        """A 400 naming the field when TOPLOC is asked of an engine that cannot produce it."""
        field = self.intentmesh.asked
        if field is not None:
            raise LocalApiError(
                400, f"{field}: TOPLOC commitments need the torch engine (hidden states); "
                f"the {engine} engine cannot produce them: serve the model with --engine torch",
                param=field,
            )  # fmt: skip

    def sampling(self, max_tokens: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            stop=tuple(stop),
            ignore_eos=self.ignore_eos,
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatBody(_Body):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @property
    def wanted_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionBody(_Body):
    prompt: str | list[str] | list[int]

    @property
    def wanted_tokens(self) -> int:
        return self.max_tokens or 16  # OpenAI's and vLLM's default for completions


_B = TypeVar("_B", bound=_Body)


def parse_body(model: type[_B], raw: bytes) -> _B:
    """Validate a JSON body, or raise a 400 :class:`LocalApiError` naming the field."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        text = validation_message(first)
        message = f"{param}: {text}" if param else text
        raise LocalApiError(400, message, param=param) from None


def new_id(kind: Literal["chat", "completion"]) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


def answer(
    kind: Literal["chat", "completion"], model: str, result: GenerationResult, with_ids: bool
) -> dict[str, Any]:
    """The whole (non-stream) response body."""
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": result.finish_reason}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": result.text, "tool_calls": []}
    else:
        choice["text"] = result.text
    body: dict[str, Any] = {
        "id": new_id(kind),
        "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": _usage(result.prompt_tokens, result.completion_tokens),
    }
    if with_ids or result.extension:
        choice["token_ids"] = result.token_ids
        body["prompt_token_ids"] = result.prompt_token_ids
    choice.update(result.extension)
    return body


def chunk(
    kind: Literal["chat", "completion"],
    stream_id: str,
    model: str,
    *,
    text: str | None = None,
    role: bool = False,
    finish_reason: str | None = None,
) -> dict[str, Any]:
    """One streamed chunk with one choice."""
    choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
    if kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if text is not None:
            delta["content"] = text
        choice["delta"] = delta
    else:
        choice["text"] = text or ""
    return _chunk_envelope(kind, stream_id, model, [choice])


def usage_chunk(
    kind: Literal["chat", "completion"], stream_id: str, model: str, result: GenerationResult
) -> dict[str, Any]:
    """The last chunk when ``stream_options.include_usage``: no choices, only usage."""
    body = _chunk_envelope(kind, stream_id, model, [])
    body["usage"] = _usage(result.prompt_tokens, result.completion_tokens)
    return body


def _chunk_envelope(
    kind: Literal["chat", "completion"], stream_id: str, model: str, choices: list[Any]
) -> dict[str, Any]:
    return {
        "id": stream_id,
        "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event line."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {text}\n\n".encode()
