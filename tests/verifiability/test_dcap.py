"""Intel TDX quotes verified for real with dcap-qvl, offline: recorded real quotes and
collateral (data/dcap, MIT, from Phala-Network/dcap-qvl) served by a loopback PCCS, and
tampered variants, each rejected with the failing check named."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intentmesh import ConfigurationError
from intentmesh.testing.networks.pccs import FakePccs
from intentmesh.verify import (
    AttestationFailed,
    AttestationPolicy,
    DcapPolicy,
    DcapQuoteVerifier,
    TdxAttestationVerifier,
    parse_tdx_quote,
)

pytest.importorskip("dcap_qvl")

DATA = Path(__file__).parent / "data" / "dcap"
V4 = (DATA / "tdx_quote").read_bytes()  # UpToDate; collateral valid 2025-06-19 .. 07-19
V5 = (DATA / "tdx_quote_outdated").read_bytes()  # TD 1.5; its TCB matches no level
IN_WINDOW = datetime.datetime(2025, 7, 1, tzinfo=datetime.UTC).timestamp()
V5_WINDOW = datetime.datetime(2026, 3, 1, tzinfo=datetime.UTC).timestamp()
SIG = 48 + 584 + 4  # where the v4 signature data starts


def _collateral(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text())
    return loaded


@pytest.fixture
def pccs() -> Iterator[FakePccs]:
    server = FakePccs([_collateral("tdx_quote_collateral.json")])
    server.start()
    yield server
    server.stop()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verifier(pccs: FakePccs, now: float = IN_WINDOW, **policy: Any) -> DcapQuoteVerifier:
    return DcapQuoteVerifier(DcapPolicy(pccs_url=pccs.url, **policy), clock=Clock(now))


def run(v: DcapQuoteVerifier, quote: bytes) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        try:
            return await v.averify_quote(quote, {})
        finally:
            await v.aclose()

    return asyncio.run(go())


def flipped(quote: bytes, at: int) -> bytes:
    out = bytearray(quote)
    out[at] ^= 0x01
    return bytes(out)


def test_a_real_quote_verifies_to_intels_root(pccs: FakePccs) -> None:
    verdict = run(verifier(pccs), V4)
    assert verdict["verdict"] == "ok" and verdict["tcb_status"] == "UpToDate"
    assert verdict["fmspc"] == "B0C06F000000" and verdict["advisory_ids"] == []
    assert verdict["collateral_next_update"] == "2025-07-19T10:00:35Z"  # the earliest: a CRL
    assert any("/tdx/certification/v4/tcb" in p for p in pccs.requests)


def test_collateral_is_cached_and_refetched_when_too_old(pccs: FakePccs) -> None:
    clock = Clock(IN_WINDOW)
    v = DcapQuoteVerifier(DcapPolicy(pccs_url=pccs.url, max_collateral_age_s=600), clock=clock)

    async def go() -> None:
        await v.averify_quote(V4, {})
        fetched = len(pccs.requests)
        await v.averify_quote(V4, {})  # warm: no request
        assert len(pccs.requests) == fetched and v.collateral.hits == 1
        clock.now += 601  # older than max_collateral_age_s: fetched again
        await v.averify_quote(V4, {})
        assert len(pccs.requests) == 2 * fetched and v.collateral.misses == 2
        await v.aclose()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("quote", "check", "message"),
    [
        (flipped(V4, 48 + 520), "quote_signature", "ISV enclave report signature"),
        (flipped(V4, SIG + 10), "quote_signature", "signature is invalid"),
        (flipped(V4, SIG + 64 + 10), "qe_report", "QE report hash mismatch"),
        (flipped(V4, SIG + 128 + 6 + 100), "qe_report", "qe_report"),
    ],
    ids=["report-data", "quote-signature", "attestation-key", "qe-report"],
)
def test_a_tampered_quote_is_rejected_with_the_check_named(
    pccs: FakePccs, quote: bytes, check: str, message: str
) -> None:
    with pytest.raises(AttestationFailed, match=message) as err:
        run(verifier(pccs), quote)
    assert err.value.check == check


def test_a_wrong_root_is_rejected(pccs: FakePccs, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Intel SGX Root CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2018, 1, 1))
        .not_valid_after(datetime.datetime(2049, 1, 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    root = tmp_path / "root.pem"
    root.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(AttestationFailed, match="root CA") as err:
        run(verifier(pccs, root_ca=str(root)), V4)
    assert err.value.check == "pck_chain"


@pytest.mark.parametrize("days", [19, -2], ids=["expired", "not-yet-valid"])
def test_collateral_outside_its_validity_is_rejected(pccs: FakePccs, days: int) -> None:
    later = datetime.datetime(2025, 7, 19, tzinfo=datetime.UTC).timestamp() + days * 86400
    with pytest.raises(AttestationFailed, match="collateral .* is valid") as err:
        run(verifier(pccs, now=later if days > 0 else IN_WINDOW + (days - 12) * 86400), V4)
    assert err.value.check == "collateral"


def test_the_tcb_status_policy_decides(pccs: FakePccs) -> None:
    with pytest.raises(AttestationFailed, match="'UpToDate' is not accepted") as err:
        run(verifier(pccs, tcb_statuses=["SWHardeningNeeded"]), V4)
    assert err.value.check == "tcb_status"
    with (
        FakePccs([_collateral("tdx_quote_outdated_collateral.json")]) as other,
        pytest.raises(AttestationFailed, match="No matching TCB level") as err,
    ):
        run(verifier(other, now=V5_WINDOW), V5)  # a real v5 quote of an outdated platform
    assert err.value.check == "tcb_status"


def test_an_unreachable_pccs_is_a_collateral_failure(pccs: FakePccs) -> None:
    pccs.down = True
    with pytest.raises(AttestationFailed, match="PCCS answered 503") as err:
        run(verifier(pccs), V4)
    assert err.value.check == "collateral"


def test_the_verdict_reaches_the_attestation_report(pccs: FakePccs) -> None:
    """The evidence path: structure, nonce (the recorded quote's own report data), then dcap."""
    nonce = parse_tdx_quote(V4).report_data[:32].hex()
    evidence = {"instance_id": "tdx-1", "quote": base64.b64encode(V4).decode()}

    async def fetch(_: str) -> dict[str, Any]:
        return evidence

    async def go() -> dict[str, Any]:
        policy = AttestationPolicy(kind="openai", require_quote_signature=True)
        att = TdxAttestationVerifier(
            "tee", policy, fetch, quote_verifier=verifier(pccs), clock=Clock(IN_WINDOW)
        )
        try:
            return (await att.aattest(nonce)).to_receipt()
        finally:
            await att.aclose()

    block = asyncio.run(go())
    assert block["checks"]["quote_signature"] == "ok"
    assert block["quotes"][0]["tcb_status"] == "UpToDate"


def test_config_builds_the_verifier_and_names_bad_values() -> None:
    att = TdxAttestationVerifier.from_config(
        "tee", "http://127.0.0.1:9", {"kind": "openai", "dcap": {"pccs_url": "http://127.0.0.1:9"}}
    )
    assert isinstance(att.quote_verifier, DcapQuoteVerifier)
    asyncio.run(att.aclose())
    with pytest.raises(ConfigurationError, match="attestation.dcap.tcb_statuses"):
        TdxAttestationVerifier.from_config(
            "tee", "http://127.0.0.1:9", {"kind": "openai", "dcap": {"tcb_statuses": ["Fine"]}}
        )
