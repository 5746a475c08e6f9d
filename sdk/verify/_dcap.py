"""Intel TDX quotes verified for real: quote signature -> PCK chain -> Intel root, TCB policy.

The cryptography is ``dcap-qvl`` (PyPI; Phala's Rust verifier, the one dstack and NEAR use):
it checks the TD report's ECDSA signature with the attestation key, the QE report's signature
with the PCK key and its hash binding of that attestation key, the PCK certificate chain up to
Intel's SGX root (or the ``root_ca`` you configure) against the CRLs, the signatures of TCB
info and QE identity, and matches the platform's TCB to a TCB level. What we add: collateral
fetched from a PCCS (Intel PCS API v4) with a cache and a freshness limit, the TCB-status
policy, and a verdict for the receipt. Every failure is an :class:`AttestationFailed` whose
``check`` names the step: ``structure``, ``collateral``, ``quote_signature``, ``qe_report``,
``pck_chain`` or ``tcb_status``.

Config (``[backends.attestation.dcap]``)::

    pccs_url = "https://api.trustedservices.intel.com"   # or your PCCS
    tcb_statuses = ["UpToDate", "SWHardeningNeeded"]     # accepted TCB statuses
    max_collateral_age_s = 86400                          # refetch cached collateral after
"""

from __future__ import annotations

import asyncio
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field

from intentmesh.errors import AttestationFailed, ConfigurationError

__all__ = [
    "INTEL_PCS_URL",
    "TCB_STATUSES",
    "Collateral",
    "CollateralCache",
    "DcapPolicy",
    "DcapQuoteVerifier",
    "PccsClient",
]

INTEL_PCS_URL = "https://api.trustedservices.intel.com"
TcbStatus = Literal[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
]
TCB_STATUSES: tuple[str, ...] = TcbStatus.__args__  # type: ignore[attr-defined]


