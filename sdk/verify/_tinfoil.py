"""``kind = "tinfoil"``: Tinfoil enclaves attested in-process (docs/networks/tinfoil.md).

Protocol (github.com/tinfoilsh/verifier, ``attestation/attestation.go`` and ``sev.go``): ``GET
{origin}/.well-known/tinfoil-attestation`` answers ``{"format": "<predicate URI>", "body":
"<base64>"}``. For ``…/sev-snp-guest/v2`` the body is the gzipped 1184-byte SEV-SNP report
(``…/v1``: not gzipped), whose REPORT_DATA holds ``[0:32]`` the SHA-256 of the enclave's TLS
public key (DER SubjectPublicKeyInfo) and ``[32:64]`` its HPKE public key. The VCEK and the
ASK/ARK chain come from AMD's KDS (``{kds_url}/vcek/v1/{product}/{chip_id}?blSPL=…`` and
``…/cert_chain``). The protocol carries no client nonce: what binds the evidence to *this*
connection is the TLS key, checked when the document is fetched over TLS
(``require_tls_binding``). The measurement must equal one of the configured ``measurements``
(the released values, taken from config; Sigstore bundles are not checked here).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from intentmesh.errors import AttestationFailed, ConfigurationError
from intentmesh.verify._attestation import AttestationReport, parse_policy
from intentmesh.verify._sevsnp import (
    SevSnpError,
    SevSnpReport,
    parse_sevsnp_report,
    verify_sevsnp_report,
)

__all__ = [
    "TINFOIL_ATTESTATION_PATH",
    "TinfoilAttestationVerifier",
    "TinfoilPolicy",
    "tls_key_fingerprint",
]

TINFOIL_ATTESTATION_PATH = "/.well-known/tinfoil-attestation"
_SEV_V1 = "https://tinfoil.sh/predicate/sev-snp-guest/v1"
_SEV_V2 = "https://tinfoil.sh/predicate/sev-snp-guest/v2"
_MAX_BODY = 1 << 16


class TinfoilPolicy(BaseModel):
    """A ``kind = "tinfoil"`` attestation table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["tinfoil"]
    measurements: list[str] = Field(min_length=1)
    url: str | None = None
    kds_url: str = "https://kdsintf.amd.com"
    product: Literal["Milan", "Genoa"] = "Genoa"
    roots: dict[str, str] | None = None  # product -> sha256 of the ARK; default AMD's pinned
    require_tls_binding: bool = True
    allow_debug: bool = False
    max_age_s: float = Field(300.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)


