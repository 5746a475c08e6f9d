"""Translation between the OpenAI wire format and intents / results (pure functions, no I/O)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from intentmesh._result import InferenceResult
from intentmesh.adapters.base import Chunk, Usage
from intentmesh.server._config import KeyConfig, ServerConfig
from intentmesh.server._errors import ApiError

__all__ = [
    "ParsedRequest",
    "chat_body",
    "chunk_body",
    "completion_body",
    "intentmesh_info",
    "parse_request",
    "result_headers",
    "usage_body",
]

Kind = Literal["chat", "completion"]

# OpenAI body fields that map one-to-one onto intent fields.
_PASSTHROUGH = ("temperature", "top_p", "seed", "tools", "tool_choice", "response_format")


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """A generation request as the gateway needs it: intent fields and stream options."""

    kind: Kind
    fields: dict[str, Any]
    stream: bool
    include_usage: bool
    top_level: frozenset[str]


def parse_request(kind: Kind, body: Any, cfg: ServerConfig, key: KeyConfig | None) -> ParsedRequest:
    """Validate the OpenAI body and merge defaults < key defaults < preset < body < intent."""
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object", None)
    model, preset = _split_model(body.get("model"), cfg)
    fields: dict[str, Any] = {**cfg.defaults, **(key.defaults if key else {}), **preset}
    top = _top_level(kind, body, cfg)
    fields.update(top, model=model)
    intent = body.get("intent")
    if intent is not None and not isinstance(intent, dict):
        raise _bad("'intent' must be an object of intent fields", "intent")
    fields.update(intent or {})
    _check_limits(body, fields, cfg)
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream")
    options = body.get("stream_options") or {}
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return ParsedRequest(kind, fields, stream, include_usage, frozenset(top) | {"model"})


def _split_model(value: Any, cfg: ServerConfig) -> tuple[str, dict[str, Any]]:
    """``"llama-3.1-8b-instruct:cheapest"`` -> the model and the preset's intent fields."""
    if not isinstance(value, str) or not value.strip():
        raise _bad("'model' is required: a model name, optionally with :cheapest etc.", "model")
    presets = cfg.all_presets()
    base, sep, suffix = value.rpartition(":")
    if sep and base and suffix in presets:
        return base, dict(presets[suffix])
    return value, {}


def _top_level(kind: Kind, body: Mapping[str, Any], cfg: ServerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {k: body[k] for k in _PASSTHROUGH if body.get(k) is not None}
    if kind == "chat":
        out["messages"] = body.get("messages")
    else:
        out["prompt"] = _prompt(body.get("prompt"))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    default = min(cfg.default_max_tokens, cfg.max_tokens_limit)
    out["max_tokens"] = limit if limit is not None else default
    stop = body.get("stop")
    if stop is not None:
        out["stop"] = [stop] if isinstance(stop, str) else stop
    return out


def _prompt(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if isinstance(value, list):
        raise _bad("'prompt' must be one string (batches are not supported)", "prompt")
    return value


def _check_limits(body: Mapping[str, Any], fields: Mapping[str, Any], cfg: ServerConfig) -> None:
    if body.get("n", 1) not in (1, None):
        raise _bad("'n' must be 1: the gateway returns one choice", "n")
    limit = fields.get("max_tokens")
    if isinstance(limit, int) and limit > cfg.max_tokens_limit:
        raise _bad(
            f"max_tokens {limit} exceeds this gateway's limit of {cfg.max_tokens_limit}",
            "max_tokens",
            "max_tokens_too_large",
        )


def _bad(message: str, param: str | None, code: str = "invalid_request") -> ApiError:
    return ApiError(400, message, "invalid_request_error", code, param)


# -- responses -------------------------------------------------------------------------------


def intentmesh_info(res: InferenceResult) -> dict[str, Any]:
    """The ``intentmesh`` object added to responses: where it ran, what it cost, its receipt."""
    return {
        "backend": res.backend,
        "network": res.network,
        "model": res.model,
        "provider_model": res.provider_model,
        "cost_usd": res.cost_usd,
        "receipt_id": res.receipt_id,
        "attempts": len(res.attempts),
        "latency_ms": round(res.latency_ms, 3),
        "cached": res.cached,
        "flags": list(res.flags),
    }


def result_headers(res: InferenceResult) -> dict[str, str]:
    headers = {
        "x-intentmesh-backend": res.backend,
        "x-intentmesh-network": res.network,
        "x-intentmesh-cost-usd": f"{res.cost_usd:.10f}",
        "x-intentmesh-attempts": str(len(res.attempts)),
    }
    if res.receipt_id:
        headers["x-intentmesh-receipt-id"] = res.receipt_id
    return headers


def usage_body(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_body(res: InferenceResult, rid: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": res.text}
    if res.tool_calls:
        message["tool_calls"] = res.tool_calls
        message["content"] = res.text or None
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": res.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": res.finish_reason, "logprobs": None}
        ],
        "usage": usage_body(res.usage),
        "system_fingerprint": None,
        "intentmesh": intentmesh_info(res),
    }


def completion_body(res: InferenceResult, rid: str) -> dict[str, Any]:
    choice = {"index": 0, "text": res.text, "finish_reason": res.finish_reason, "logprobs": None}
    return {
        "id": rid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": res.model,
        "choices": [choice],
        "usage": usage_body(res.usage),
        "intentmesh": intentmesh_info(res),
    }


def chunk_body(
    kind: Kind, rid: str, created: int, model: str, chunk: Chunk | None, finish: str | None
) -> dict[str, Any]:
    """One SSE chunk: ``chunk`` carries text/tool calls; ``finish`` closes the choice."""
    if kind == "completion":
        text = chunk.text if chunk else ""
        choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": finish}
        choice["logprobs"] = None
        obj = "text_completion"
    else:
        choice = {"index": 0, "delta": _delta(chunk), "finish_reason": finish, "logprobs": None}
        obj = "chat.completion.chunk"
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [choice]}


def _delta(chunk: Chunk | None) -> dict[str, Any]:
    if chunk is None:
        return {}
    delta: dict[str, Any] = {"content": chunk.text}
    if chunk.tool_calls:
        delta["tool_calls"] = chunk.tool_calls
        if not chunk.text:
            delta["content"] = None
    return delta
