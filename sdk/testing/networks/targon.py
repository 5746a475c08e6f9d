"""``FakeTargon``: the Targon hub API (``api.targon.com/v1``) on loopback.

Reproduces: the key must be exactly 32 characters (``401 "invalid authentication"``, plain
text; a missing header is ``401 "unauthorized"``); ``stream`` defaults to **true** when the
request omits it; ``max_tokens`` defaults to 512 and a request asking more than the account's
``credits`` gets ``400 "not enough credits"``; ``Content-Type: text/event-stream`` even on JSON
answers; ``/v1/models`` without prices; ``503 {"message","object":"error",
"type":"APITimeoutError","code"}`` when upstream fails.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, ClassVar

from intentmesh.testing._server import FakeRequest, FakeResponse
from intentmesh.testing.networks._base import NetworkFake

__all__ = ["FakeTargon"]

DEFAULT_KEY = "t" * 32


class FakeTargon(NetworkFake):
    """Targon's hub. ``credits`` caps ``max_tokens`` per request."""

    messages: ClassVar[dict[int, str]] = {503: "upstream request timed out"}

    def __init__(
        self,
        models: Any = ("NousResearch/Hermes-3-Llama-3.1-8B",),
        *,
        api_key: str = DEFAULT_KEY,
        credits: int = 10**9,
        **kwargs: Any,
    ) -> None:
        super().__init__(models, api_key=api_key, **kwargs)
        self.credits = credits

    def error(self, status: int, message: str | None = None) -> FakeResponse:
        text = message or self.default_message(status)
        if status in (400, 401):
            return FakeResponse.text(text, status)
        body = {"message": text, "object": "error", "type": "APITimeoutError", "code": status}
        if status != 503:
            body["type"] = "APIError"
        return FakeResponse.json(body, status)

    def check_auth(self, request: FakeRequest) -> FakeResponse | None:
        header = request.headers.get("authorization")
        if not header:
            return self.error(401, "unauthorized")
        token = header.removeprefix("Bearer ").strip()
        if len(token) != 32 or token != self.key:
            return self.error(401, "invalid authentication")
        return None

    def precheck(self, request: FakeRequest, payload: dict[str, Any]) -> FakeResponse | None:
        if int(payload.get("max_tokens") or 512) > self.credits:
            return self.error(400, "not enough credits")
        return None

    def response_headers(self, request: FakeRequest) -> dict[str, str]:
        return {"content-type": "text/event-stream"}

    async def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method == "POST" and request.path.endswith("completions"):
            request = _stream_by_default(request)
        return await super().handle(request)


def _stream_by_default(request: FakeRequest) -> FakeRequest:
    try:
        payload = request.json()
    except ValueError:
        return request
    if not isinstance(payload, dict) or "stream" in payload:
        return request
    payload["stream"] = True
    payload.setdefault("max_tokens", 512)
    return replace(request, body=json.dumps(payload).encode())
