"""Faults a fake provider can inject, and the schedule that decides which request gets one."""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Fault", "FaultSchedule"]

FaultKind = Literal[
    "status",
    "hang",
    "refuse",
    "reset_mid_stream",
    "malformed_json",
    "truncated_stream",
    "wrong_usage",
    "wrong_model",
    "latency",
    "in_stream_error",
    "trickle",
    "stall",
    "garbage_stream",
    "runaway",
    "usage",
]

_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    402: "PaymentRequiredError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "RequestTimeoutError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
    529: "OverloadedError",
}


def error_body(message: str, status: int, param: str | None = None) -> dict[str, Any]:
    """The OpenAI/vLLM error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind = _ERROR_TYPES.get(status, "APIError")
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


@dataclass(frozen=True)
class Fault:
    """One way a provider misbehaves; build it with the class methods, not the constructor.

    Stream faults fire after ``after_chunks`` SSE events (the role chunk counts as one) and
    never later than just before the finish chunk. On a non-stream request, ``reset_mid_stream``
    and ``truncated_stream`` cut the JSON body halfway (RST or FIN), and ``in_stream_error``
    answers HTTP 500 with its body.
    """

    kind: FaultKind
    status_code: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    after_chunks: int = 0
    factor: float = 1.0
    model: str = ""
    ms: float = 0.0
    reset: bool = True
    complete_http: bool = False
    chars: int = 0
    reported: Any = None

    @classmethod
    def status(cls, code: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
        """Answer ``code`` at once. ``body``: dict/list → JSON, str → plain text, ``None`` →
        the OpenAI error shape."""
        return cls("status", status_code=code, body=body, headers=dict(headers or {}))

    @classmethod
    def rate_limit(cls, retry_after: float = 1.0, body: Any = None) -> Fault:
        """429 with a ``Retry-After`` header (whole seconds when integral, else decimal)."""
        value = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        return cls("status", status_code=429, body=body, headers={"retry-after": value})

    @classmethod
    def hang(cls) -> Fault:
        """Never answer: the client's read timeout is the only way out."""
        return cls("hang")

    @classmethod
    def refuse(cls, reset: bool = True) -> Fault:
        """Drop the connection with no response: TCP RST, or a clean FIN with ``reset=False``."""
        return cls("refuse", reset=reset)

    @classmethod
    def reset_mid_stream(cls, after_chunks: int = 2) -> Fault:
        """Send ``after_chunks`` SSE events, then abort the connection with a TCP RST."""
        return cls("reset_mid_stream", after_chunks=after_chunks)

    @classmethod
    def truncated_stream(cls, after_chunks: int = 2, complete_http: bool = False) -> Fault:
        """End the stream after ``after_chunks`` events with no finish chunk and no ``[DONE]``.

        By default the HTTP body is cut too (no terminating chunk, then FIN); with
        ``complete_http=True`` the HTTP body ends properly and only the SSE stream is short.
        """
        return cls("truncated_stream", after_chunks=after_chunks, complete_http=complete_http)

    @classmethod
    def malformed_json(cls, after_chunks: int = 1) -> Fault:
        """200 with a body that is not JSON; in a stream, one bad ``data:`` line is inserted
        after ``after_chunks`` events and the stream then goes on normally."""
        return cls("malformed_json", after_chunks=after_chunks)

    @classmethod
    def wrong_usage(cls, factor: float = 10) -> Fault:
        """Report every usage count multiplied by ``factor`` (rounded)."""
        return cls("wrong_usage", factor=factor)

    @classmethod
    def wrong_model(cls, model: str = "other-model") -> Fault:
        """Answer normally, but with ``model`` in the response instead of the requested one."""
        return cls("wrong_model", model=model)

    @classmethod
    def latency(cls, ms: float) -> Fault:
        """Answer normally after ``ms`` extra milliseconds before the response headers."""
        return cls("latency", ms=ms)

    @classmethod
    def in_stream_error(cls, after_chunks: int = 1, body: Any = None) -> Fault:
        """After ``after_chunks`` events send ``data: {"error": ...}`` and end the HTTP body
        cleanly, without a finish chunk or ``[DONE]``."""
        if body is None:
            body = error_body("injected in-stream error", 500)
        return cls("in_stream_error", after_chunks=after_chunks, body=body)


    @classmethod
    def trickle(cls, interval_ms: float = 250) -> Fault:
        """Send the headers at once, then the body one byte every ``interval_ms``: no read
        timeout ever fires, only a ceiling on the whole exchange stops it."""
        return cls("trickle", ms=interval_ms)

    @classmethod
    def stall(cls, after_chunks: int = 2, ms: float | None = None) -> Fault:
        """Send ``after_chunks`` SSE events, then fall silent for ``ms`` (``None``: for good)
        with the connection open, then go on. A non-stream request waits before its body."""
        return cls("stall", after_chunks=after_chunks, ms=-1.0 if ms is None else ms)

    @classmethod
    def garbage_stream(cls) -> Fault:
        """200 SSE in which every ``data:`` event is undecodable, then ``[DONE]``."""
        return cls("garbage_stream")

    @classmethod
    def runaway(cls, chars: int = 1_000_000) -> Fault:
        """Ignore ``max_tokens`` and answer ``chars`` characters (usage reports every word)."""
        return cls("runaway", chars=chars)

    @classmethod
    def usage(cls, usage: Any) -> Fault:
        """Answer normally but report ``usage`` as given: a dict such as ``{}`` or
        ``{"prompt_tokens": 5}``, or ``None`` to leave the usage field out."""
        return cls("usage", reported=usage)


class FaultSchedule:
    """Which fault the next generation request gets: queued ``fail_next`` entries first, then
    ``always``, then the seeded ``fail_rate`` draw. Safe to change from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[list[Any]] = deque()
        self._always: Fault | None = None
        self._rate: tuple[float, Fault, random.Random] | None = None

    def fail_next(self, n: int, fault: Fault) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            if n:
                self._queue.append([n, fault])

    def always(self, fault: Fault | None) -> None:
        with self._lock:
            self._always = fault

    def fail_rate(self, p: float, fault: Fault, seed: int = 0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError("p must be within [0, 1]")
        with self._lock:
            self._rate = (p, fault, random.Random(seed))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._always = None
            self._rate = None

    def pending(self) -> int:
        """How many ``fail_next`` faults are still queued."""
        with self._lock:
            return sum(entry[0] for entry in self._queue)

    def take(self) -> Fault | None:
        with self._lock:
            if self._queue:
                entry = self._queue[0]
                entry[0] -= 1
                if entry[0] == 0:
                    self._queue.popleft()
                fault: Fault = entry[1]
                return fault
            if self._always is not None:
                return self._always
            if self._rate is not None:
                p, fault, rng = self._rate
                return fault if rng.random() < p else None
            return None
