"""Akash: the free AkashChat API, paid AkashML, and self-hosted vLLM on an Akash lease.

* :class:`AkashChatBackend` — ``chatapi.akash.network/api/v1``, free, dash-style model ids
  (``Meta-Llama-3-3-70B-Instruct``) mapped to catalog names.
* :class:`AkashMLBackend` — ``api.akashml.com/v1``; ``/v1/models`` carries ``pricing`` as
  strings; errors 402, 429, 504 and 529 map by status code.
* :class:`AkashVLLMBackend` — vLLM on your own lease. Its $/token is an *estimate*:
  GPU $/hour from the Console API ``GET /v1/gpu-prices`` (``price`` may be null) divided by
  the deployment's tokens/s (configured, from vLLM ``/metrics``, or observed).
* ``generate_sdl`` — a ready-to-deploy SDL for a vLLM deployment of a catalog model (it lives
  with the ``intentmesh akash sdl`` command, ``intentmesh.cli.generate_sdl``; importable here).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import Field

from intentmesh.adapters._http import (
    Connection,
    map_transport_errors,
)
from intentmesh.adapters._netkit import per_million, split_options
from intentmesh.adapters.base import ChatRequest, Completion, ModelListing
from intentmesh.adapters.openai import OpenAIBackend, OpenAIOptions, OpenAIProfile
from intentmesh.config import BackendConfig
from intentmesh.errors import BackendError, MalformedResponse

__all__ = [
    "AkashChatBackend",
    "AkashMLBackend",
    "AkashVLLMBackend",
    "AkashVLLMOptions",
]

# AkashChat's dash-style ids and the Hugging Face ids the catalog knows them by.
AKASHCHAT_IDS: dict[str, str] = {
    "Meta-Llama-3-1-8B-Instruct-FP8": "meta-llama/Llama-3.1-8B-Instruct",
    "Meta-Llama-3-3-70B-Instruct": "meta-llama/Llama-3.3-70B-Instruct",
    "Meta-Llama-4-Maverick-17B-128E-Instruct-FP8": "meta-llama/Llama-4-Maverick-17B-128E-Instruct",
    "DeepSeek-R1": "deepseek-ai/DeepSeek-R1",
    "DeepSeek-V3-1": "deepseek-ai/DeepSeek-V3.1",
    "Qwen3-235B-A22B-Instruct-2507-FP8": "Qwen/Qwen3-235B-A22B-Instruct-2507",
    "gpt-oss-120b": "openai/gpt-oss-120b",
}


class AkashChatBackend(OpenAIBackend):
    """AkashChat API (free); ``AKASH_API_KEY`` holds the ``sk-...`` key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://chatapi.akash.network/api/v1",
        require_key=True,
    )
    discovers_prices: ClassVar[bool] = True

    async def alist_models(self) -> list[ModelListing]:
        """The served models, free of charge, with their catalog ids as aliases."""
        return [
            ModelListing(
                id=m.id,
                input_price=0.0,
                output_price=0.0,
                attributes={"aliases": _dash_aliases(m.id), "free": True},
            )
            for m in await super().alist_models()
        ]


def _dash_aliases(model_id: str) -> tuple[str, ...]:
    known = AKASHCHAT_IDS.get(model_id)
    if known:
        return (known,)
    stripped = model_id.removesuffix("-FP8")
    return (stripped,) if stripped != model_id else ()


