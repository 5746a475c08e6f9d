"""The ``attested`` level: fetch hardware evidence bound to a fresh nonce, and check it.

A backend's ``attestation`` table in the config says where evidence comes from and what it
must show::

    [[backends]]
    name = "chutes-tee"
    verifiability = ["attested"]
    attestation = { kind = "chutes", chute_id = "c0ffee", max_age_s = 300,
                    golden = [{ mrtd = "…96 hex…", rtmr0 = "…" }] }

``kind = "chutes"`` reads ``GET {api}/chutes/{chute_id}/evidence?nonce=<64 hex>``;
``kind = "openai"`` reads ``GET {url}?nonce=<64 hex>&model=<id>`` from any OpenAI-compatible
server that publishes an attestation report. Checked here: structure (a parseable TDX quote
per instance), nonce binding (REPORTDATA and any echoed or GPU nonce), freshness, instance
identity and the measurements against golden values. The quote's signature chain needs Intel's
(and NVIDIA's) collateral: plug a :class:`QuoteVerifier` in for it; without one the receipt
says ``quote_signature: "not_checked"``, and ``require_quote_signature = true`` refuses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from intentmesh.errors import AttestationFailed, ConfigurationError, validation_message
from intentmesh.verify._dcap import DcapPolicy, DcapQuoteVerifier
from intentmesh.verify._nras import NrasPolicy, NrasVerifier
from intentmesh.verify._tdx import TdxQuote, parse_tdx_quote

__all__ = [
    "AttestationPolicy",
    "AttestationReport",
    "AttestationVerifier",
    "EvidenceFetcher",
    "QuoteVerifier",
    "TdxAttestationVerifier",
    "check_evidence",
]


class AttestationPolicy(BaseModel):
    """A backend's ``attestation`` config: where to fetch evidence and what it must show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["chutes", "openai", "nearai", "phala", "tinfoil"]  # tinfoil: _tinfoil.py
    chute_id: str | None = None
    url: str | None = None
    model: str | None = None  # sent as ?model= (NEAR AI attests per model)
    report_data: Literal["nonce", "sha256", "address+nonce"] = "nonce"
    max_age_s: float = Field(300.0, gt=0)
    instance_ids: list[str] = Field(default_factory=list)
    instance_header: str | None = None
    golden: list[dict[str, str]] = Field(default_factory=list)
    require_quote_signature: bool = False
    timeout_s: float = Field(10.0, gt=0)
    dcap: DcapPolicy | None = None
    nras: NrasPolicy | None = None

    @model_validator(mode="before")
    @classmethod
    def _nearai_layout(cls, data: Any) -> Any:
        """NEAR AI and Phala bind their signing address and our nonce: their default layout."""
        if isinstance(data, dict) and data.get("kind") in ("nearai", "phala"):
            return {"report_data": "address+nonce", **data}
        return data


@dataclass(frozen=True, slots=True)
class AttestationReport:
    """What was checked, for the receipt: nonce, evidence digest, instances, measurements."""

    kind: str
    nonce: str
    evidence_digest: str
    instance_ids: tuple[str, ...]
    measurements: dict[str, str]
    checks: dict[str, str]
    fetched_at: float
    quotes: list[dict[str, Any]] = field(default_factory=list)
    gpus: list[dict[str, Any]] = field(default_factory=list)

    def to_receipt(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": "attested",
            "kind": self.kind,
            "nonce": self.nonce,
            "evidence_digest": self.evidence_digest,
            "instance_ids": list(self.instance_ids),
            "measurements": self.measurements,
            "checks": self.checks,
        }
        if self.quotes:
            out["quotes"] = self.quotes  # each quote verifier's verdict (e.g. TCB status)
        if self.gpus:
            out["gpus"] = self.gpus  # the NRAS verdict per evidence item
        return out


class QuoteVerifier(Protocol):
    """An external check of a quote's signature chain (Intel DCAP, NVIDIA NRAS, a service).

    Return normally when the quote is genuine (optionally a verdict mapping, recorded in the
    receipt's ``verification.quotes``); raise :class:`AttestationFailed` otherwise.
    """

    async def averify_quote(
        self, quote: bytes, evidence: Mapping[str, Any]
    ) -> Mapping[str, Any] | None: ...


