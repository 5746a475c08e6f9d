"""Fakes for the verifiability tests: TEE providers that publish evidence, and a gateway."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from intentmesh import Gateway
from intentmesh.adapters.openai import OpenAIBackend
from intentmesh.config import parse_config
from intentmesh.testing import FakeOpenAIProvider, FakeRequest, FakeResponse
from intentmesh.verify import build_tdx_quote

MODEL = "llama-3.1-8b-instruct"
MRTD = "11" * 48


class FakeTeeProvider(FakeOpenAIProvider):
    """An OpenAI-compatible provider that also serves TEE evidence.

    Chutes shape at ``GET /chutes/{chute_id}/evidence?nonce=``; the generic shape at
    ``GET /v1/attestation/report?nonce=``. ``mode`` picks the misbehaviour: ``good``,
    ``wrong_nonce``, ``stale``, ``bad_measurement``, ``garbage``, ``down`` or ``sha256``.
    """

    def __init__(self, chute_id: str = "c0ffee", mode: str = "good", **kw: Any) -> None:
        super().__init__(["fake-llama"], **kw)
        self.mode = mode
        self.chute_id = chute_id
        self.nonces: list[str] = []
        self._routes[("GET", f"/chutes/{chute_id}/evidence")] = self._chutes
        self._routes[("GET", "/v1/attestation/report")] = self._generic

    def _item(self, nonce: str) -> dict[str, Any]:
        self.nonces.append(nonce)
        bound = bytes.fromhex(nonce)
        if self.mode == "wrong_nonce":
            bound = bytes(32)
        elif self.mode == "sha256":
            bound = hashlib.sha256(bound).digest()
        mrtd = bytes.fromhex("99" * 48) if self.mode == "bad_measurement" else bytes.fromhex(MRTD)
        quote = build_tdx_quote(bound, mrtd=mrtd)
        when = time.time() - (3600 if self.mode == "stale" else 0)
        return {
            "instance_id": "inst-1",
            "quote": base64.b64encode(quote).decode() if self.mode != "garbage" else "!!",
            "gpu_evidence": [{"nonce": nonce, "arch": "HOPPER"}],
            "timestamp": when,
        }

    async def _chutes(self, request: FakeRequest) -> FakeResponse:
        if self.mode == "down":
            return FakeResponse.json({"detail": "no evidence"}, 503)
        return FakeResponse.json(
            {"evidence": [self._item(request.query["nonce"])], "failed_instance_ids": []}
        )

    async def _generic(self, request: FakeRequest) -> FakeResponse:
        item = self._item(request.query["nonce"])
        return FakeResponse.json(
            {"signing_address": item["instance_id"], "intel_quote": item["quote"],
             "nonce": request.query["nonce"], "timestamp": item["timestamp"]}
        )


def backend_toml(
    name: str,
    base_url: str,
    *,
    price: float = 0.1,
    operator: str | None = None,
    levels: tuple[str, ...] = (),
    extra: str = "",
) -> str:
    lines = [
        "[[backends]]",
        f'name = "{name}"',
        f'base_url = "{base_url}"',
        "retries = 0",
        "timeout_s = 5",
        f"verifiability = {list(levels)!r}".replace("'", '"'),
    ]
    if operator:
        lines.append(f'operator = "{operator}"')
    if extra:
        lines.append(extra)
    lines += [
        "[[backends.models]]",
        f'name = "{MODEL}"',
        'id = "fake-llama"',
        f"input_price = {price}",
        f"output_price = {price * 2}",
    ]
    return "\n".join(lines) + "\n"


def make_gateway(tmp_path: Path, entries: list[str], **kwargs: Any) -> Gateway:
    text = (
        f'[receipts]\nledger = "{tmp_path / "ledger.sqlite3"}"\nkey = "{tmp_path / "key.pem"}"\n'
        "[routing]\nbackoff_s = 0.0\n" + "\n".join(entries)
    )
    config = parse_config(text)
    # Until BackendConfig has `attestation`/`proof` fields, the OpenAI adapter refuses them as
    # unknown options, so the tests build the adapters themselves.
    built = {
        e.name: OpenAIBackend(e.name, e.base_url or "", timeout_s=e.timeout_s)
        for e in config.backends
    }
    return Gateway(config, backends={**built, **kwargs.pop("backends", {})}, **kwargs)


Reply = Callable[[Any], str]
