"""NVIDIA GPU evidence: NRAS attestation tokens (EAT, JWT) verified against the issuer's JWKS.

NRAS (``POST https://nras.attestation.nvidia.com/v3/attest/gpu`` with ``{"nonce", "arch",
"evidence_list"}``) answers ``[["JWT", <overall token>], {"GPU-0": <token>, ...}]``. The overall
token carries ``x-nvidia-overall-att-result``, ``eat_nonce`` and ``submods`` (per GPU,
``["DIGEST", ["SHA-256", sha256(<GPU token>)]]``); each GPU token carries the appraisal claims
(``measres``, ``hwmodel``, ``x-nvidia-gpu-driver-version``, ``x-nvidia-gpu-vbios-version``,
``secboot``, ``dbgstat`` …). Tokens are signed ES384 by a key the JWKS publishes (``x5c`` or
EC ``x``/``y``), found by ``kid``.

Checked here, for every token: the signature (never skipped: no key, no accept), the
algorithm (the policy's, never ``none``), ``iss``, ``exp``/``nbf``; then the overall result,
``eat_nonce`` = our nonce, each GPU token's digest in ``submods``, and the GPU claims against
the policy. Failures raise :class:`AttestationFailed` with ``check`` = ``gpu_evidence``,
``gpu_signature``, ``nonce``, ``gpu_binding`` or ``gpu_claims``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field

from intentmesh.errors import AttestationFailed, ConfigurationError

__all__ = ["DEFAULT_GPU_CLAIMS", "JwksCache", "NrasPolicy", "NrasVerifier"]

NRAS = "https://nras.attestation.nvidia.com"
DEFAULT_GPU_CLAIMS: dict[str, Any] = {
    "measres": "success",
    "x-nvidia-gpu-arch-check": True,
    "x-nvidia-gpu-attestation-report-nonce-match": True,
    "secboot": True,
    "dbgstat": "disabled",
}


class NrasPolicy(BaseModel):
    """``attestation.nras``: the issuer, its keys, and what the GPU claims must say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = f"{NRAS}/v3/attest/gpu"
    jwks_url: str = f"{NRAS}/.well-known/jwks.json"
    issuer: str = NRAS
    algorithms: list[str] = Field(default_factory=lambda: ["ES384"], min_length=1)
    jwks_max_age_s: float = Field(3600.0, gt=0)
    leeway_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(10.0, gt=0)
    arch: str = "HOPPER"
    hwmodels: list[str] = Field(default_factory=list)  # accepted GPU models; empty: any
    driver_versions: list[str] = Field(default_factory=list)  # accepted; empty: any
    vbios_versions: list[str] = Field(default_factory=list)  # accepted; empty: any
    claims: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_GPU_CLAIMS))