class AttestationVerifier(Protocol):
    """Fetches and checks evidence for one backend."""

    async def aattest(self, nonce: str) -> AttestationReport: ...

    def check_served_by(self, report: AttestationReport, headers: Mapping[str, str]) -> None: ...

    async def aclose(self) -> None: ...


_GPU_KEYS = frozenset({"nras_token", "gpu_token", "nvidia_payload"})

EvidenceFetcher = Callable[[str], Awaitable[dict[str, Any]]]
"""``nonce -> evidence document``; raise :class:`AttestationFailed` (check ``fetch``)."""


@dataclass(frozen=True, slots=True)
class _Instance:
    instance_id: str
    quote: TdxQuote
    raw_quote: bytes
    echoed: list[str] = field(default_factory=list)
    timestamp: float | None = None
    tls_fingerprint: str | None = None


P = TypeVar("P", bound=BaseModel)


def parse_policy(model: type[P], backend: str, options: Mapping[str, Any]) -> P:
    """A backend's ``attestation`` table as ``model``; a bad value names backend and key."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigurationError(
            f"backend {backend!r}: attestation.{where}: {validation_message(err)}"
        ) from None


class TdxAttestationVerifier:
    """Checks TDX evidence from one source against a policy; see the module docstring."""

    def __init__(
        self,
        backend: str,
        policy: AttestationPolicy,
        fetch: EvidenceFetcher,
        *,
        quote_verifier: QuoteVerifier | None = None,
        gpu_verifier: NrasVerifier | None = None,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.quote_verifier = quote_verifier
        self.gpu_verifier = gpu_verifier
        self._fetch = fetch
        self._clock = clock
        self._client = client

    @classmethod
    def from_config(
        cls,
        backend: str,
        base_url: str | None,
        options: Mapping[str, Any],
        api_key: str | None = None,
        quote_verifier: QuoteVerifier | None = None,
    ) -> TdxAttestationVerifier:
        if options.get("kind") == "tinfoil":  # AMD SEV-SNP with its own policy table
            from intentmesh.verify._tinfoil import TinfoilAttestationVerifier

            tinfoil = TinfoilAttestationVerifier.from_config(backend, base_url, options)
            return tinfoil  # type: ignore[return-value]  # an AttestationVerifier all the same
        policy = parse_policy(AttestationPolicy, backend, options)
        url = _evidence_url(backend, base_url, policy)
        if quote_verifier is None and policy.dcap is not None:
            quote_verifier = DcapQuoteVerifier(policy.dcap, backend=backend)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        client = httpx.AsyncClient(timeout=policy.timeout_s, headers=headers)
        params = {"model": policy.model} if policy.model else {}
        if policy.kind in ("nearai", "phala"):
            params["signing_algo"] = "ecdsa"
        fetch = _http_fetcher(backend, client, url, params)
        gpu = NrasVerifier(policy.nras, backend=backend) if policy.nras is not None else None
        return cls(
            backend, policy, fetch, quote_verifier=quote_verifier, gpu_verifier=gpu, client=client
        )

    async def aattest(self, nonce: str) -> AttestationReport:
        asked = self._clock()
        evidence = await self._fetch(nonce)
        fetched = self._clock()
        if fetched - asked > self.policy.max_age_s:
            raise self._fail("freshness", "the evidence took longer than max_age_s to arrive")
        report = check_evidence(self.backend, evidence, nonce, self.policy, fetched)
        if self.quote_verifier is not None:
            for quote in _raw_quotes(evidence):
                verdict = await self.quote_verifier.averify_quote(quote, evidence)
                if verdict:
                    report.quotes.append(dict(verdict))
            report.checks["quote_signature"] = "ok"
        elif self.policy.require_quote_signature:
            raise self._fail(
                "quote_signature",
                "require_quote_signature is set but no QuoteVerifier is configured",
            )
        if self.gpu_verifier is not None:
            # items that carry GPU evidence (a CPU-only gateway attestation may not); none is a
            # failure, raised by averify_item
            items = _items(evidence)
            gpu_items = [i for i in items if set(i) & _GPU_KEYS] or items[:1]
            for item in gpu_items:
                report.gpus.append(await self.gpu_verifier.averify_item(item, nonce))
            report.checks["gpu"] = "ok"
        return report

    def check_served_by(self, report: AttestationReport, headers: Mapping[str, str]) -> None:
        """When the backend names the serving instance in a header, it must be attested."""
        name = self.policy.instance_header
        if not name:
            return
        lowered = {k.lower(): v for k, v in headers.items()}
        served = lowered.get(name.lower())
        if served is None or served not in report.instance_ids:
            raise self._fail(
                "instance",
                f"the answer came from instance {served!r}, which is not among the attested "
                f"{list(report.instance_ids)}",
            )
        report.checks["served_by"] = "ok"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        for verifier in (self.quote_verifier, self.gpu_verifier):
            close = getattr(verifier, "aclose", None)
            if close is not None:
                await close()

    def _fail(self, check: str, message: str) -> AttestationFailed:
        return AttestationFailed(f"attestation: {message}", backend=self.backend, check=check)


def check_evidence(
    backend: str,
    evidence: Mapping[str, Any],
    nonce: str,
    policy: AttestationPolicy,
    now: float,
) -> AttestationReport:
    """Every check that needs no outside service; raises :class:`AttestationFailed`."""
    from intentmesh.receipts import digest

    def fail(check: str, message: str) -> AttestationFailed:
        return AttestationFailed(f"attestation: {message}", backend=backend, check=check)

    instances = _instances(evidence, fail)
    for inst in instances:
        if not _binds(inst, nonce, policy):
            raise fail("nonce", f"instance {inst.instance_id}: report data is not our nonce")
        if any(echo != nonce for echo in inst.echoed):
            raise fail("nonce", f"instance {inst.instance_id}: evidence echoes another nonce")
        if inst.timestamp is not None and abs(now - inst.timestamp) > policy.max_age_s:
            raise fail("freshness", f"instance {inst.instance_id}: evidence is stale")
        if policy.instance_ids and inst.instance_id not in policy.instance_ids:
            raise fail("instance", f"instance {inst.instance_id!r} is not an allowed instance")
    measurement = _check_golden(instances, policy.golden, fail)
    return AttestationReport(
        kind=policy.kind,
        nonce=nonce,
        evidence_digest=digest(dict(evidence)),
        instance_ids=tuple(i.instance_id for i in instances),
        measurements=instances[0].quote.measurements(),
        checks={
            "structure": "ok",
            "nonce": "ok",
            "freshness": "ok",
            "instance": "ok",
            "measurement": measurement,
            "quote_signature": "not_checked",
        },
        fetched_at=now,
    )


def _evidence_list(evidence: Mapping[str, Any]) -> Any:
    """The evidence items: Chutes' ``evidence``, NEAR AI's ``model_attestations`` (plus its
    ``gateway_attestation``), or the generic shape: one instance at top level."""
    if "model_attestations" in evidence:
        items = evidence.get("model_attestations")
        gateway = evidence.get("gateway_attestation")
        if isinstance(items, list) and isinstance(gateway, Mapping):
            return [*items, gateway]
        return items
    if "all_attestations" in evidence:  # the dstack vLLM proxy's multi-node answer
        return evidence.get("all_attestations")
    items = evidence.get("evidence")
    return [evidence] if items is None else items


def _instances(
    evidence: Mapping[str, Any], fail: Callable[[str, str], AttestationFailed]
) -> list[_Instance]:
    items = _evidence_list(evidence)
    if not isinstance(items, list) or not items:
        raise fail("structure", "no evidence items")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise fail("structure", f"evidence item {n} is not an object")
        instance_id = item.get("instance_id") or item.get("signing_address")
        if not isinstance(instance_id, str) or not instance_id:
            raise fail("structure", f"evidence item {n} has no instance_id")
        raw = _decode(item.get("quote") or item.get("intel_quote"))
        if raw is None:
            raise fail("structure", f"instance {instance_id}: no readable quote")
        try:
            quote = parse_tdx_quote(raw)
        except ValueError as exc:
            raise fail("structure", f"instance {instance_id}: {exc}") from None
        echoed = [str(item["nonce"])] if "nonce" in item else []
        for gpu in [*(item.get("gpu_evidence") or []), _json(item.get("nvidia_payload"))]:
            if isinstance(gpu, Mapping) and "nonce" in gpu:
                echoed.append(str(gpu["nonce"]))
        when, fingerprint = _when(item.get("timestamp")), item.get("tls_cert_fingerprint")
        out.append(_Instance(instance_id, quote, raw, echoed, when, fingerprint or None))
    return out


def _check_golden(
    instances: list[_Instance],
    golden: list[dict[str, str]],
    fail: Callable[[str, str], AttestationFailed],
) -> str:
    if not golden:
        return "not_checked"
    for inst in instances:
        got = inst.quote.measurements()
        if not any(all(got.get(k) == v.lower() for k, v in g.items()) for g in golden):
            raise fail(
                "measurement",
                f"instance {inst.instance_id}: measurements match no golden value "
                f"(mrtd {got['mrtd'][:16]}…)",
            )
    return "ok"


def _binds(inst: _Instance, nonce: str, policy: AttestationPolicy) -> bool:
    """REPORTDATA binds our nonce: ``[0:32]`` = nonce or its SHA-256; or (``address+nonce``,
    NEAR AI / dstack vLLM proxy) ``[0:32]`` = the signing address right-padded with zeros (or
    ``sha256(address || tls_cert_fingerprint)``) and ``[32:64]`` = nonce."""
    raw, data = bytes.fromhex(nonce), inst.quote.report_data
    if policy.report_data == "sha256":
        return data[:32] == hashlib.sha256(raw).digest()
    if policy.report_data == "nonce":
        return data[:32] == raw
    try:
        address = bytes.fromhex(inst.instance_id.removeprefix("0x"))
        fingerprint = bytes.fromhex(inst.tls_fingerprint) if inst.tls_fingerprint else None
    except ValueError:
        return False
    first = (
        hashlib.sha256(address + fingerprint).digest() if fingerprint else address.ljust(32, b"\0")
    )
    return len(address) <= 32 and data[:32] == first and data[32:64] == raw


def _decode(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        pass
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _items(evidence: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = _evidence_list(evidence) or [evidence]
    return [i for i in items if isinstance(i, Mapping)]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _raw_quotes(evidence: Mapping[str, Any]) -> list[bytes]:
    found = [_decode(i.get("quote") or i.get("intel_quote")) for i in _items(evidence)]
    return [q for q in found if q is not None]


def _when(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _evidence_url(backend: str, base_url: str | None, policy: AttestationPolicy) -> str:
    origin = ""
    if base_url:
        url = httpx.URL(base_url)
        host = url.host
        if policy.kind == "chutes" and host.startswith("llm."):
            host = "api." + host[4:]
        origin = str(url.copy_with(host=host, path="/")).rstrip("/")
    if policy.kind == "chutes":
        if not policy.chute_id:
            raise ConfigurationError(f"backend {backend!r}: attestation.chute_id is required")
        return f"{origin}/chutes/{policy.chute_id}/evidence"
    if policy.url and policy.url.startswith(("http://", "https://")):
        return policy.url
    path = policy.url or "/v1/attestation/report"
    if not origin:
        raise ConfigurationError(f"backend {backend!r}: attestation needs base_url or a full url")
    return origin + path


def _http_fetcher(
    backend: str, client: httpx.AsyncClient, url: str, params: Mapping[str, str]
) -> EvidenceFetcher:
    async def fetch(nonce: str) -> dict[str, Any]:
        try:
            response = await client.get(url, params={**params, "nonce": nonce})
        except httpx.HTTPError as exc:
            raise AttestationFailed(
                f"attestation: cannot fetch evidence: {exc}", backend=backend, check="fetch"
            ) from exc
        if response.status_code != 200:
            raise AttestationFailed(
                f"attestation: evidence endpoint answered {response.status_code}",
                backend=backend,
                check="fetch",
            )
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise AttestationFailed(
                "attestation: evidence is not a JSON object", backend=backend, check="structure"
            )
        return data

    return fetch
