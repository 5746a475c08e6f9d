"""``FakeIONet``: io.net IO Intelligence (``/api/v1``) on loopback.

Reproduces the non-OpenAI, paginated ``GET /api/v1/models?page=&page_size=`` with
``metadata.input_token_price/output_token_price`` as strings, Bearer auth, and 429 when a
per-model daily quota is spent. Error bodies are FastAPI ``{"detail": ...}`` (UNCONFIRMED).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

from intentmesh.testing._server import FakeRequest, FakeResponse
from intentmesh.testing.networks._base import NetworkFake, Route

__all__ = ["FakeIONet"]


class FakeIONet(NetworkFake):
    """io.net on loopback; ``prices`` maps model name to (input, output) price strings."""

    prefix: ClassVar[str] = "/api"
    messages: ClassVar[dict[int, str]] = {
        401: "Invalid API key",
        429: "Daily token quota exceeded for this model",
    }

    def __init__(
        self,
        prices: Mapping[str, tuple[str, str]] | None = None,
        *,
        api_key: str = "io-v2-test-key",
        page_size: int = 2,
        inactive: tuple[str, ...] = (),
        **kwargs: Any,
    ) -> None:
        self.prices = dict(prices or {"meta-llama/Llama-3.3-70B-Instruct": ("0.13", "0.38")})
        super().__init__(list(self.prices), api_key=api_key, **kwargs)
        self.page_size = page_size
        self.inactive = set(inactive)

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("GET", "/v1/models"): self._models}

    def _card(self, name: str, prices: tuple[str, str]) -> dict[str, Any]:
        return {
            "model_id": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
            "name": name,
            "status": "inactive" if name in self.inactive else "active",
            "chat_daily_quota_tier_1": 1_000_000,
            "api_completions_daily_quota_tier_1": 500_000,
            "metadata": {
                "max_tokens": 8192,
                "context_window": 131072,
                "tool_support": True,
                "supports_images_input": False,
                "supports_prompt_cache": False,
                "input_token_price": prices[0],
                "output_token_price": prices[1],
                "cache_write_token_price": None,
                "cache_read_token_price": None,
                "precision": "fp8",
            },
            "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-06-01T00:00:00Z",
            "description": name,
        }

    async def _models(self, request: FakeRequest) -> FakeResponse:
        size = max(1, int(request.query.get("page_size") or self.page_size))
        size = min(size, self.page_size)
        page = max(1, int(request.query.get("page") or 1))
        items = list(self.prices.items())
        pages = max(1, math.ceil(len(items) / size))
        chunk = items[(page - 1) * size : page * size]
        return FakeResponse.json(
            {
                "data": [self._card(name, p) for name, p in chunk],
                "pagination": {
                    "total": len(items),
                    "page": page,
                    "page_size": size,
                    "total_pages": pages,
                    "has_next": page < pages,
                    "has_previous": page > 1,
                },
            }
        )