class DcapPolicy(BaseModel):
    """``attestation.dcap``: where collateral comes from and which TCB statuses pass."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pccs_url: str = INTEL_PCS_URL
    tcb_statuses: list[TcbStatus] = Field(default=["UpToDate"], min_length=1)
    reject_advisories: list[str] = Field(default_factory=list)
    max_collateral_age_s: float = Field(86400.0, gt=0)
    timeout_s: float = Field(10.0, gt=0)
    root_ca: str | None = None  # a DER or PEM file to trust instead of Intel's SGX root


@dataclass(frozen=True, slots=True)
class Collateral:
    """One set of collateral (``dcap_qvl.QuoteCollateralV3``) and when it stops being valid."""

    value: Any
    fetched_at: float
    issued: float
    next_update: float
    source: str


Fetch = Callable[[str, str, str], Awaitable[Collateral]]
"""``(fmspc, ca, tee) -> Collateral``; raises :class:`AttestationFailed` (``collateral``)."""


class CollateralCache:
    """Collateral per (FMSPC, CA, TEE); an entry is reused while younger than ``max_age_s``
    and before its earliest ``nextUpdate``; concurrent misses for one key fetch once."""

    def __init__(self, fetch: Fetch, max_age_s: float) -> None:
        self._fetch = fetch
        self.max_age_s = max_age_s
        self._entries: dict[tuple[str, str, str], Collateral] = {}
        self._locks: dict[tuple[str, str, str], anyio.Lock] = {}
        self.hits = 0
        self.misses = 0

    async def get(self, key: tuple[str, str, str], now: float) -> Collateral:
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is not None and self._fresh(entry, now):
                self.hits += 1
                return entry
            self.misses += 1
            entry = await self._fetch(*key)
            self._entries[key] = entry
            return entry

    def _fresh(self, entry: Collateral, now: float) -> bool:
        return now - entry.fetched_at < self.max_age_s and now < entry.next_update

    def clear(self) -> None:
        self._entries.clear()


class PccsClient:
    """Reads collateral over the Intel PCS / PCCS API v4 (``/sgx|tdx/certification/v4/...``)."""

    def __init__(self, url: str, client: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        base = url.rstrip("/").removesuffix("/sgx/certification/v4")
        self.base = base.removesuffix("/tdx/certification/v4")
        self._client = client
        self._clock = clock

    async def fetch(self, fmspc: str, ca: str, tee: str) -> Collateral:
        import dcap_qvl

        pck_crl, pck_chain = await self._get(
            f"sgx/certification/v4/pckcrl?ca={ca}&encoding=der", "SGX-PCK-CRL-Issuer-Chain"
        )
        tcb, tcb_chain = await self._get(
            f"{tee}/certification/v4/tcb?fmspc={fmspc}",
            "TCB-Info-Issuer-Chain",
            "SGX-TCB-Info-Issuer-Chain",
        )
        qe, qe_chain = await self._get(
            f"{tee}/certification/v4/qe/identity?update=standard",
            "SGX-Enclave-Identity-Issuer-Chain",
        )
        root_crl = await self._root_crl(qe_chain)
        tcb_info, tcb_sig = _signed_member(tcb, "tcbInfo")
        qe_identity, qe_sig = _signed_member(qe, "enclaveIdentity")
        value = dcap_qvl.QuoteCollateralV3(
            pck_crl_issuer_chain=pck_chain,
            root_ca_crl=root_crl,
            pck_crl=_der(pck_crl),
            tcb_info_issuer_chain=tcb_chain,
            tcb_info=tcb_info,
            tcb_info_signature=tcb_sig,
            qe_identity_issuer_chain=qe_chain,
            qe_identity=qe_identity,
            qe_identity_signature=qe_sig,
        )
        issued, next_update = validity(value)
        return Collateral(value, self._clock(), issued, next_update, self.base)

    async def _get(self, path: str, *chain_headers: str) -> tuple[bytes, str]:
        url = f"{self.base}/{path}"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as exc:
            raise _collateral(f"cannot reach the PCCS at {url}: {exc}") from exc
        if response.status_code != 200:
            raise _collateral(f"the PCCS answered {response.status_code} for {url}")
        chain = next((response.headers[h] for h in chain_headers if h in response.headers), "")
        if chain_headers and not chain:
            raise _collateral(f"the PCCS sent no {chain_headers[0]} header for {url}")
        return response.content, unquote(chain)

    async def _root_crl(self, qe_chain: str) -> bytes:
        """A PCCS serves it hex-encoded at ``rootcacrl``; Intel's PCS does not, so fall back to
        the CRL distribution point of the root certificate."""
        try:
            body, _ = await self._get("sgx/certification/v4/rootcacrl")
            return _der(body)
        except AttestationFailed:
            url = _root_crl_url(qe_chain)
            try:
                response = await self._client.get(url)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                raise _collateral(f"cannot fetch the root CA CRL from {url}: {exc}") from exc
            return _der(response.content)


class DcapQuoteVerifier:
    """A :class:`~intentmesh.verify.QuoteVerifier` backed by ``dcap-qvl``; see the module doc."""

    name = "dcap-qvl"

    def __init__(
        self,
        policy: DcapPolicy | None = None,
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
        client: httpx.AsyncClient | None = None,
        backend: str = "",
    ) -> None:
        _require_dcap_qvl(backend)
        self.policy = policy or DcapPolicy()
        self.backend = backend
        self._clock = clock
        self._client = client
        if fetch is None:
            self._client = client or httpx.AsyncClient(timeout=self.policy.timeout_s)
            fetch = PccsClient(self.policy.pccs_url, self._client, clock).fetch
        self.collateral = CollateralCache(fetch, self.policy.max_collateral_age_s)
        self._root = _read_root(self.policy.root_ca, backend) if self.policy.root_ca else None

    async def averify_quote(self, quote: bytes, evidence: Mapping[str, Any]) -> dict[str, Any]:
        """Verify one quote; return the verdict for the receipt or raise ``AttestationFailed``."""
        import dcap_qvl

        try:
            parsed = dcap_qvl.parse_quote(quote)
            key = (parsed.fmspc(), parsed.ca(), "tdx" if parsed.is_tdx() else "sgx")
        except ValueError as exc:
            raise self._fail("structure", f"dcap-qvl cannot read the quote: {exc}") from None
        now = self._clock()
        try:
            entry = await self.collateral.get(key, now)
        except AttestationFailed as exc:
            raise self._fail(exc.check, str(exc).removeprefix("attestation: ")) from None
        if not entry.issued <= now < entry.next_update:
            raise self._fail(
                "collateral",
                f"the collateral from {entry.source} is valid {_iso(entry.issued)} .. "
                f"{_iso(entry.next_update)}, not now ({_iso(now)})",
            )
        report = await asyncio.to_thread(self._verify, quote, entry.value, int(now))
        return self._judge(report, key[0], entry)

    def _verify(self, quote: bytes, collateral: Any, now: int) -> Any:
        import dcap_qvl

        try:
            if self._root is not None:
                return dcap_qvl.verify_with_root_ca(quote, collateral, self._root, now)
            return dcap_qvl.verify(quote, collateral, now)
        except ValueError as exc:
            message = " ".join(str(exc).split())
            raise self._fail(_check_of(message), f"dcap-qvl: {message}") from None

    def _judge(self, report: Any, fmspc: str, entry: Collateral) -> dict[str, Any]:
        status = str(report.status)
        advisories = sorted(str(a) for a in report.advisory_ids)
        if status not in self.policy.tcb_statuses:
            raise self._fail(
                "tcb_status",
                f"TCB status {status!r} is not accepted (accepted: {self.policy.tcb_statuses}; "
                "set attestation.dcap.tcb_statuses to change)",
            )
        rejected = sorted(set(advisories) & set(self.policy.reject_advisories))
        if rejected:
            raise self._fail("tcb_status", f"the platform is affected by {rejected}")
        return {
            "verifier": self.name,
            "verdict": "ok",
            "tcb_status": status,
            "advisory_ids": advisories,
            "fmspc": fmspc,
            "collateral_source": entry.source,
            "collateral_next_update": _iso(entry.next_update),
        }

    def _fail(self, check: str, message: str) -> AttestationFailed:
        return AttestationFailed(f"attestation: {message}", backend=self.backend, check=check)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


# dcap-qvl's messages -> the step that failed (first match wins)
_CHECKS = (
    ("isv enclave report signature", "quote_signature"),
    ("qe report", "qe_report"),
    ("qe_report", "qe_report"),
    ("root ca", "pck_chain"),
    ("pck", "pck_chain"),
    ("certificate", "pck_chain"),
    ("crl", "pck_chain"),
    ("revoked", "pck_chain"),
    ("expired", "collateral"),
    ("in the future", "collateral"),
    ("tcb", "tcb_status"),
)


def _check_of(message: str) -> str:
    lowered = message.lower()
    return next((check for needle, check in _CHECKS if needle in lowered), "quote_signature")


def validity(collateral: Any) -> tuple[float, float]:
    """``(latest issue, earliest next update)`` over TCB info, QE identity and both CRLs."""
    from cryptography import x509

    issued, nexts = [], []
    for doc in (collateral.tcb_info, collateral.qe_identity):
        data = json.loads(doc)
        issued.append(_when(data["issueDate"]))
        nexts.append(_when(data["nextUpdate"]))
    for der in (collateral.root_ca_crl, collateral.pck_crl):
        crl = x509.load_der_x509_crl(bytes(der))
        issued.append(crl.last_update_utc.timestamp())
        if crl.next_update_utc is not None:
            nexts.append(crl.next_update_utc.timestamp())
    return max(issued), min(nexts)


def _signed_member(body: bytes, key: str) -> tuple[str, bytes]:
    """The exact text of ``body[key]`` (what Intel signed) and the hex ``signature``."""
    text = body.decode()
    try:
        data = json.loads(text)
        at = text.index(f'"{key}"')
        start = text.index(":", at) + 1
        while text[start].isspace():
            start += 1
        _, end = json.JSONDecoder().raw_decode(text, start)
        return text[start:end], bytes.fromhex(data["signature"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _collateral(f"the PCCS sent an unreadable {key} document: {exc}") from None


def _der(body: bytes) -> bytes:
    """CRLs arrive as DER, PEM or hex text depending on the server."""
    stripped = body.strip()
    if stripped.startswith(b"-----BEGIN"):
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        return x509.load_pem_x509_crl(stripped).public_bytes(Encoding.DER)
    try:
        return binascii.unhexlify(stripped)
    except (binascii.Error, ValueError):
        return bytes(body)


def _root_crl_url(chain: str) -> str:
    from cryptography import x509

    certs = x509.load_pem_x509_certificates(chain.encode())
    try:
        points = certs[-1].extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        return str(points[0].full_name[0].value)
    except (x509.ExtensionNotFound, IndexError, TypeError) as exc:
        raise _collateral("the root certificate names no CRL distribution point") from exc


def _read_root(path: str, backend: str) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        raw = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"backend {backend!r}: attestation.dcap.root_ca: cannot read {path}: {exc}"
        ) from None
    if raw.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_certificate(raw).public_bytes(Encoding.DER)
    return raw


def _require_dcap_qvl(backend: str) -> None:
    try:
        import dcap_qvl  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            f"backend {backend!r}: attestation.dcap needs dcap-qvl; "
            "install it with: pip install 'intentmesh[tee]'"
        ) from None


def _collateral(message: str) -> AttestationFailed:
    return AttestationFailed(f"attestation: {message}", check="collateral")


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
