"""A loopback fake of OpenRouter's public model catalog (``GET /api/v1/models``, no key).

It answers in the real shape: ``{"data": [model, ...]}``, each model with ``id``,
``canonical_slug``, ``name``, ``created``, ``description``, ``context_length``, ``architecture``,
``pricing`` (USD per token as decimal strings: ``prompt``, ``completion``, ``request``, ``image``,
``web_search``, ``internal_reasoning``, ``input_cache_read``, ``input_cache_write``),
``top_provider``, ``per_request_limits`` and ``supported_parameters``. Point
``intentmesh prices refresh --url`` (or ``$INTENTMESH_PRICES_URL``) at :attr:`url`.
"""

from __future__ import annotations

from typing import Any

from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer

__all__ = ["FakeModelCatalog", "catalog_model"]

# Sample USD per 1M tokens (input, output): plausible numbers for tests and docs, not quotes.
SAMPLE_PRICES: dict[str, tuple[float, float]] = {
    "meta-llama/llama-3.1-8b-instruct": (0.02, 0.03),
    "meta-llama/llama-3.3-70b-instruct": (0.10, 0.32),
    "qwen/qwen3-32b": (0.05, 0.20),
    "deepseek/deepseek-r1": (0.40, 2.00),
    "openai/gpt-oss-20b": (0.03, 0.14),
    "openai/gpt-5-nano": (0.05, 0.40),
    "openai/gpt-5-mini": (0.25, 2.00),
    "openai/gpt-5": (1.25, 10.00),
    "openai/o4-mini": (1.10, 4.40),
    "anthropic/claude-haiku-4.5": (1.00, 5.00),
    "anthropic/claude-sonnet-4.5": (3.00, 15.00),
    "google/gemini-2.5-flash-lite": (0.10, 0.40),
    "google/gemini-2.5-flash": (0.30, 2.50),
    "google/gemini-2.5-pro": (1.25, 10.00),
}


def _per_token(per_million: float) -> str:
    """USD per 1M tokens as the catalog writes it: USD per token, a plain decimal string."""
    return f"{per_million / 1e6:.12f}".rstrip("0").rstrip(".") or "0"


def catalog_model(
    model_id: str,
    input_per_million: float,
    output_per_million: float,
    *,
    name: str | None = None,
    context_length: int = 131072,
) -> dict[str, Any]:
    """One entry of ``data`` in the real shape; prices given per 1M tokens, sent per token."""
    author, _, slug = model_id.partition("/")
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "hugging_face_id": "",
        "name": name or f"{author.title()}: {slug}",
        "created": 1750000000,
        "description": f"{model_id} (loopback fake)",
        "context_length": context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": _per_token(input_per_million),
            "completion": _per_token(output_per_million),
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0",
            "input_cache_read": "0",
            "input_cache_write": "0",
        },
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": 16384,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "top_p", "seed", "stop"],
    }


def sample_models() -> list[dict[str, Any]]:
    """:data:`SAMPLE_PRICES` as entries, plus the kinds a real answer also has: a router whose
    price varies (``"-1"``) and a free variant."""
    models = [catalog_model(i, a, b) for i, (a, b) in SAMPLE_PRICES.items()]
    auto = catalog_model("openrouter/auto", 0, 0, name="Auto Router", context_length=2000000)
    auto["pricing"].update(prompt="-1", completion="-1")
    free = catalog_model("meta-llama/llama-3.3-70b-instruct:free", 0, 0)
    return [*models, auto, free]


class FakeModelCatalog(LoopbackServer):
    """``GET /api/v1/models`` on 127.0.0.1. ``models`` replaces the sample list; setting
    :attr:`body` (raw bytes) or :attr:`status` makes it misbehave; :attr:`requests` counts GETs.
    """

    def __init__(self, models: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.models = sample_models() if models is None else models
        self.body: bytes | None = None
        self.status = 200
        self.requests = 0

    async def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method != "GET" or request.path.rstrip("/") != "/api/v1/models":
            return FakeResponse.json({"error": {"code": 404, "message": "Not Found"}}, status=404)
        self.requests += 1
        if self.body is not None:
            return FakeResponse(self.status, {"content-type": "application/json"}, self.body)
        if self.status != 200:
            error = {"error": {"code": self.status, "message": "Service unavailable"}}
            return FakeResponse.json(error, status=self.status)
        return FakeResponse.json({"data": self.models})
