"""Chutes (Bittensor SN64): an OpenAI-compatible gateway with live prices and TEE models.

Differences from the OpenAI base, all as data or small overrides:

* ``GET /v1/models`` carries prices (``pricing.prompt/completion``, USD per 1M tokens) and a
  ``confidential_compute`` flag; such models also offer the ``attested`` verifiability level.
* Errors are FastAPI's ``{"detail": ...}``; after a stream starts they arrive as an SSE event
  ``data: {"error": "...", "detail": "..."}`` (handled by the base's in-stream error path).
* TEE evidence: ``GET https://api.chutes.ai/chutes/{chute_id}/evidence?nonce=<64 hex>``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, ClassVar

import httpx

from intentmesh.adapters._http import error_message
from intentmesh.adapters._netkit import price_value
from intentmesh.adapters.base import ModelListing
from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile
from intentmesh.errors import MalformedResponse

__all__ = ["ChutesBackend", "Evidence"]


class Evidence(dict[str, Any]):
    """The evidence document for one chute, plus the ``nonce`` we sent and its ``digest``."""

    @property
    def nonce(self) -> str:
        return str(self["nonce"])

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the evidence; store it in receipts."""
        return str(self["digest"])


class ChutesBackend(OpenAIBackend):
    """Chutes' ``llm.chutes.ai`` gateway; ``CHUTES_API_KEY`` holds a ``cpk_...`` key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://llm.chutes.ai/v1",
        require_key=True,
    )
    discovers_prices: ClassVar[bool] = True

    async def alist_models(self) -> list[ModelListing]:
        """Every model with its live price, context length and TEE flag (no auth needed)."""
        return [_listing(item) for item in await self._get_list("/models")]

    async def _get_list(self, path: str) -> list[dict[str, Any]]:
        data = await self.connection.get_json(path, backend=self.name)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise MalformedResponse(f"model list: {error_message(data)}", backend=self.name)
        return [item for item in items if isinstance(item, dict) and "id" in item]

    @property
    def management_url(self) -> str:
        """``https://api.chutes.ai`` for ``llm.chutes.ai``; the same origin for other hosts."""
        url = httpx.URL(self.connection.base_url)
        host = url.host
        if host.startswith("llm."):
            host = "api." + host[4:]
        return str(url.copy_with(host=host, path="/")).rstrip("/")

    async def aevidence(self, chute_id: str, nonce: str | None = None) -> Evidence:
        """Fresh TEE evidence for ``chute_id``, bound to a random 32-byte ``nonce``.

        The quote is returned for verification (Intel DCAP + NVIDIA NRAS), not verified here.
        """
        nonce = nonce or secrets.token_hex(32)
        data = await self.connection.get_json(
            f"{self.management_url}/chutes/{chute_id}/evidence",
            backend=self.name,
            params={"nonce": nonce},
        )
        if not isinstance(data, dict) or not isinstance(data.get("evidence"), list):
            raise MalformedResponse("evidence: no 'evidence' list", backend=self.name)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return Evidence(data, nonce=nonce, digest=hashlib.sha256(canonical).hexdigest())


def _listing(item: dict[str, Any]) -> ModelListing:
    # Both price shapes are documented as USD per 1M tokens, however small the number.
    pricing = _dict(item.get("pricing"))
    price = _dict(item.get("price"))
    prompt = price_value(pricing.get("prompt"))
    completion = price_value(pricing.get("completion"))
    if prompt is None:
        prompt = price_value(_dict(price.get("input")).get("usd"))
    if completion is None:
        completion = price_value(_dict(price.get("output")).get("usd"))
    model_id = str(item["id"])
    confidential = item.get("confidential_compute") is True
    aliases = [model_id.removesuffix("-TEE")] if model_id.endswith("-TEE") else []
    if isinstance(item.get("root"), str):
        aliases.append(item["root"])
    return ModelListing(
        id=model_id,
        input_price=prompt,
        output_price=completion,
        context_length=_int(item.get("context_length") or item.get("max_model_len")),
        attributes={
            "aliases": tuple(aliases),
            "confidential_compute": confidential,
            "verifiability": ("attested",) if confidential else (),
            "chute_id": item.get("chute_id"),
            "quantization": item.get("quantization"),
            "supported_features": tuple(item.get("supported_features") or ()),
        },
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None
