"""A loopback NVIDIA Remote Attestation Service: signs GPU attestation tokens with its own key.

* ``GET /.well-known/jwks.json``: ``{"keys": [{"kty": "EC", "crv": "P-384", "kid", "x", "y",
  "x5c": [<DER cert, base64>]}]}``;
* ``POST /v3/attest/gpu`` with ``{"nonce", "arch", "evidence_list": [{"evidence",
  "certificate"}]}``: ``[["JWT", <overall>], {"GPU-0": <token>, ...}]`` (one GPU token per
  evidence entry), the overall token binding each GPU token by SHA-256 in ``submods``.

Tokens are ES384 with ``iss`` = the server's URL (set ``issuer`` to change it). ``gpu_claims``
overrides the per-GPU claims; :meth:`issue` signs a token list directly.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer

__all__ = ["GOOD_GPU_CLAIMS", "FakeNras"]

GOOD_GPU_CLAIMS: dict[str, Any] = {
    "measres": "success",
    "x-nvidia-gpu-arch-check": True,
    "x-nvidia-gpu-attestation-report-nonce-match": True,
    "secboot": True,
    "dbgstat": "disabled",
    "hwmodel": "GH100 A01 GSP BROM",
    "x-nvidia-gpu-driver-version": "570.133.20",
    "x-nvidia-gpu-vbios-version": "96.00.CF.00.02",
}


class FakeNras(LoopbackServer):
    def __init__(self, *, kid: str = "nras-test-1", issuer: str | None = None) -> None:
        super().__init__()
        from cryptography.hazmat.primitives.asymmetric import ec

        self.kid = kid
        self._issuer = issuer
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.gpu_claims: dict[str, Any] = {}
        self.jwks_fetches = 0
        self.attests = 0

    @property
    def issuer(self) -> str:
        return self._issuer or self.url

    def jwks(self) -> dict[str, Any]:
        import jwt

        jwk = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "x5c": [self._cert()]}]}

    def issue(
        self, nonce: str, gpus: int = 1, *, overall: bool = True, key: Any = None, **extra: Any
    ) -> list[Any]:
        """``[["JWT", overall], {"GPU-i": token}]`` for ``nonce``; ``extra`` goes into the
        overall token's claims (e.g. ``eat_nonce``), ``key`` signs instead of ours."""
        now = int(time.time())
        base = {"iss": self.issuer, "iat": now, "nbf": now, "exp": now + 3600}
        tokens = {
            f"GPU-{i}": self._sign(
                {**base, "eat_nonce": nonce, **GOOD_GPU_CLAIMS, **self.gpu_claims}, key
            )
            for i in range(gpus)
        }
        submods = {
            gpu: ["DIGEST", ["SHA-256", hashlib.sha256(t.encode()).hexdigest()]]
            for gpu, t in tokens.items()
        }
        claims = {
            **base,
            "eat_nonce": nonce,
            "x-nvidia-overall-att-result": overall,
            "submods": submods,
            **extra,
        }
        return [["JWT", self._sign(claims, key)], tokens]

    async def handle(self, request: FakeRequest) -> FakeResponse:
        if request.method == "GET" and request.path == "/.well-known/jwks.json":
            self.jwks_fetches += 1
            return FakeResponse.json(self.jwks())
        if request.method == "POST" and request.path == "/v3/attest/gpu":
            self.attests += 1
            body = request.json()
            if not isinstance(body, dict) or "nonce" not in body:
                return FakeResponse.json({"errorCode": 400, "message": "nonce is required"}, 400)
            gpus = len(body.get("evidence_list") or []) or 1
            return FakeResponse.json(self.issue(body["nonce"], gpus))
        return FakeResponse.json({"message": "not found"}, 404)

    def _sign(self, claims: dict[str, Any], key: Any = None) -> str:
        import jwt

        return jwt.encode(claims, key or self.key, algorithm="ES384", headers={"kid": self.kid})

    def _cert(self) -> str:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import NameOID

        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake NRAS signing key")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(1)
            .not_valid_before(datetime.datetime(2024, 1, 1))
            .not_valid_after(datetime.datetime(2049, 1, 1))
            .sign(self.key, hashes.SHA384())
        )
        return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
