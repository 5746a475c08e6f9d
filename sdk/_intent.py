"""The ``Intent``: what the caller wants, and the hard limits it must be served within."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from intentmesh.errors import IntentValidationError, validation_message

__all__ = [
    "Intent",
    "Message",
    "OnMidstream",
    "Optimize",
    "Verifiability",
    "VERIFIABILITY_LEVELS",
]

Verifiability = Literal["none", "receipt", "attested", "consensus", "proof", "spot"]
Optimize = Literal["cost", "latency", "balanced"]
OnMidstream = Literal["error", "continue"]
VERIFIABILITY_LEVELS: tuple[str, ...] = (
    "none",
    "receipt",
    "attested",
    "consensus",
    "proof",
    "spot",
)

_FIXES: dict[str, str] = {
    "model": "name a catalog model such as 'llama-3.1-8b-instruct', or a list in preference order",
    "messages": "pass a non-empty list like [{'role': 'user', 'content': 'Hi'}], or use prompt=",
    "prompt": "pass a non-empty string, or use messages=",
    "max_tokens": "use a whole number of at least 1",
    "temperature": "use a number from 0 to 2",
    "max_price_usd": "use a positive USD amount such as 0.002, or None for no cap",
    "max_latency_ms": "use a positive number of milliseconds such as 3000, or None for no deadline",
    "max_ttft_ms": "use a positive number of milliseconds such as 2000, or None for no limit",
    "stall_ms": "use a positive number of milliseconds such as 5000, or None for no limit",
    "on_midstream": "use 'error' (raise MidStreamError) or 'continue' (next backend continues)",
    "verifiability": "use one of: none, receipt, attested, consensus, proof, spot",
    "optimize": "use one of: cost, latency, balanced",
    "hedge": "use False, True (automatic delay) or a delay in milliseconds such as 500",
    "networks": "use a list of network or backend names, or None for all",
    "exclude": "use a list of network or backend names, or None",
    "seed": "use a whole number, or None",
    "consensus_k": "use a whole number of backends from 2 to 16, or None for the default (2)",
    "consensus_threshold": "use a similarity above 0 and at most 1 (1 = exact match), or None",
    "spot_rate": "use a share of requests from 0 to 1 such as 0.1, or None for the default",
    "spot_fail": "use True (fail the request on a disagreement), False, or None",
}


class Message(BaseModel):
    """One chat message in OpenAI form; extra keys (``tool_calls``, ``name``) pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class Intent(BaseModel):
    """A request for inference and the constraints it must be served within.

    Exactly one of ``messages`` and ``prompt`` is given. ``max_price_usd`` and
    ``max_latency_ms`` are hard limits across every attempt; ``optimize`` ranks what is left.
    Invalid values raise :class:`~intentmesh.errors.IntentValidationError` naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | list[str]
    messages: list[Message] | None = None
    prompt: str | None = None
    max_tokens: int = Field(256, ge=1, le=1_000_000)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: list[str] | None = None
    max_price_usd: float | None = Field(None, gt=0.0)
    max_latency_ms: float | None = Field(None, gt=0.0)
    max_ttft_ms: float | None = Field(None, gt=0.0)
    stall_ms: float | None = Field(None, gt=0.0)
    on_midstream: OnMidstream = "error"
    verifiability: Verifiability = "receipt"
    optimize: Optimize = "cost"
    networks: list[str] | None = None
    exclude: list[str] | None = None
    hedge: bool | float = False
    cache: bool = False
    consensus_k: int | None = Field(None, ge=2, le=16)
    consensus_threshold: float | None = Field(None, gt=0.0, le=1.0)
    spot_rate: float | None = Field(None, ge=0.0, le=1.0)
    spot_fail: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise IntentValidationError(_explain(exc)) from None

    @model_validator(mode="after")
    def _check_shape(self) -> Intent:
        problems: list[tuple[str, str]] = []
        if (self.messages is None) == (self.prompt is None):
            field = "prompt" if self.prompt is not None else "messages"
            problems.append((field, "give exactly one of messages= and prompt="))
        elif self.messages is not None and not self.messages:
            problems.append(("messages", "must not be empty; " + _FIXES["messages"]))
        elif self.prompt is not None and not self.prompt.strip():
            problems.append(("prompt", "must not be empty; " + _FIXES["prompt"]))
        models = [self.model] if isinstance(self.model, str) else self.model
        if not models or any(not m.strip() for m in models):
            problems.append(("model", "must not be empty; " + _FIXES["model"]))
        if not isinstance(self.hedge, bool) and self.hedge < 0:
            problems.append(("hedge", "must not be negative; " + _FIXES["hedge"]))
        for name in ("networks", "exclude"):
            values = getattr(self, name)
            if values is not None and any(not v.strip() for v in values):
                problems.append((name, "names must not be empty; " + _FIXES[name]))
        if problems:
            raise IntentValidationError(problems)
        return self

    @property
    def models(self) -> tuple[str, ...]:
        """The requested model names in preference order."""
        return (self.model,) if isinstance(self.model, str) else tuple(self.model)

    def chat_messages(self) -> list[dict[str, Any]]:
        """The conversation as plain OpenAI message dicts."""
        if self.messages is None:
            return [{"role": "user", "content": self.prompt}]
        return [m.model_dump(exclude_none=True) for m in self.messages]

    @property
    def deterministic(self) -> bool:
        """True when greedy decoding and a fixed seed make the answer repeatable."""
        return self.temperature == 0.0 and self.seed is not None


def _explain(exc: ValidationError) -> list[tuple[str, str]]:
    """Turn pydantic's errors into ``(field, message with fix)`` pairs."""
    nested = [
        e for e in exc.errors() if e["type"] == "value_error" and "invalid intent" in e["msg"]
    ]
    if nested:
        ctx_error = nested[0].get("ctx", {}).get("error")
        if isinstance(ctx_error, IntentValidationError):
            return ctx_error.errors
    pairs: list[tuple[str, str]] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        field = ".".join(loc) if loc else "intent"
        top = loc[0] if loc else ""
        if err["type"] == "extra_forbidden":
            message = f"unknown field {top!r}; remove it (valid fields: {', '.join(_FIELDS)})"
        else:
            fix = _FIXES.get(top, "")
            got = _short(err.get("input"))
            message = f"{validation_message(err).lower()} (got {got})" + (f"; {fix}" if fix else "")
        pairs.append((field, message))
    return _dedupe_union(pairs)


def _dedupe_union(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Pydantic reports each arm of a union; keep one message per top-level field."""
    seen: dict[str, tuple[str, str]] = {}
    for field, message in pairs:
        top = field.split(".")[0]
        key = field if field.startswith(("messages", "tools")) else top
        seen.setdefault(key, (top if key == top else field, message))
    return list(seen.values())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_FIELDS = tuple(Intent.model_fields)