class JwksCache:
    """The issuer's keys by ``kid``, refetched after ``max_age_s`` or once for an unknown kid."""

    def __init__(
        self, url: str, client: httpx.AsyncClient, max_age_s: float, clock: Callable[[], float]
    ) -> None:
        self.url = url
        self.max_age_s = max_age_s
        self.fetches = 0
        self._client = client
        self._clock = clock
        self._keys: dict[str, Any] = {}
        self._at = float("-inf")
        self._lock = anyio.Lock()

    async def key(self, kid: str) -> Any:
        async with self._lock:
            if self._clock() - self._at >= self.max_age_s or kid not in self._keys:
                await self._refresh()
        found = self._keys.get(kid)
        if found is None:
            raise _fail("gpu_signature", f"the issuer's JWKS ({self.url}) has no key {kid!r}")
        return found

    def clear(self) -> None:
        self._keys = {}
        self._at = float("-inf")

    async def _refresh(self) -> None:
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            keys = response.json()["keys"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _fail("gpu_signature", f"cannot read the JWKS at {self.url}: {exc}") from None
        self._keys = {str(k.get("kid")): _public_key(k) for k in keys if isinstance(k, dict)}
        self._at = self._clock()
        self.fetches += 1


class NrasVerifier:
    """Verifies NRAS tokens (or asks NRAS for them) under an :class:`NrasPolicy`."""

    def __init__(
        self,
        policy: NrasPolicy | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        backend: str = "",
    ) -> None:
        _require_jwt(backend)
        self.policy = policy or NrasPolicy()
        self.backend = backend
        self._own = client is None
        self._client = client or httpx.AsyncClient(timeout=self.policy.timeout_s)
        self._clock = clock
        self.jwks = JwksCache(self.policy.jwks_url, self._client, self.policy.jwks_max_age_s, clock)

    async def averify_item(self, item: Mapping[str, Any], nonce: str) -> dict[str, Any]:
        """One evidence item: its ``nras_token`` (or ``nvidia_payload``, sent to NRAS)."""
        token = item.get("nras_token") or item.get("gpu_token")
        if token is None and item.get("nvidia_payload") is not None:
            token = await self.attest(item["nvidia_payload"])
        if token is None:
            raise self._fail("gpu_evidence", "the evidence has no NVIDIA GPU token or payload")
        return await self.averify(token, nonce)

    async def attest(self, payload: Any) -> Any:
        """``POST`` the raw GPU evidence to NRAS; the answer is the token list."""
        body = json.loads(payload) if isinstance(payload, str) else payload
        try:
            response = await self._client.post(self.policy.url, json=body)
        except httpx.HTTPError as exc:
            message = f"cannot reach NRAS at {self.policy.url}: {exc}"
            raise self._fail("gpu_evidence", message) from exc
        if response.status_code != 200:
            raise self._fail("gpu_evidence", f"NRAS answered {response.status_code}")
        return response.json()

    async def averify(self, token: Any, nonce: str) -> dict[str, Any]:
        overall, gpus = self._split(token)
        claims = await self._decode(overall)
        if claims.get("x-nvidia-overall-att-result") is not True:
            raise self._fail("gpu_claims", "NRAS's overall attestation result is not true")
        if str(claims.get("eat_nonce", "")).lower() != nonce.lower():
            raise self._fail("nonce", "the GPU token's eat_nonce is not our nonce")
        submods = claims.get("submods") or {}
        verdicts = []
        for gpu_id, gpu_token in gpus.items():
            _check_digest(gpu_id, gpu_token, submods.get(gpu_id), self._fail)
            gpu = await self._decode(gpu_token)
            if "eat_nonce" in gpu and str(gpu["eat_nonce"]).lower() != nonce.lower():
                raise self._fail("nonce", f"{gpu_id}: eat_nonce is not our nonce")
            verdicts.append(self._judge(gpu_id, gpu))
        if not verdicts:
            raise self._fail("gpu_evidence", "the NRAS answer has no per-GPU token")
        return {"verifier": "nras", "issuer": self.policy.issuer, "verdict": "ok", "gpus": verdicts}

    def _split(self, token: Any) -> tuple[str, dict[str, str]]:
        data = token
        if isinstance(token, str) and token.lstrip().startswith("["):
            data = json.loads(token)
        try:
            overall = data[0][1]
            gpus = {str(k): str(v) for k, v in dict(data[1]).items()}
            if data[0][0] != "JWT" or not isinstance(overall, str):
                raise ValueError("the first entry is not ['JWT', token]")
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise self._fail(
                "gpu_evidence", f"not an NRAS answer ([['JWT', token], {{gpu: token}}]): {exc}"
            ) from None
        return overall, gpus

    async def _decode(self, token: str) -> dict[str, Any]:
        import jwt

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise self._fail("gpu_signature", f"unreadable token: {exc}") from None
        alg = header.get("alg")
        if alg not in self.policy.algorithms:
            raise self._fail(
                "gpu_signature",
                f"token algorithm {alg!r} is not accepted ({self.policy.algorithms})",
            )
        key = await self.jwks.key(str(header.get("kid")))
        try:
            decoded: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self.policy.algorithms,
                issuer=self.policy.issuer,
                leeway=self.policy.leeway_s,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise self._fail("gpu_signature", f"token rejected: {exc}") from None
        return decoded

    def _judge(self, gpu_id: str, claims: Mapping[str, Any]) -> dict[str, Any]:
        p = self.policy
        wrong = [
            f"{k}={claims.get(k)!r} (want {v!r})" for k, v in p.claims.items() if claims.get(k) != v
        ]
        for name, allowed in (
            ("hwmodel", p.hwmodels),
            ("x-nvidia-gpu-driver-version", p.driver_versions),
            ("x-nvidia-gpu-vbios-version", p.vbios_versions),
        ):
            if allowed and claims.get(name) not in allowed:
                wrong.append(f"{name}={claims.get(name)!r} (allowed {allowed})")
        if wrong:
            raise self._fail("gpu_claims", f"{gpu_id}: " + "; ".join(wrong))
        return {
            "id": gpu_id,
            "hwmodel": claims.get("hwmodel"),
            "driver_version": claims.get("x-nvidia-gpu-driver-version"),
            "vbios_version": claims.get("x-nvidia-gpu-vbios-version"),
        }

    def _fail(self, check: str, message: str) -> AttestationFailed:
        return AttestationFailed(f"attestation: {message}", backend=self.backend, check=check)

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()


def _check_digest(
    gpu_id: str, token: str, entry: Any, fail: Callable[[str, str], AttestationFailed]
) -> None:
    """``submods[gpu] = ["DIGEST", ["SHA-256", hex]]`` must be the GPU token's SHA-256."""
    try:
        kind, (algo, value) = entry
    except (TypeError, ValueError):
        raise fail("gpu_binding", f"{gpu_id}: the overall token does not list it") from None
    digest = hashlib.sha256(token.encode()).hexdigest()
    if kind != "DIGEST" or algo != "SHA-256" or str(value).lower() != digest:
        raise fail("gpu_binding", f"{gpu_id}: its token is not the one the overall token signs")


def _public_key(jwk: Mapping[str, Any]) -> Any:
    """The verifying key of one JWK: its ``x5c`` leaf certificate, else the JWK itself."""
    import jwt
    from cryptography import x509

    chain = jwk.get("x5c")
    if chain:
        return x509.load_der_x509_certificate(base64.b64decode(chain[0])).public_key()
    return jwt.PyJWK.from_dict(dict(jwk)).key


def _fail(check: str, message: str) -> AttestationFailed:
    return AttestationFailed(f"attestation: {message}", check=check)


def _require_jwt(backend: str) -> None:
    try:
        import jwt  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"backend {backend!r}: attestation.nras needs PyJWT; "
            "install it with: pip install 'intentmesh[tee]'"
        ) from None
