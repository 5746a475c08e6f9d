"""Akash fakes: AkashChat API, AkashML, the Console API's GPU prices, and vLLM on a lease.

* :class:`FakeAkashChat` — ``/api/v1``, Bearer ``sk-...`` keys, LiteLLM-proxy error bodies
  (``{"error": {"message", "type", "param", "code": "<status as string>"}}``), dash-style ids.
* :class:`FakeAkashML` — ``/v1/models`` with ``pricing: {input, output, request}`` as
  strings, the ``Inference-Id`` header, errors 402/429/504/529.
* :class:`FakeAkashConsole` — ``GET /v1/gpu-prices`` in the Console API's exact schema,
  including models whose ``price`` is ``null`` (no bids).
* :class:`FakeVLLM` — vLLM's server: ``401 {"error": "Unauthorized"}``, public ``/health``
  and ``/metrics`` whose token counters grow at ``tokens_per_s``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer
from intentmesh.testing.networks._base import NetworkFake, Route

__all__ = ["FakeAkashChat", "FakeAkashConsole", "FakeAkashML", "FakeVLLM", "gpu_price_entry"]

_LITELLM_TYPES = {401: "auth_error", 404: "not_found_error", 429: "rate_limit_error"}


class FakeAkashChat(NetworkFake):
    """The free AkashChat API (a LiteLLM proxy) on loopback."""

    prefix: ClassVar[str] = "/api"
    messages: ClassVar[dict[int, str]] = {
        401: "Authentication Error, Invalid proxy server token passed.",
        429: "Rate limit exceeded. Please try again later.",
    }

    def __init__(
        self,
        models: Any = ("Meta-Llama-3-1-8B-Instruct-FP8",),
        *,
        api_key: str = "sk-akashchat-test",
        **kwargs: Any,
    ) -> None:
        super().__init__(models, api_key=api_key, **kwargs)

    def error(self, status: int, message: str | None = None) -> FakeResponse:
        body = {
            "message": message or self.default_message(status),
            "type": _LITELLM_TYPES.get(status, "None"),
            "param": "None",
            "code": str(status),
        }
        return FakeResponse.json({"error": body}, status)


class FakeAkashML(NetworkFake):
    """AkashML on loopback; ``prices`` maps model id to (input, output) price strings."""

    messages: ClassVar[dict[int, str]] = {
        402: "Insufficient credits",
        429: "Rate limit exceeded",
        504: "No backend available",
        529: "No healthy backends for model",
    }

    def __init__(
        self,
        prices: Mapping[str, tuple[str, str]] | None = None,
        *,
        api_key: str = "akml-test-key",
        **kwargs: Any,
    ) -> None:
        self.prices = dict(prices or {"meta-llama/Llama-3.3-70B-Instruct": ("0.13", "0.40")})
        super().__init__(list(self.prices), api_key=api_key, **kwargs)

    def error(self, status: int, message: str | None = None) -> FakeResponse:
        body = {"message": message or self.default_message(status), "type": "error", "code": status}
        return FakeResponse.json({"error": body}, status)

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("GET", "/v1/models"): self._models}

    def response_headers(self, request: FakeRequest) -> dict[str, str]:
        return {"inference-id": str(uuid.uuid4())}

    async def _models(self, request: FakeRequest) -> FakeResponse:
        data = [
            {
                "id": model,
                "object": "model",
                "created": 1750000000,
                "owned_by": "akashml",
                "name": model.split("/")[-1],
                "context_length": 131072,
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "supported_sampling_parameters": ["temperature", "top_p"],
                "supported_features": ["tools"],
                "description": "",
                "max_output_length": 8192,
                "quantization": "fp8",
                "pricing": {"input": inp, "output": out, "request": "0"},
            }
            for model, (inp, out) in self.prices.items()
        ]
        return FakeResponse.json({"object": "list", "data": data})


def gpu_price_entry(
    model: str,
    price_usd: float | None,
    *,
    ram: str = "80Gi",
    interface: str = "SXM5",
    available: int = 4,
) -> dict[str, Any]:
    """One ``models[]`` entry of ``/v1/gpu-prices``; ``price_usd=None`` means no bids."""
    price = None
    if price_usd is not None:
        price = {
            "currency": "USD",
            "min": price_usd * 0.8,
            "max": price_usd * 1.3,
            "avg": price_usd * 1.05,
            "weightedAverage": price_usd,
            "med": price_usd,
        }
    return {
        "vendor": "nvidia",
        "model": model,
        "ram": ram,
        "interface": interface,
        "availability": {"total": available * 2, "available": available},
        "providerAvailability": {"total": 3, "available": 2},
        "price": price,
        "priceUakt": None if price is None else {**price, "currency": "uakt"},
    }


class FakeAkashConsole(LoopbackServer):
    """The Console API's ``GET /v1/gpu-prices`` (no auth)."""

    def __init__(self, models: Sequence[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.models = list(models or [gpu_price_entry("h100", 1.8), gpu_price_entry("a100", None)])
        self.calls = 0

    async def handle(self, request: FakeRequest) -> FakeResponse:
        if (request.method, request.path) != ("GET", "/v1/gpu-prices"):
            return FakeResponse.json({"error": "NotFound", "message": "Not Found"}, 404)
        self.calls += 1
        total = sum(m["availability"]["total"] for m in self.models)
        available = sum(m["availability"]["available"] for m in self.models)
        return FakeResponse.json(
            {"availability": {"total": total, "available": available}, "models": self.models}
        )


class FakeVLLM(NetworkFake):
    """vLLM's OpenAI server as deployed on a lease, with ``/metrics`` counters."""

    public: ClassVar[frozenset[str]] = frozenset(
        {"/health", "/metrics", "/ping", "/version", "/load"}
    )

    def __init__(
        self,
        models: Any = ("meta-llama/Llama-3.1-8B-Instruct",),
        *,
        api_key: str | None = "vllm-key",
        tokens_per_s: float = 1000.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(models, api_key=api_key, **kwargs)
        self.tokens_per_s = tokens_per_s
        self._born = time.monotonic()

    def error(self, status: int, message: str | None = None) -> FakeResponse:
        if status == 401:
            return FakeResponse.json({"error": "Unauthorized"}, 401)
        kind = {404: "NotFoundError", 400: "BadRequestError"}.get(status, "InternalServerError")
        body = {
            "message": message or f"error {status}",
            "type": kind,
            "param": None,
            "code": status,
        }
        return FakeResponse.json({"error": body}, status)

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("GET", "/metrics"): self._metrics}

    async def _metrics(self, request: FakeRequest) -> FakeResponse:
        tokens = (time.monotonic() - self._born) * self.tokens_per_s
        label = f'{{model_name="{self.models[0]}"}}'
        lines = [
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{label} {tokens * 0.25:.1f}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{label} {tokens * 0.75:.1f}",
            f"vllm:num_requests_running{label} 0.0",
        ]
        return FakeResponse.text("\n".join(lines) + "\n")
