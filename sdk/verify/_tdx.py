"""Just enough of an Intel TDX quote (v4/v5) to read its measurements and report data.

Layout: a 48-byte header (``version`` u16, ``att_key_type`` u16, ``tee_type`` u32 = 0x81 …),
then the 584-byte TD report body, then the signature data. In the body: ``MRTD`` at 136,
``RTMR0..3`` at 328/376/424/472 (48 bytes each) and ``REPORTDATA`` at 520 (64 bytes).
The signature chain (QE report, PCK certificates up to Intel's root) is *not* checked here:
that needs Intel's collateral and is the job of a a ``QuoteVerifier``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["TDX_TEE_TYPE", "TdxQuote", "build_tdx_quote", "parse_tdx_quote"]

TDX_TEE_TYPE = 0x81
HEADER = 48
BODY = 584
_MRTD, _RTMR, _REPORT_DATA = 136, 328, 520


@dataclass(frozen=True, slots=True)
class TdxQuote:
    version: int
    mrtd: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    signed: bytes
    signature_data: bytes

    def measurements(self) -> dict[str, str]:
        """``{"mrtd": hex, "rtmr0": hex, …}``: what golden values are compared with."""
        out = {"mrtd": self.mrtd.hex()}
        out.update({f"rtmr{i}": r.hex() for i, r in enumerate(self.rtmrs)})
        return out


def parse_tdx_quote(raw: bytes) -> TdxQuote:
    """Parse the header and TD report body; raise ``ValueError`` if it is not a TDX quote."""
    if len(raw) < HEADER + BODY + 4:
        raise ValueError(f"a TDX quote is at least {HEADER + BODY + 4} bytes, got {len(raw)}")
    version, _key_type, tee_type = struct.unpack_from("<HHI", raw, 0)
    if version not in (4, 5):
        raise ValueError(f"unsupported quote version {version}")
    if tee_type != TDX_TEE_TYPE:
        raise ValueError(f"tee_type {tee_type:#x} is not TDX (0x81)")
    body = raw[HEADER : HEADER + BODY]
    rtmrs = tuple(body[_RTMR + 48 * i : _RTMR + 48 * (i + 1)] for i in range(4))
    (sig_len,) = struct.unpack_from("<I", raw, HEADER + BODY)
    signature = raw[HEADER + BODY + 4 :]
    if sig_len != len(signature):
        raise ValueError("the signature data length does not match the quote")
    return TdxQuote(
        version,
        body[_MRTD : _MRTD + 48],
        rtmrs,  # type: ignore[arg-type]
        body[_REPORT_DATA : _REPORT_DATA + 64],
        raw[: HEADER + BODY],
        signature,
    )


def build_tdx_quote(
    report_data: bytes,
    *,
    mrtd: bytes = b"\x11" * 48,
    rtmrs: tuple[bytes, ...] = (b"\x22" * 48, b"\x33" * 48, b"\x44" * 48, b"\x55" * 48),
    signature: bytes = b"\x00" * 64,
) -> bytes:
    """A structurally valid (unsigned) quote, for fakes and tests."""
    body = bytearray(BODY)
    body[_MRTD : _MRTD + 48] = mrtd
    for i, r in enumerate(rtmrs):
        body[_RTMR + 48 * i : _RTMR + 48 * (i + 1)] = r
    body[_REPORT_DATA : _REPORT_DATA + 64] = report_data.ljust(64, b"\x00")[:64]
    header = struct.pack("<HHI", 4, 2, TDX_TEE_TYPE).ljust(HEADER, b"\x00")
    return header + bytes(body) + struct.pack("<I", len(signature)) + signature