class TinfoilAttestationVerifier:
    """Fetches Tinfoil's attestation document and checks it; see the module docstring."""

    def __init__(
        self,
        backend: str,
        policy: TinfoilPolicy,
        url: str,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.url = url
        self._client = client
        self._clock = clock
        self._certs: dict[str, bytes] = {}  # KDS answers, cached by URL (they never change)

    @classmethod
    def from_config(
        cls, backend: str, base_url: str | None, options: Mapping[str, Any]
    ) -> TinfoilAttestationVerifier:
        policy = parse_policy(TinfoilPolicy, backend, options)
        url = policy.url or ""
        if not url.startswith(("http://", "https://")):
            if not base_url:
                raise ConfigurationError(
                    f"backend {backend!r}: attestation needs base_url or a full url"
                )
            origin = str(httpx.URL(base_url).copy_with(path="/")).rstrip("/")
            url = origin + (url or TINFOIL_ATTESTATION_PATH)
        return cls(backend, policy, url, httpx.AsyncClient(timeout=policy.timeout_s))

    async def aattest(self, nonce: str) -> AttestationReport:
        from intentmesh.receipts import digest

        asked = self._clock()
        document, key_fp = await self._document()
        report = self._report(document)
        vcek, chain = await self._kds(report)
        try:
            product = verify_sevsnp_report(report, vcek, chain, roots=self.policy.roots)
        except SevSnpError as exc:
            raise self._fail(exc.check, str(exc)) from None
        fetched = self._clock()
        if fetched - asked > self.policy.max_age_s:
            raise self._fail("freshness", "the evidence took longer than max_age_s to arrive")
        if report.debug_allowed and not self.policy.allow_debug:
            raise self._fail("policy", "the guest policy allows debugging (memory is readable)")
        measurement = report.measurement.hex()
        if measurement not in {m.lower() for m in self.policy.measurements}:
            raise self._fail(
                "measurement", f"measurement {measurement[:16]}… matches no configured value"
            )
        tls = self._tls_binding(report, key_fp)
        return AttestationReport(
            kind="tinfoil",
            nonce=nonce,
            evidence_digest=digest(dict(document)),
            instance_ids=(report.chip_id.hex(),),
            measurements={
                "measurement": measurement,
                "tls_key_fp": report.report_data[:32].hex(),
                "hpke_key": report.report_data[32:].hex(),
            },
            checks={
                "structure": "ok",
                "report_signature": "ok",
                "cert_chain": f"ok ({product})",
                "policy": "ok",
                "measurement": "ok",
                "tls_key": tls,
                "nonce": "not_bound",  # the protocol has none; see the module docstring
                "freshness": "ok",
            },
            fetched_at=fetched,
        )

    def check_served_by(self, report: AttestationReport, headers: Mapping[str, str]) -> None:
        """Tinfoil names no serving instance in its answers: nothing to compare."""

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _document(self) -> tuple[dict[str, Any], str | None]:
        """The document and, when fetched over TLS, the SHA-256 of the peer's public key."""
        try:
            async with self._client.stream("GET", self.url) as response:
                key_fp = _peer_key_fp(response)
                body = await response.aread()
        except httpx.HTTPError as exc:
            raise self._fail("fetch", f"cannot fetch the attestation document: {exc}") from exc
        if response.status_code != 200:
            raise self._fail("fetch", f"the attestation endpoint answered {response.status_code}")
        try:
            document = httpx.Response(200, content=body[:_MAX_BODY]).json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise self._fail("structure", "the attestation document is not a JSON object")
        return document, key_fp

    def _report(self, document: Mapping[str, Any]) -> SevSnpReport:
        fmt, body = document.get("format"), document.get("body")
        if fmt not in (_SEV_V1, _SEV_V2):
            raise self._fail("structure", f"unsupported attestation format {fmt!r}")
        try:
            raw = base64.b64decode(str(body), validate=True)
            if fmt == _SEV_V2:
                raw = gzip.decompress(raw)
            return parse_sevsnp_report(raw)
        except (binascii.Error, OSError, EOFError) as exc:
            raise self._fail("structure", f"unreadable report body: {exc}") from None
        except SevSnpError as exc:
            raise self._fail(exc.check, str(exc)) from None

    async def _kds(self, report: SevSnpReport) -> tuple[bytes, bytes]:
        tcb = report.reported_tcb.to_bytes(8, "little")
        base = f"{self.policy.kds_url.rstrip('/')}/vcek/v1/{self.policy.product}"
        vcek_url = (
            f"{base}/{report.chip_id.hex()}"
            f"?blSPL={tcb[0]}&teeSPL={tcb[1]}&snpSPL={tcb[6]}&ucodeSPL={tcb[7]}"
        )
        return await self._cert(vcek_url), await self._cert(f"{base}/cert_chain")

    async def _cert(self, url: str) -> bytes:
        if url in self._certs:
            return self._certs[url]
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise self._fail("fetch", f"cannot fetch {url} from AMD KDS: {exc}") from exc
        if response.status_code != 200:
            raise self._fail("fetch", f"AMD KDS answered {response.status_code} for {url}")
        self._certs[url] = response.content
        return response.content

    def _tls_binding(self, report: SevSnpReport, key_fp: str | None) -> str:
        if key_fp is None:
            if self.policy.require_tls_binding:
                raise self._fail(
                    "tls_key",
                    "the document was not fetched over TLS, so the attested key cannot be "
                    "compared (use https, or set require_tls_binding = false)",
                )
            return "not_checked"
        if report.report_data[:32].hex() != key_fp:
            raise self._fail("tls_key", "the report binds another TLS key than the server's")
        return "ok"

    def _fail(self, check: str, message: str) -> AttestationFailed:
        return AttestationFailed(f"attestation: {message}", backend=self.backend, check=check)


def tls_key_fingerprint(cert_der: bytes) -> str:
    """SHA-256 (hex) of a certificate's DER SubjectPublicKeyInfo, as Tinfoil binds it."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_der_x509_certificate(cert_der).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _peer_key_fp(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return tls_key_fingerprint(der) if der else None
