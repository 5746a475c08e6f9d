"""NEAR AI Cloud (``cloud-api.near.ai``): OpenAI-compatible, every answer signed in a TEE.

Protocol (docs.near.ai "Verification"; github.com/nearai/nearai-cloud-verifier,
``py/chat_verifier.py`` and ``py/model_verifier.py``; see docs/networks/nearai.md):

* ``POST /v1/chat/completions``, Bearer key; the answer's ``id`` is the chat id.
* ``GET /v1/signature/{chat_id}?model=<model>&signing_algo=ecdsa`` answers ``{"text":
  "<request sha256>:<response sha256>"`` (or ``"<model>:<request>:<response>"``), ``"signature":
  "0x<65 bytes>", "signing_address": "0x<20 bytes>", "signing_algo": "ecdsa"}``: an EIP-191
  signature by a key generated inside the TEE, over the SHA-256 of the exact request body and of
  the exact response body.
* ``GET /v1/attestation/report?model=&nonce=&signing_algo=ecdsa`` proves that key is attested
  (``kind = "nearai"`` in ``[backends.attestation]``, checked by :mod:`intentmesh.verify`).

Here, after each non-streamed answer, the signature is fetched and checked: both hashes against
the bytes we sent and received, and the signer recovered from the signature must be the
``signing_address``. The signer is passed on as the ``x-intentmesh-signer`` header, so that an
``attestation`` with ``instance_header = "x-intentmesh-signer"`` requires it to be an attested
key. A bad signature raises :class:`AttestationFailed` (``check = "response_signature"``).
Streamed answers are not signature-checked (their hash covers the SSE text; at verifiable levels
the gateway does not stream from upstream).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar

from intentmesh.adapters._http import map_transport_errors
from intentmesh.adapters.base import ChatRequest, Completion
from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile
from intentmesh.errors import AttestationFailed

__all__ = ["SIGNER_HEADER", "NearAIBackend"]

SIGNER_HEADER = "x-intentmesh-signer"


class NearAIBackend(OpenAIBackend):
    """``cloud-api.near.ai/v1``; ``NEARAI_CLOUD_API_KEY`` holds the key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://cloud-api.near.ai/v1",
        require_key=True,
    )

    async def acomplete(self, request: ChatRequest) -> Completion:
        body = json.dumps(self.build_body(request, stream=False)).encode()  # the bytes signed
        response = await self.connection.send(
            "POST", self._path(request), backend=self.name, body=body, timeout_s=request.timeout_s
        )
        with map_transport_errors(self.name):
            completion = self.parse_completion(json.loads(response.content), response.headers)
            signed = await self._signature(completion.id, request.model, request)
        signer = self._check(signed, body, response.content)
        headers = {**dict(completion.headers), SIGNER_HEADER: signer}
        return Completion(
            text=completion.text,
            finish_reason=completion.finish_reason,
            usage=completion.usage,
            model=completion.model,
            id=completion.id,
            tool_calls=completion.tool_calls,
            headers=headers,
        )

    async def _signature(self, chat_id: str, model: str, request: ChatRequest) -> Any:
        conn = self.connection
        response = await conn.client().get(
            f"{conn.base_url}/signature/{chat_id}",
            params={"model": model, "signing_algo": "ecdsa"},
            timeout=conn.timeout(request.timeout_s),
        )
        if response.status_code != 200:
            raise self._fail(f"the signature endpoint answered {response.status_code}")
        return response.json()

    def _check(self, signed: Any, request_body: bytes, response_body: bytes) -> str:
        """The signer's address, after checking both hashes and the signature."""
        from intentmesh.verify import recover_signer

        if not isinstance(signed, dict) or not isinstance(signed.get("text"), str):
            raise self._fail("the signature answer has no text")
        parts = signed["text"].split(":")
        if len(parts) not in (2, 3):
            raise self._fail(f"unexpected signed text {signed['text'][:80]!r}")
        request_hash, response_hash = parts[-2], parts[-1]
        if request_hash != hashlib.sha256(request_body).hexdigest():
            raise self._fail("the signed request hash is not the hash of the request we sent")
        if response_hash != hashlib.sha256(response_body).hexdigest():
            raise self._fail("the signed response hash is not the hash of the answer we got")
        address = str(signed.get("signing_address") or "").lower()
        recovered = recover_signer(signed["text"], str(signed.get("signature") or ""))
        if recovered is None or recovered.lower() != address:
            raise self._fail(f"the signature is not by the signing address {address}")
        return address

    def _fail(self, message: str) -> AttestationFailed:
        return AttestationFailed(
            f"response signature: {message}", backend=self.name, check="response_signature"
        )
