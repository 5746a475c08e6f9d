"""io.net IO Intelligence: OpenAI-compatible chat; a paginated, non-OpenAI model list.

``GET /api/v1/models?page=N&page_size=M`` returns ``{"data": [{"name", "status",
"metadata": {"input_token_price", "output_token_price", "context_window", ...}}],
"pagination": {"has_next", ...}}``. Prices are strings whose unit io.net does not state;
values below $0.001 are read as per-token, others as per 1M tokens (see ``_netkit``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from intentmesh.adapters._netkit import per_million
from intentmesh.adapters.base import ModelListing
from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile
from intentmesh.errors import MalformedResponse

__all__ = ["IONetBackend"]

_PAGE_SIZE = 100
_MAX_PAGES = 50


class IONetBackend(OpenAIBackend):
    """``api.intelligence.io.solutions/api/v1``; ``IOINTELLIGENCE_API_KEY`` holds the key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://api.intelligence.io.solutions/api/v1",
        require_key=True,
    )
    discovers_prices: ClassVar[bool] = True

    async def alist_models(self) -> list[ModelListing]:
        """Every active model on every page, with its metadata prices."""
        listings: list[ModelListing] = []
        for page in range(1, _MAX_PAGES + 1):
            data = await self._page(page)
            items = data.get("data")
            if not isinstance(items, list):
                raise MalformedResponse("model list: no 'data' list", backend=self.name)
            listings.extend(_listing(i) for i in items if isinstance(i, dict) and _active(i))
            pagination = data.get("pagination")
            if not isinstance(pagination, dict) or not pagination.get("has_next"):
                break
        return listings

    async def _page(self, page: int) -> dict[str, Any]:
        data = await self.connection.get_json(
            "/models", backend=self.name, params={"page": page, "page_size": _PAGE_SIZE}
        )
        if not isinstance(data, dict):
            raise MalformedResponse("model list is not an object", backend=self.name)
        return data


def _active(item: dict[str, Any]) -> bool:
    return bool(item.get("name") or item.get("id")) and item.get("status", "active") == "active"


def _listing(item: dict[str, Any]) -> ModelListing:
    meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    window = meta.get("context_window") or meta.get("max_tokens")
    return ModelListing(
        id=str(item.get("name") or item.get("id")),
        input_price=per_million(meta.get("input_token_price")),
        output_price=per_million(meta.get("output_token_price")),
        context_length=window if isinstance(window, int) and window > 0 else None,
        attributes={
            "model_id": item.get("model_id"),
            "tool_support": meta.get("tool_support"),
            "precision": meta.get("precision"),
        },
    )