class AkashMLBackend(OpenAIBackend):
    """AkashML (paid); ``AKASHML_API_KEY`` holds the key. Answers carry ``Inference-Id``."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://api.akashml.com/v1",
        require_key=True,
    )
    discovers_prices: ClassVar[bool] = True

    async def alist_models(self) -> list[ModelListing]:
        """Models with ``pricing.input/output`` (strings) read as USD per 1M tokens."""
        data = await self.connection.get_json("/models", backend=self.name)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise MalformedResponse("model list: no 'data' list", backend=self.name)
        return [_akashml_listing(i) for i in items if isinstance(i, dict) and "id" in i]


def _akashml_listing(item: dict[str, Any]) -> ModelListing:
    pricing = item.get("pricing") if isinstance(item.get("pricing"), dict) else {}
    assert isinstance(pricing, dict)
    context = item.get("context_length")
    return ModelListing(
        id=str(item["id"]),
        input_price=per_million(pricing.get("input")),
        output_price=per_million(pricing.get("output")),
        context_length=context if isinstance(context, int) and context > 0 else None,
        attributes={
            "aliases": (str(item["id"]).replace("--", "/"),),
            "request_price": per_million(pricing.get("request")),
            "quantization": item.get("quantization"),
        },
    )


# -- self-hosted vLLM on an Akash lease -------------------------------------------------------

PriceStat = Literal["weightedAverage", "avg", "med", "min", "max"]


class AkashVLLMOptions(OpenAIOptions):
    """``[[backends]]`` keys for ``type = "akash-vllm"``."""

    gpu: str = Field("h100", description="GPU model as the Console API names it, e.g. 'h100'")
    gpu_count: int = Field(1, ge=1)
    gpu_ram: str | None = Field(None, description="e.g. '80Gi' when a model has variants")
    tokens_per_s: float | None = Field(None, gt=0, description="sustained tokens/s, measured")
    price_stat: PriceStat = "weightedAverage"
    overhead: float = Field(1.0, ge=1.0, description="multiplier for idle time and deposit")
    console_api_url: str = Field(
        "https://console-api.akash.network",
        description="the Akash Console API whose GET /v1/gpu-prices gives GPU $/hour",
    )


class AkashVLLMBackend(OpenAIBackend):
    """vLLM's OpenAI server at your lease's ingress URI; ``VLLM_API_KEY`` is its key."""

    discovers_prices: ClassVar[bool] = True
    options: AkashVLLMOptions = AkashVLLMOptions()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics_sample: tuple[float, float] | None = None
        self._observed_tps: float | None = None

    @classmethod
    def from_config(cls, config: BackendConfig) -> AkashVLLMBackend:
        options, base = split_options(config, AkashVLLMOptions)
        backend = super().from_config(base)
        assert isinstance(backend, AkashVLLMBackend)
        backend.options = options
        return backend

    async def acomplete(self, request: ChatRequest) -> Completion:
        started = time.perf_counter()
        completion = await super().acomplete(request)
        elapsed = time.perf_counter() - started
        if completion.usage and completion.usage.completion_tokens and elapsed > 0:
            rate = completion.usage.total_tokens / elapsed
            old = self._observed_tps
            self._observed_tps = rate if old is None else 0.8 * old + 0.2 * rate
        return completion

    async def alist_models(self) -> list[ModelListing]:
        """The lease's models, priced by the estimate (``price_source = "estimated"``)."""
        models = await super().alist_models()
        hourly = await self.agpu_hourly_usd()
        tps = await self.atokens_per_s()
        price = self.estimate_per_million(hourly, tps)
        attributes = {
            "price_source": "estimated",
            "gpu_hourly_usd": hourly,
            "tokens_per_s": tps,
            "gpu": self.options.gpu,
            "gpu_count": self.options.gpu_count,
        }
        return [
            ModelListing(m.id, input_price=price, output_price=price, attributes=attributes)
            for m in models
        ]

    def estimate_per_million(self, hourly: float | None, tps: float | None) -> float | None:
        """USD per 1M tokens = GPU $/h × GPUs × overhead / (3600 × tokens/s) × 1e6."""
        if hourly is None or not tps:
            return None
        o = self.options
        return hourly * o.gpu_count * o.overhead / (3600.0 * tps) * 1e6

    async def agpu_hourly_usd(self) -> float | None:
        """USD per GPU-hour for ``options.gpu`` from ``/v1/gpu-prices``; None when no bids."""
        console = Connection(self.options.console_api_url, {}, self.connection.timeout_s)
        try:
            data = await console.get_json("/v1/gpu-prices", backend=self.name)
        finally:
            await console.aclose()
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise MalformedResponse("gpu-prices: no 'models' list", backend=self.name)
        return _gpu_price(models, self.options)

    async def atokens_per_s(self) -> float | None:
        """Configured tokens/s, else the rate between two ``/metrics`` scrapes, else observed."""
        if self.options.tokens_per_s:
            return self.options.tokens_per_s
        measured = await self._metrics_rate()
        return measured or self._observed_tps

    async def _metrics_rate(self) -> float | None:
        origin = re.sub(r"/v1$", "", self.connection.base_url)
        conn = self.connection
        try:
            with map_transport_errors(self.name):
                response = await conn.client().get(origin + "/metrics")
        except BackendError:  # metrics are optional; the estimate falls back
            return None
        if response.status_code != 200:
            return None
        total = _token_total(response.text.splitlines())
        now, last = time.monotonic(), self._metrics_sample
        self._metrics_sample = (now, total)
        if last is None or now <= last[0] or total <= last[1]:
            return None
        return (total - last[1]) / (now - last[0])


def _gpu_price(models: list[Any], options: AkashVLLMOptions) -> float | None:
    for entry in models:
        if not isinstance(entry, dict) or str(entry.get("model", "")).lower() != options.gpu:
            continue
        if options.gpu_ram and entry.get("ram") != options.gpu_ram:
            continue
        price = entry.get("price")
        if isinstance(price, dict) and isinstance(price.get(options.price_stat), int | float):
            return float(price[options.price_stat])
    return None


_TOKEN_COUNTERS = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total")


def _token_total(lines: Iterable[str]) -> float:
    """Sum of prompt and generation token counters over every label set."""
    total = 0.0
    for line in lines:
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in _TOKEN_COUNTERS:
            try:
                total += float(line.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return total


def __getattr__(name: str) -> Any:
    # generate_sdl lives with its only caller, the ``intentmesh akash sdl`` command; the
    # documented import path intentmesh.adapters.akash.generate_sdl keeps working.
    if name == "generate_sdl":
        from intentmesh.cli import generate_sdl

        return generate_sdl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
