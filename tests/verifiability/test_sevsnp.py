"""AMD SEV-SNP reports: a real recorded Milan report verifies through VCEK -> ASK -> ARK to the
pinned AMD root; each tampered variant is rejected with the failed check named."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from intentmesh.verify._sevsnp import (  # noqa: E402
    REPORT_SIZE,
    SevSnpError,
    parse_sevsnp_report,
    verify_sevsnp_report,
)

DATA = Path(__file__).parent / "data" / "sevsnp"
REPORT = (DATA / "milan_report.bin").read_bytes()
VCEK = (DATA / "milan_vcek.der").read_bytes()
MILAN = (DATA / "milan_ask_ark.pem").read_bytes()
GENOA = (DATA / "genoa_ask_ark.pem").read_bytes()


def test_a_real_report_parses_per_the_abi() -> None:
    report = parse_sevsnp_report(REPORT)
    assert report.version == 2 and report.signature_algo == 1
    assert report.report_data[:5] == bytes([1, 2, 3, 4, 5])
    assert len(report.measurement) == 48 and len(report.chip_id) == 64
    assert report.measurements() == {"measurement": REPORT[0x90:0xC0].hex()}
    assert report.policy == 0xB0000 and report.debug_allowed  # a test guest: DEBUG set


def test_a_real_report_verifies_to_the_pinned_milan_root() -> None:
    assert verify_sevsnp_report(parse_sevsnp_report(REPORT), VCEK, MILAN) == "Milan"


def test_a_flipped_signature_byte_is_rejected() -> None:
    raw = bytearray(REPORT)
    raw[0x2A0] ^= 1
    with pytest.raises(SevSnpError) as err:
        verify_sevsnp_report(parse_sevsnp_report(bytes(raw)), VCEK, MILAN)
    assert err.value.check == "report_signature"


def test_changed_report_data_breaks_the_signature() -> None:
    raw = bytearray(REPORT)
    raw[0x50] ^= 0xFF  # a different nonce / key binding than the chip signed
    with pytest.raises(SevSnpError) as err:
        verify_sevsnp_report(parse_sevsnp_report(bytes(raw)), VCEK, MILAN)
    assert err.value.check == "report_signature"


def test_another_chip_id_is_refused_by_the_vcek_hwid() -> None:
    raw = bytearray(REPORT)
    raw[0x1A0] ^= 1
    with pytest.raises(SevSnpError) as err:
        verify_sevsnp_report(parse_sevsnp_report(bytes(raw)), VCEK, MILAN)
    assert err.value.check == "vcek"


def test_a_root_that_is_not_pinned_is_rejected() -> None:
    with pytest.raises(SevSnpError) as err:
        verify_sevsnp_report(parse_sevsnp_report(REPORT), VCEK, MILAN, roots={"Genoa": "00" * 32})
    assert err.value.check == "root"


def test_the_wrong_products_chain_is_rejected() -> None:
    with pytest.raises(SevSnpError) as err:
        verify_sevsnp_report(parse_sevsnp_report(REPORT), VCEK, GENOA)
    assert err.value.check == "cert_chain"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (REPORT[:-1], f"not {REPORT_SIZE}"),
        (b"\x01" + REPORT[1:], "version 1"),
        (REPORT[:0x34] + b"\x02" + REPORT[0x35:], "not ECDSA P-384"),
    ],
)
def test_malformed_reports_are_structure_errors(raw: bytes, message: str) -> None:
    with pytest.raises(SevSnpError, match=message) as err:
        parse_sevsnp_report(raw)
    assert err.value.check == "structure"
