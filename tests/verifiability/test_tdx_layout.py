"""TDX quote layout: v4 and v5 (body descriptor; TD 1.0 and TD 1.5 bodies), built by hand to
Intel's published layout, and the recorded real quotes (tests/verifiability/data/dcap)."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from intentmesh.verify import AttestationPolicy, build_tdx_quote, check_evidence, parse_tdx_quote

DATA = Path(__file__).parent / "data" / "dcap"
NONCE = "ab" * 32


def _td_body(size: int, report_data: bytes) -> bytes:
    """A TD report body: MRTD at 136, RTMR0-3 at 328.., REPORTDATA at 520, and in TD 1.5
    TEE_TCB_SVN_2 at 584 and MRSERVICETD at 600."""
    body = bytearray(size)
    body[136:184] = b"\xaa" * 48
    for i in range(4):
        body[328 + 48 * i : 376 + 48 * i] = bytes([0xB0 + i]) * 48
    body[520:584] = report_data.ljust(64, b"\x00")
    if size == 648:
        body[584:600] = b"\x05" * 16
        body[600:648] = b"\xcc" * 48
    return bytes(body)


def _v5(body_type: int, size: int, report_data: bytes, sig: bytes = b"\x07" * 100) -> bytes:
    header = struct.pack("<HHI", 5, 2, 0x81) + b"\x00" * 40  # 48-byte header
    descriptor = struct.pack("<HI", body_type, size)  # type u16, size u32
    body = _td_body(size, report_data)
    return header + descriptor + body + struct.pack("<I", len(sig)) + sig


@pytest.mark.parametrize(("body_type", "size"), [(2, 584), (3, 648)])
def test_a_v5_quote_built_to_the_layout_parses(body_type: int, size: int) -> None:
    raw = _v5(body_type, size, bytes.fromhex(NONCE))
    q = parse_tdx_quote(raw)
    assert (q.version, q.body_type) == (5, body_type)
    assert q.mrtd == b"\xaa" * 48 and q.rtmrs[3] == b"\xb3" * 48
    assert q.report_data[:32] == bytes.fromhex(NONCE)
    assert q.signed == raw[: 48 + 6 + size] and q.signature_data == b"\x07" * 100
    assert (q.mr_service_td == b"\xcc" * 48) is (body_type == 3)
    made = parse_tdx_quote(build_tdx_quote(b"n", version=5, body_type=body_type))
    assert (made.version, made.body_type, len(made.signed)) == (5, body_type, 48 + 6 + size)


def test_a_v5_quote_passes_the_evidence_checks() -> None:
    import base64

    raw = _v5(3, 648, bytes.fromhex(NONCE))
    evidence = {"instance_id": "i", "quote": base64.b64encode(raw).decode()}
    report = check_evidence("b", evidence, NONCE, AttestationPolicy(kind="openai"), time.time())
    assert report.checks["nonce"] == "ok" and report.measurements["mrtd"] == "aa" * 48
    assert report.measurements["mrservicetd"] == "cc" * 48


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_v5(4, 648, b""), "body type 4 is not a TD report"),
        (_v5(3, 584, b""), "must be 648 bytes"),
        (_v5(2, 584, b"")[:-101], "ends inside"),
        (_v5(2, 584, b"") + b"\x01", "only zero padding"),
        (struct.pack("<HHI", 3, 2, 0x81) + bytes(700), "unsupported quote version 3"),
    ],
    ids=["body-type", "body-size", "truncated", "trailing-bytes", "v3"],
)
def test_malformed_v5_quotes_are_named(raw: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_tdx_quote(raw)


def test_the_recorded_real_quotes_parse_as_dcap_qvl_reads_them() -> None:
    dcap_qvl = pytest.importorskip("dcap_qvl")
    for name, version, body_type in (("tdx_quote", 4, 2), ("tdx_quote_outdated", 5, 3)):
        raw = (DATA / name).read_bytes()
        ours, theirs = parse_tdx_quote(raw), dcap_qvl.parse_quote(raw)
        assert (ours.version, ours.body_type) == (version, body_type)
        assert ours.mrtd == theirs.report.mr_td
        assert ours.rtmrs == (
            theirs.report.rt_mr0,
            theirs.report.rt_mr1,
            theirs.report.rt_mr2,
            theirs.report.rt_mr3,
        )
        assert ours.report_data == theirs.report.report_data
        if body_type == 3:
            assert ours.mr_service_td == theirs.report.mr_service_td
