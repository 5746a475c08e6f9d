"""A loopback Tinfoil enclave: OpenAI-compatible chat plus its SEV-SNP attestation, and AMD KDS.

Wire (docs/networks/tinfoil.md): ``POST /v1/chat/completions`` (Bearer key); ``GET
/.well-known/tinfoil-attestation`` answering ``{"format":
"https://tinfoil.sh/predicate/sev-snp-guest/v2", "body": base64(gzip(1184-byte report))}`` with
REPORT_DATA = sha256(TLS public key) || HPKE public key. The same server also answers AMD KDS'
``GET /vcek/v1/{product}/{chip_id}?blSPL=&teeSPL=&snpSPL=&ucodeSPL=`` (DER VCEK) and ``GET
/vcek/v1/{product}/cert_chain`` (PEM ASK then ARK), so point ``kds_url`` at :attr:`url`.

No fake can be signed by AMD: the ARK here is generated per fake; pin it with ``roots =
fake.roots``. ``mode``: ``good``, ``bad_signature`` (the report is signed by another key),
``wrong_measurement`` (another launch measurement than :attr:`measurement`), ``debug`` (the
guest policy allows debugging).
"""

from __future__ import annotations

import base64
import datetime
import gzip
import hashlib
import struct
from typing import Any

from intentmesh.testing._openai import FakeOpenAIProvider
from intentmesh.testing._server import FakeRequest, FakeResponse

__all__ = ["FakeTinfoil"]

_V2 = "https://tinfoil.sh/predicate/sev-snp-guest/v2"
_TCB = bytes([7, 0, 0, 0, 0, 0, 14, 72])  # bl, tee, reserved x4, snp, microcode


class FakeTinfoil(FakeOpenAIProvider):
    def __init__(
        self,
        models: list[str] | None = None,
        *,
        mode: str = "good",
        product: str = "Genoa",
        **kw: Any,
    ) -> None:
        super().__init__(models or ["llama3-3-70b"], **kw)
        self.mode = mode
        self.product = product
        self.measurement = hashlib.sha384(b"tinfoil fake enclave image").digest()
        self.chip_id = hashlib.sha512(b"fake chip").digest()
        self.tls_key_fp = hashlib.sha256(b"fake tls key").digest()
        self.hpke_key = hashlib.sha256(b"fake hpke key").digest()
        self._ark, self._ask, self._vcek, self._vcek_key = _chain(product, self.chip_id)
        self.kds_requests: list[str] = []  # the KDS paths asked for, in order

    @property
    def roots(self) -> dict[str, str]:
        """Pin this fake's ARK: ``roots = {product = sha256}``."""
        from cryptography.hazmat.primitives.serialization import Encoding

        return {self.product: hashlib.sha256(self._ark.public_bytes(Encoding.DER)).hexdigest()}

    async def handle(self, request: FakeRequest) -> FakeResponse:
        path = request.path.rstrip("/")
        if request.method == "GET" and path == "/.well-known/tinfoil-attestation":
            body = base64.b64encode(gzip.compress(self.report())).decode()
            return FakeResponse.json({"format": _V2, "body": body})
        if request.method == "GET" and path.startswith(f"/vcek/v1/{self.product}/"):
            self.kds_requests.append(path)
            return self._kds(path.rsplit("/", 1)[1], request)
        return await super().handle(request)

    def report(self) -> bytes:
        """The 1184-byte ATTESTATION_REPORT, laid out per AMD's ABI and signed by the VCEK."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, utils

        policy = 0x30000 | (1 << 19 if self.mode == "debug" else 0)
        measurement = self.measurement
        if self.mode == "wrong_measurement":
            measurement = hashlib.sha384(b"another image").digest()
        raw = bytearray(0x4A0)
        struct.pack_into("<IIQ", raw, 0, 2, 0, policy)
        struct.pack_into("<II", raw, 0x30, 0, 1)  # vmpl 0, ECDSA P-384 with SHA-384
        raw[0x38:0x40] = _TCB
        raw[0x50:0x90] = self.tls_key_fp + self.hpke_key
        raw[0x90:0xC0] = measurement
        raw[0x180:0x188] = _TCB
        raw[0x1A0:0x1E0] = self.chip_id
        key = (
            self._vcek_key
            if self.mode != "bad_signature"
            else ec.generate_private_key(ec.SECP384R1())
        )
        r, s = utils.decode_dss_signature(key.sign(bytes(raw[:0x2A0]), ec.ECDSA(hashes.SHA384())))
        raw[0x2A0:0x2E8] = r.to_bytes(72, "little")
        raw[0x2E8:0x330] = s.to_bytes(72, "little")
        return bytes(raw)

    def _kds(self, leaf: str, request: FakeRequest) -> FakeResponse:
        from cryptography.hazmat.primitives.serialization import Encoding

        if leaf == "cert_chain":
            pem = self._ask.public_bytes(Encoding.PEM) + self._ark.public_bytes(Encoding.PEM)
            return FakeResponse(200, {"content-type": "application/x-pem-file"}, pem)
        wanted = {"blSPL": "7", "teeSPL": "0", "snpSPL": "14", "ucodeSPL": "72"}
        if leaf != self.chip_id.hex() or any(request.query.get(k) != v for k, v in wanted.items()):
            return FakeResponse.text("Not Found", 404)
        der = self._vcek.public_bytes(Encoding.DER)
        return FakeResponse(200, {"content-type": "application/x-x509-ca-cert"}, der)


def _chain(product: str, chip_id: bytes) -> tuple[Any, Any, Any, Any]:
    """ARK (self-signed) -> ASK -> VCEK, RSA-PSS SHA-384 like AMD's; the VCEK is P-384 and
    carries the chip id in AMD's hwID extension."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    vcek_key = ec.generate_private_key(ec.SECP384R1())
    ark = _cert(f"ARK-{product}", f"ARK-{product}", ark_key.public_key(), ark_key, [])
    ask = _cert(f"SEV-{product}", f"ARK-{product}", ask_key.public_key(), ark_key, [])
    hwid = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4"), chip_id)
    vcek = _cert("SEV-VCEK", f"SEV-{product}", vcek_key.public_key(), ask_key, [hwid])
    return ark, ask, vcek, vcek_key


def _cert(subject: str, issuer: str, public: Any, signer: Any, extensions: list[Any]) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "intentmesh fake AMD"),
            ]
        )

    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
    )
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    return builder.sign(signer, hashes.SHA384(), rsa_padding=pss)
