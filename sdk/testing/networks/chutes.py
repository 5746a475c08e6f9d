"""``FakeChutes``: Chutes' ``llm.chutes.ai`` and its evidence endpoint on loopback.

Reproduces: ``GET /v1/models`` without auth, with ``price``/``pricing`` (USD per 1M) and
``confidential_compute``; Bearer auth taking the last word of ``Authorization`` (a bare key
works; ``X-API-Key`` is ignored); FastAPI ``{"detail": ...}`` errors: 401 (missing:
``"Authentication required."``, unknown key), 402 (``detail: {message,
quota_reset_timestamp}``), 404 ``"model not found: <model>"``, 429, 503, 500; in-stream
``data: {"error", "detail"}``; the ``X-Chutes-InvocationID`` header; and
``GET /chutes/{chute_id}/evidence?nonce=`` with the 64-hex nonce validation.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from intentmesh.testing._server import FakeRequest, FakeResponse
from intentmesh.testing.networks._base import NetworkFake, Route

__all__ = ["ChutesModel", "FakeChutes", "fake_chutes_key"]

_NONCE = re.compile(r"^[0-9a-fA-F]{64}$")


def fake_chutes_key(seed: str = "test") -> str:
    """A key in Chutes' format: ``cpk_<32hex>.<32hex>.<32alnum>``."""
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"cpk_{digest[:32]}.{digest[32:]}.{'A' * 16}{digest[:16]}"


@dataclass(frozen=True)
class ChutesModel:
    """One model on the fake gateway; prices in USD per 1M tokens."""

    id: str
    input_price: float = 0.1
    output_price: float = 0.4
    confidential: bool = False
    context_length: int = 40960
    chute_id: str = field(default="")

    @property
    def chute(self) -> str:
        return self.chute_id or str(uuid.uuid5(uuid.NAMESPACE_URL, self.id))

    def card(self, created: int) -> dict[str, Any]:
        tao = 0.005
        return {
            "id": self.id,
            "root": self.id.removesuffix("-TEE"),
            "object": "model",
            "created": created,
            "price": {
                "input": {"usd": self.input_price, "tao": self.input_price * tao},
                "output": {"usd": self.output_price, "tao": self.output_price * tao},
            },
            "pricing": {"prompt": self.input_price, "completion": self.output_price},
            "chute_id": self.chute,
            "owned_by": "sglang",
            "quantization": "fp8",
            "max_model_len": self.context_length,
            "context_length": self.context_length,
            "max_output_length": self.context_length,
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "supported_features": ["json_mode", "tools", "structured_outputs"],
            "confidential_compute": self.confidential,
            "supported_sampling_parameters": ["temperature", "top_p"],
        }


class FakeChutes(NetworkFake):
    """Chutes on loopback. ``quota_exhausted = True`` makes every call a 402."""

    public: ClassVar[frozenset[str]] = frozenset({"/health", "/v1/models"})
    messages: ClassVar[dict[int, str]] = {
        400: "Invalid request",
        401: "Can't find a user with that api key in our db :(",
        429: "Infrastructure is at maximum capacity, try again later",
        500: "exhausted all available targets to no avail",
        503: "No instances available (yet) for chute_id=__megallm__",
    }

    def __init__(
        self,
        models: Sequence[ChutesModel | str] = (ChutesModel("unsloth/Llama-3.1-8B-Instruct"),),
        *,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        cards = [m if isinstance(m, ChutesModel) else ChutesModel(m) for m in models]
        super().__init__([m.id for m in cards], api_key=api_key or fake_chutes_key(), **kwargs)
        self.catalog = {m.id: m for m in cards}
        self.quota_exhausted = False

    def routes(self) -> dict[tuple[str, str], Route]:
        return {
            ("GET", "/v1/models"): self._models,
            ("GET", "/chutes/{chute_id}/evidence"): self._evidence,
        }

    def in_stream_error(self, message: str) -> dict[str, Any]:
        return {"error": message, "detail": message}

    def check_auth(self, request: FakeRequest) -> FakeResponse | None:
        header = request.headers.get("authorization")
        if not header:
            return self.error(401, "Authentication required.")
        if header.split(" ")[-1] != self.key:
            return self.error(401)
        if self.quota_exhausted:
            detail = {
                "message": "Quota exceeded and account balance is $0.0, please pay with fiat "
                "or send tao to your payment address",
                "quota_reset_timestamp": "2099-01-01T00:00:00Z",
            }
            return FakeResponse.json({"detail": detail}, 402)
        return None

    def precheck(self, request: FakeRequest, payload: dict[str, Any]) -> FakeResponse | None:
        model = payload.get("model")
        if isinstance(model, str) and model not in self.catalog:
            return self.error(404, f"model not found: {model}")
        return None

    def response_headers(self, request: FakeRequest) -> dict[str, str]:
        return {"x-chutes-invocationid": str(uuid.uuid4())}

    async def _models(self, request: FakeRequest) -> FakeResponse:
        created = int(time.time())
        data = [m.card(created) for m in self.catalog.values()]
        return FakeResponse.json({"object": "list", "data": data})

    async def _evidence(self, request: FakeRequest) -> FakeResponse:
        chute_id = request.path.strip("/").split("/")[1]
        nonce = request.query.get("nonce")
        if nonce is None:
            missing = {"type": "missing", "loc": ["query", "nonce"], "msg": "Field required"}
            return FakeResponse.json({"detail": [{**missing, "input": None}]}, 422)
        if not _NONCE.match(nonce):
            return self.error(
                400, f"Nonce must be exactly 64 hex characters (32 bytes), got {len(nonce)}"
            )
        model = next((m for m in self.catalog.values() if m.chute == chute_id), None)
        if model is None:
            return self.error(404, "Chute not found")
        if not model.confidential:
            return self.error(400, f"Chute {chute_id} is not TEE-enabled")
        report = hashlib.sha256(bytes.fromhex(nonce)).digest()
        instance = str(uuid.uuid5(uuid.NAMESPACE_OID, chute_id))
        evidence = {
            "quote": base64.b64encode(b"FAKE-TDX-QUOTE\0" + report).decode(),
            "gpu_evidence": [{"certificate": "FAKE-CERT", "evidence": "FAKE", "arch": "HOPPER"}],
            "instance_id": instance,
            "certificate": "FAKE-INSTANCE-CERT",
        }
        return FakeResponse.json({"evidence": [evidence], "failed_instance_ids": []})
