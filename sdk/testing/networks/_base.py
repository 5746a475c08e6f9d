"""``NetworkFake``: a fake OpenAI-compatible provider dressed as one network.

It reuses :class:`~intentmesh.testing.FakeOpenAIProvider` for generation (SSE framing,
``[DONE]``, usage chunk, faults) and adds what differs per network, as class data and small
hooks: a path prefix, the auth rule, the error body shape, extra routes (price lists,
evidence), response headers, and a sliding-window rate limit.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from http import HTTPStatus
from typing import Any, ClassVar

from intentmesh.testing._faults import Fault
from intentmesh.testing._openai import FakeOpenAIProvider
from intentmesh.testing._server import FakeRequest, FakeResponse

__all__ = ["NetworkFake", "Route"]

Route = Callable[[FakeRequest], Awaitable[FakeResponse]]
_GENERATION = frozenset({"/v1/chat/completions", "/v1/completions"})


class NetworkFake(FakeOpenAIProvider):
    """Subclasses set the class data and override :meth:`error`, :meth:`check_auth`,
    :meth:`precheck` or :meth:`routes` where their network differs."""

    prefix: ClassVar[str] = ""  # io.net and AkashChat serve under /api/v1
    public: ClassVar[frozenset[str]] = frozenset({"/health"})  # path patterns, no auth
    messages: ClassVar[dict[int, str]] = {}  # default error message per status
    retry_after: ClassVar[str | None] = None  # the Retry-After a 429 carries, if any

    def __init__(
        self,
        models: Sequence[str],
        *,
        api_key: str | None = None,
        rate_limit: tuple[int, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(models, api_key=None, **kwargs)
        self.key = api_key
        self.rate_limit = rate_limit
        self._window: deque[float] = deque()

    @property
    def base_url(self) -> str:
        return f"{self.url}{self.prefix}/v1"

    # -- what subclasses change ------------------------------------------------------------

    def error(self, status: int, message: str | None = None) -> FakeResponse:
        """The network's error response for ``status`` (default: FastAPI ``detail``)."""
        return FakeResponse.json({"detail": message or self.default_message(status)}, status)

    def in_stream_error(self, message: str) -> dict[str, Any]:
        """The ``data:`` object the network sends when a started stream fails."""
        return {"error": {"message": message, "code": 500}}

    def check_auth(self, request: FakeRequest) -> FakeResponse | None:
        """None when allowed; default: ``Authorization: Bearer <api_key>``."""
        if self.key is None or request.headers.get("authorization") == f"Bearer {self.key}":
            return None
        return self.error(401)

    def precheck(self, request: FakeRequest, payload: dict[str, Any]) -> FakeResponse | None:
        """A network-specific refusal of a generation request, before it is served."""
        return None

    def routes(self) -> dict[tuple[str, str], Route]:
        """Extra ``(method, path)`` routes (paths without the prefix)."""
        return {}

    def response_headers(self, request: FakeRequest) -> dict[str, str]:
        """Headers added to every generation response."""
        return {}

    def default_message(self, status: int) -> str:
        if status in self.messages:
            return self.messages[status]
        try:
            return HTTPStatus(status).phrase
        except ValueError:
            return f"error {status}"

    # -- faults in this network's words --------------------------------------------------

    def fault(self, status: int, message: str | None = None) -> Fault:
        """``status`` with this network's body (and Retry-After for 429 when it sends one)."""
        response = self.error(status, message)
        headers = {"retry-after": self.retry_after} if status == 429 and self.retry_after else {}
        body: Any = response.body.decode()
        if response.headers.get("content-type", "").startswith("application/json"):
            body = json.loads(body)
        return Fault.status(status, body, {**response.headers, **headers})

    def stream_fault(self, after_chunks: int = 2, message: str = "upstream failed") -> Fault:
        """A stream that breaks after ``after_chunks`` events with the network's error event."""
        return Fault.in_stream_error(after_chunks, self.in_stream_error(message))

    # -- dispatch -----------------------------------------------------------------------------

    async def handle(self, request: FakeRequest) -> FakeResponse:
        path = request.path.rstrip("/") or "/"
        if self.prefix:
            if not path.startswith(self.prefix + "/"):
                return self.error(404, "Not Found")
            path = path[len(self.prefix) :]
        request = replace(request, path=path)
        route = self._find_route(request.method, path)
        if route is not None and self.record:
            self.requests.append(request)
            self.calls[path] += 1
        if not any(_matches(pattern, path) for pattern in self.public):
            refused = self.check_auth(request)
            if refused is not None:
                return refused
        if path in _GENERATION:
            refused = self._limited() or self._precheck(request)
            if refused is not None:
                return refused
        response = await route(request) if route is not None else await super().handle(request)
        if path in _GENERATION and response.status < 400:
            response.headers.update(self.response_headers(request))
        return self._translate(response)

    def _find_route(self, method: str, path: str) -> Route | None:
        for (m, pattern), route in self.routes().items():
            if m == method and _matches(pattern, path):
                return route
        return None

    def _limited(self) -> FakeResponse | None:
        if self.rate_limit is None:
            return None
        limit, period = self.rate_limit
        now = time.monotonic()
        while self._window and self._window[0] <= now - period:
            self._window.popleft()
        if len(self._window) >= limit:
            response = self.error(429)
            if self.retry_after:
                response.headers["retry-after"] = self.retry_after
            return response
        self._window.append(now)
        return None

    def _precheck(self, request: FakeRequest) -> FakeResponse | None:
        try:
            payload = request.json()
        except ValueError:
            return None
        return self.precheck(request, payload) if isinstance(payload, dict) else None

    def _translate(self, response: FakeResponse) -> FakeResponse:
        """OpenAI-shaped errors from the generic provider, re-dressed in this network's shape."""
        if response.status < 400 or response.stream is not None or not response.body:
            return response
        try:
            data = json.loads(response.body)
        except ValueError:
            return response
        error = data.get("error") if isinstance(data, dict) else None
        if not (isinstance(error, dict) and set(error) >= {"message", "type", "code"}):
            return response
        translated = self.error(response.status, str(error["message"]))
        translated.headers.update(
            {k: v for k, v in response.headers.items() if k.lower() == "retry-after"}
        )
        return translated


def _matches(pattern: str, path: str) -> bool:
    """``/chutes/{id}/evidence`` matches ``/chutes/abc/evidence``."""
    want, got = pattern.strip("/").split("/"), path.strip("/").split("/")
    if len(want) != len(got):
        return False
    return all(
        w == g or (w.startswith("{") and w.endswith("}")) for w, g in zip(want, got, strict=True)
    )
