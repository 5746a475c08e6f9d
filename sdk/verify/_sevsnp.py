"""AMD SEV-SNP attestation reports: parse the 1184-byte report and check its signature chain.

Layout from AMD's "SEV Secure Nested Paging Firmware ABI Specification" (pub. 56860), table
"ATTESTATION_REPORT Structure": little-endian integers; ``report_data`` at 0x50 (64 bytes),
``measurement`` at 0x90 (48), ``chip_id`` at 0x1A0 (64), ``reported_tcb`` at 0x180 (8); the
signature at 0x2A0 is ECDSA P-384 with SHA-384 over bytes 0x000..0x29F, ``r`` and ``s`` each
72 bytes little-endian. The signing key is the chip's VCEK, an X.509 certificate from AMD's
Key Distribution Service (KDS, ``kdsintf.amd.com/vcek/v1/{product}/{chip_id}``), issued by the
product's ASK, itself issued by the product's self-signed ARK; both RSA-PSS with SHA-384
("Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification", pub.
57230). The ARK is pinned here by the SHA-256 of its DER certificate.
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AMD_ARK_SHA256",
    "REPORT_SIZE",
    "SevSnpError",
    "SevSnpReport",
    "parse_sevsnp_report",
    "verify_sevsnp_report",
]

REPORT_SIZE = 0x4A0
_SIGNED = 0x2A0  # the signature covers bytes [0, 0x2A0)
_HWID_OID = "1.3.6.1.4.1.3704.1.4"  # VCEK extension: the chip id it was issued for

# SHA-256 of the DER ARK certificates AMD publishes at kdsintf.amd.com/vcek/v1/{product}/cert_chain
AMD_ARK_SHA256: dict[str, str] = {
    "Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
}


class SevSnpError(ValueError):
    """A report or certificate failed a check; ``check`` names it (``structure``,
    ``report_signature``, ``vcek``, ``cert_chain``, ``root``)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass(frozen=True, slots=True)
class SevSnpReport:
    """The fields of an ATTESTATION_REPORT this project checks, plus the raw bytes."""

    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    platform_version: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    chip_id: bytes
    reported_tcb: int
    signature_r: int
    signature_s: int
    raw: bytes

    @property
    def debug_allowed(self) -> bool:
        """Policy bit 19 (DEBUG): the host may read guest memory."""
        return bool(self.policy >> 19 & 1)

    def measurements(self) -> dict[str, str]:
        return {"measurement": self.measurement.hex()}


def parse_sevsnp_report(raw: bytes) -> SevSnpReport:
    """Parse a report; :class:`SevSnpError` (``structure``) when it cannot be one."""
    if len(raw) != REPORT_SIZE:
        raise SevSnpError("structure", f"report is {len(raw)} bytes, not {REPORT_SIZE}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0)
    if version < 2:
        raise SevSnpError("structure", f"report version {version} is not an SNP report (>= 2)")
    vmpl, algo, platform_version = struct.unpack_from("<IIQ", raw, 0x30)
    if algo != 1:
        raise SevSnpError("structure", f"signature algorithm {algo} is not ECDSA P-384 (1)")
    sig = raw[_SIGNED : _SIGNED + 144]
    return SevSnpReport(
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        vmpl=vmpl,
        signature_algo=algo,
        platform_version=platform_version,
        report_data=raw[0x50:0x90],
        measurement=raw[0x90:0xC0],
        host_data=raw[0xC0:0xE0],
        chip_id=raw[0x1A0:0x1E0],
        reported_tcb=struct.unpack_from("<Q", raw, 0x180)[0],
        signature_r=int.from_bytes(sig[:72], "little"),
        signature_s=int.from_bytes(sig[72:], "little"),
        raw=bytes(raw),
    )


def verify_sevsnp_report(
    report: SevSnpReport,
    vcek: bytes,
    cert_chain: bytes,
    *,
    roots: dict[str, str] | None = None,
) -> str:
    """Check ``report`` is signed by ``vcek`` (DER or PEM) for its chip, and the VCEK by the
    ASK and ARK in ``cert_chain`` (PEM, ASK then ARK), the ARK being a pinned root. Returns
    the product whose root matched; raises :class:`SevSnpError` naming the failed check."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    vcek_cert = _load_one(vcek)
    ask, ark = _load_chain(cert_chain)
    product = _check_root(ark, AMD_ARK_SHA256 if roots is None else roots)
    _check_issued(ark, ark, "root", "the ARK is not self-signed")
    _check_issued(ask, ark, "cert_chain", "the ASK is not signed by the ARK")
    _check_issued(vcek_cert, ask, "cert_chain", "the VCEK is not signed by the ASK")
    key = vcek_cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise SevSnpError("vcek", "the VCEK key is not ECDSA P-384")
    hwid = _extension(vcek_cert, _HWID_OID)
    if hwid is not None and hwid[-64:] != report.chip_id:
        raise SevSnpError("vcek", "the VCEK was issued for another chip than the report's")
    der = utils.encode_dss_signature(report.signature_r, report.signature_s)
    try:
        key.verify(der, report.raw[:_SIGNED], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SevSnpError("report_signature", "the report is not signed by the VCEK") from None
    return product


def _load_one(data: bytes) -> Any:
    from cryptography import x509

    with warnings.catch_warnings():  # AMD's KDS certificates have non-positive serials
        warnings.simplefilter("ignore")
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                return x509.load_pem_x509_certificate(data)
            return x509.load_der_x509_certificate(data)
        except ValueError as exc:
            raise SevSnpError("vcek", f"unreadable VCEK certificate: {exc}") from None


def _load_chain(data: bytes) -> tuple[Any, Any]:
    from cryptography import x509

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise SevSnpError("cert_chain", f"unreadable certificate chain: {exc}") from None
    if len(certs) != 2:
        raise SevSnpError("cert_chain", f"expected ASK and ARK, got {len(certs)} certificates")
    return certs[0], certs[1]


def _check_root(ark: Any, roots: dict[str, str]) -> str:
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    got = hashlib.sha256(ark.public_bytes(Encoding.DER)).hexdigest()
    for product, pinned in roots.items():
        if pinned.lower() == got:
            return product
    raise SevSnpError("root", f"the ARK (sha256 {got[:16]}…) is not a pinned AMD root")


def _check_issued(cert: Any, issuer: Any, check: str, message: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or cert.issuer != issuer.subject:
        raise SevSnpError(check, message)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    try:
        key.verify(cert.signature, cert.tbs_certificate_bytes, pss, hashes.SHA384())
    except InvalidSignature:
        raise SevSnpError(check, message) from None


def _extension(cert: Any, oid: str) -> bytes | None:
    for ext in cert.extensions:
        if ext.oid.dotted_string == oid:
            value = getattr(ext.value, "value", None)
            return bytes(value) if value is not None else None
    return None
