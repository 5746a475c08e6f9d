"""``FakeApex``: an SN1 Apex validator's API (``/v1/chat/completions``) on loopback.

The key travels in an ``api-key`` header; a wrong key is ``403 {"detail": "Invalid API
key"}``, a missing one FastAPI's 422. Rate limits are per key (429). The request's ``task``
and ``sampling_parameters`` are kept in :attr:`requests` for tests to check.
"""

from __future__ import annotations

from typing import Any, ClassVar

from intentmesh.testing._server import FakeRequest, FakeResponse
from intentmesh.testing.networks._base import NetworkFake

__all__ = ["FakeApex"]


class FakeApex(NetworkFake):
    """A validator in API mode."""

    messages: ClassVar[dict[int, str]] = {403: "Invalid API key", 429: "Rate limit exceeded"}

    def __init__(
        self,
        models: Any = ("mrfakename/mistral-small-3.1-24b-instruct-2503-hf",),
        *,
        api_key: str = "apex-test-key",
        **kwargs: Any,
    ) -> None:
        super().__init__(models, api_key=api_key, **kwargs)

    def check_auth(self, request: FakeRequest) -> FakeResponse | None:
        key = request.headers.get("api-key")
        if key is None:
            missing = {"type": "missing", "loc": ["header", "api-key"], "msg": "Field required"}
            return FakeResponse.json({"detail": [{**missing, "input": None}]}, 422)
        return None if key == self.key else self.error(403)
