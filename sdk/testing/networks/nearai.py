"""A loopback NEAR AI Cloud: OpenAI-compatible chat, signed answers, attestation reports.

Wire (docs/networks/nearai.md): ``POST /v1/chat/completions`` (Bearer key); ``GET
/v1/signature/{chat_id}?model=&signing_algo=ecdsa`` answering ``{"text": "<sha256(request
body)>:<sha256(response body)>", "signature": "0x<r||s||v>", "signing_address", "signing_algo":
"ecdsa"}`` (EIP-191 over ``text``); ``GET /v1/attestation/report?model=&nonce=&signing_algo=ecdsa``
answering ``{"gateway_attestation": {...}, "model_attestations": [{"signing_address",
"signing_algo", "intel_quote" (hex), "nvidia_payload" (JSON text: nonce, arch, evidence_list)}]}``
with REPORTDATA = the address right-padded to 32 bytes, then the nonce.

The quote is structurally valid but not signed by Intel (no fake can be): pair it with golden
measurements, not with ``dcap``. ``mode``: ``good``, ``bad_signature`` (signed by another key),
``wrong_hash`` (signs another response hash), ``unattested`` (the answer's key is not in the
report), ``wrong_nonce`` (the report binds another nonce).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from intentmesh.testing._openai import FakeOpenAIProvider
from intentmesh.testing._server import FakeRequest, FakeResponse

__all__ = ["FakeNearAI", "FakePhala"]


class FakeNearAI(FakeOpenAIProvider):
    def __init__(self, models: list[str] | None = None, *, mode: str = "good", **kw: Any) -> None:
        super().__init__(models or ["deepseek-ai/DeepSeek-V3.1"], **kw)
        import coincurve

        self.mode = mode
        self.key = coincurve.PrivateKey()
        self.other = coincurve.PrivateKey()
        self.gateway_key = coincurve.PrivateKey()
        self.signed: dict[str, tuple[str, str]] = {}
        self.mrtd = b"\x11" * 48

    @staticmethod
    def address_of(key: Any) -> str:
        from intentmesh.verify import eth_address

        return eth_address(key.public_key.format(compressed=False))

    @property
    def signing_address(self) -> str:
        return self.address_of(self.key)

    async def handle(self, request: FakeRequest) -> FakeResponse:
        path = request.path.rstrip("/")
        if request.method == "GET" and path.startswith("/v1/signature/"):
            if not self._authorized(request):
                return FakeResponse.json({"error": {"message": "Invalid API key"}}, 401)
            return self._signature(path.rsplit("/", 1)[1])
        if request.method == "GET" and path == "/v1/attestation/report":
            return await self._report(request)  # public: no key needed
        response = await super().handle(request)
        if path == "/v1/chat/completions" and response.status == 200 and response.body:
            chat_id = json.loads(response.body).get("id", "")
            self.signed[chat_id] = (
                hashlib.sha256(request.body).hexdigest(),
                hashlib.sha256(response.body).hexdigest(),
            )
        return response

    def _signature(self, chat_id: str) -> FakeResponse:
        if chat_id not in self.signed:
            return FakeResponse.json({"error": {"message": "Chat id not found"}}, 404)
        req, resp = self.signed[chat_id]
        if self.mode == "wrong_hash":
            resp = hashlib.sha256(b"another answer").hexdigest()
        text = f"{req}:{resp}"
        key = self.key
        if self.mode in ("bad_signature", "unattested"):
            key = self.other
        signature = "0x" + _personal_sign(key, text).hex()
        address = self.address_of(self.other if self.mode == "unattested" else self.key)
        return FakeResponse.json(
            {
                "text": text,
                "signature": signature,
                "signing_address": address,
                "signing_algo": "ecdsa",
            }
        )

    async def _report(self, request: FakeRequest) -> FakeResponse:
        nonce = request.query.get("nonce", "")
        if self.mode == "wrong_nonce":
            nonce = "00" * 32
        return FakeResponse.json(
            {
                "gateway_attestation": self._attestation(self.gateway_key, nonce, gpu=False),
                "model_attestations": [self._attestation(self.key, nonce, gpu=True)],
            }
        )

    def _attestation(self, key: Any, nonce: str, *, gpu: bool) -> dict[str, Any]:
        from intentmesh.verify import build_tdx_quote

        address = self.address_of(key)
        report_data = bytes.fromhex(address[2:]).ljust(32, b"\0") + bytes.fromhex(nonce)
        out: dict[str, Any] = {
            "signing_address": address,
            "signing_algo": "ecdsa",
            "intel_quote": build_tdx_quote(report_data, mrtd=self.mrtd).hex(),
        }
        if gpu:
            payload = {
                "nonce": nonce,
                "arch": "HOPPER",
                "evidence_list": [{"evidence": "ZXZpZGVuY2U=", "certificate": "Y2VydA=="}],
            }
            out["nvidia_payload"] = json.dumps(payload)
        return out


def _personal_sign(key: Any, text: str) -> bytes:
    from intentmesh.verify import personal_sign_hash

    sig = bytes(key.sign_recoverable(personal_sign_hash(text), hasher=None))
    return sig[:64] + bytes([sig[64] + 27])


class FakePhala(FakeNearAI):
    """Phala's Confidential AI API (RedPill): the same proxy, answering the attestation report
    as one attestation object with ``all_attestations`` (one per node)."""

    def __init__(self, models: list[str] | None = None, **kw: Any) -> None:
        super().__init__(models or ["phala/deepseek-chat-v3-0324"], **kw)

    async def _report(self, request: FakeRequest) -> FakeResponse:
        nonce = request.query.get("nonce", "")
        if self.mode == "wrong_nonce":
            nonce = "00" * 32
        node = self._attestation(self.key, nonce, gpu=True)
        return FakeResponse.json({**node, "all_attestations": [node]})
