"""The small interface every backend implements, and the plain data it exchanges.

A backend turns a :class:`ChatRequest` (already addressed to the backend's own model id) into a
:class:`Completion`, or a stream of :class:`Chunk`. Errors leave a backend only as
:class:`intentmesh.errors.BackendError` subclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Backend",
    "ChatRequest",
    "Chunk",
    "Completion",
    "ModelListing",
    "PriceDiscovery",
    "Usage",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call; ``estimated`` means we counted because the backend did not."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
        }


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One call to one backend, in the backend's own model id.

    ``kind`` is ``"chat"`` (``messages``) or ``"completion"`` (``prompt``). ``timeout_s`` is the
    time this attempt may take. ``extra`` carries OpenAI fields passed through unchanged
    (``tools``, ``tool_choice``, ``response_format``).
    """

    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | None = None
    kind: Literal["chat", "completion"] = "chat"
    max_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    timeout_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer. ``model`` is the model id the backend reported serving."""

    text: str
    finish_reason: str | None
    usage: Usage | None
    model: str = ""
    id: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed answer. The last chunk of a stream carries ``usage`` when known.

    ``malformed_events`` counts undecodable events the adapter skipped in its place.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    malformed_events: int = 0


@dataclass(frozen=True, slots=True)
class ModelListing:
    """A model a backend says it serves, with live prices in USD per 1M tokens when known."""

    id: str
    input_price: float | None = None
    output_price: float | None = None
    context_length: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the executor needs from a backend: one call, one stream, and closing."""

    name: str

    async def acomplete(self, request: ChatRequest) -> Completion:
        """Send one request and return the whole answer."""
        ...

    def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        """Send one request and yield the answer as it arrives, usage on the last chunk."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class PriceDiscovery(Protocol):
    """Backends that can list their models (and prices) implement this too."""

    async def alist_models(self) -> list[ModelListing]:
        """The backend's live model list."""
        ...
