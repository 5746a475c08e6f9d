"""The small interface every backend implements, and the plain data it exchanges.

A backend turns a :class:`ChatRequest` (already addressed to the backend's own model id) into a
:class:`Completion`, or a stream of :class:`Chunk`. Errors leave a backend only as
:class:`intentmesh.errors.BackendError` subclasses.

Required (:class:`Backend`):

* ``name`` — the config name of this backend;
* ``acomplete(request)`` — one request, the whole answer;
* ``astream(request)`` — one request, the answer as it arrives, usage on the last chunk;
* ``aclose()`` — release connections.

Optional capabilities, each a ``runtime_checkable`` protocol the gateway tests with
``isinstance`` (implement the methods; no registration or base class needed):

* :class:`HasEndpoint` ``endpoint_host`` — the host called, written into receipts;
* :class:`ListsModels` ``alist_models()`` — the models served, with live prices when known;
  health probes use it;
* :class:`DiscoversPrices` — a :class:`ListsModels` whose ``discovers_prices`` is true: its list
  feeds routing (live prices, and the models of a backend configured without any);
* :class:`HealthCheck` ``ahealth()`` — a cheap liveness check, probed when there is no list;
* :class:`ProvesCompletions` ``proof_for(completion)`` — the :class:`ProofBundle` of a
  completion, checked by the ``proof`` verifiability level.

Adapter classes named in the registry (``intentmesh.adapters.register``) also provide the
class method ``from_config(config: BackendConfig)``.

:func:`set_caller_deadline` and :func:`cut_off_by_caller` let a caller that times an awaited call
itself (the executor times every attempt) spare the adapter a second timer of the same length.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

__all__ = [
    "Backend",
    "ChatRequest",
    "Chunk",
    "Completion",
    "DiscoversPrices",
    "HasEndpoint",
    "HealthCheck",
    "ListsModels",
    "ModelListing",
    "PriceDiscovery",
    "ProofBundle",
    "ProvesCompletions",
    "Usage",
    "cut_off_by_caller",
    "set_caller_deadline",
]

_CallerDeadline = tuple["asyncio.Task[Any] | None", float]
_caller_deadline: ContextVar[_CallerDeadline | None] = ContextVar(
    "intentmesh_caller_deadline", default=None
)


def set_caller_deadline(when: float) -> Token[_CallerDeadline | None]:
    """Declare that the running task's caller cancels it at loop time ``when`` (its own timer
    does). Undo with ``token.var.reset(token)`` once the awaited call is over."""
    return _caller_deadline.set((asyncio.current_task(), when))


def cut_off_by_caller(seconds: float) -> bool:
    """Whether a caller of the running task cancels it no later than ``seconds`` from now: then
    an adapter's own timer of ``seconds`` would never fire first and may be left out. Tasks the
    call starts do not inherit this: only the task that set the deadline is cancelled by it."""
    found = _caller_deadline.get()
    if found is None or found[0] is not asyncio.current_task():
        return False
    return found[1] <= asyncio.get_running_loop().time() + seconds


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
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Backend-specific evidence about the answer (e.g. ``toploc`` commitments)."""


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
    extra: Mapping[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class ProofBundle:
    """A proof with the public data it claims: the request's ``inputs``, the ``outputs``."""

    system: str
    proof: Mapping[str, Any]
    inputs: Sequence[Sequence[float]]
    outputs: Sequence[Sequence[float]]
    model: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class HasEndpoint(Protocol):
    """Optional: the host this backend calls (no scheme, path or credentials)."""

    @property
    def endpoint_host(self) -> str: ...


@runtime_checkable
class ListsModels(Protocol):
    """Optional: the backend can list the models it serves (and their prices, when known)."""

    async def alist_models(self) -> list[ModelListing]:
        """The backend's live model list."""
        ...


PriceDiscovery = ListsModels
"""The earlier name of :class:`ListsModels`."""


@runtime_checkable
class DiscoversPrices(ListsModels, Protocol):
    """Optional: a model list worth asking for routing, when ``discovers_prices`` is true."""

    discovers_prices: ClassVar[bool]


@runtime_checkable
class HealthCheck(Protocol):
    """Optional: a cheap liveness check for backends without a model list."""

    async def ahealth(self) -> bool:
        """True when the backend can take requests."""
        ...


@runtime_checkable
class ProvesCompletions(Protocol):
    """Optional: the backend hands over the proof of one of its completions."""

    def proof_for(self, completion: Completion) -> ProofBundle | None:
        """The proof of ``completion`` (None when it has none)."""
        ...
