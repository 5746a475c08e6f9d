"""Just enough of an Intel TDX quote (v4/v5) to read its measurements and report data.

Layout (Intel TDX DCAP Quoting Library API, "Quote Format"): a 48-byte header (``version``
u16, ``att_key_type`` u16, ``tee_type`` u32 = 0x81 …), then

* **v4**: the 584-byte TD report body (TD 1.0);
* **v5**: a 6-byte body descriptor (``type`` u16, ``size`` u32) and the body it names:
  type 2 = TD 1.0 (584 bytes), type 3 = TD 1.5 (648 bytes: the TD 1.0 fields, then
  ``TEE_TCB_SVN_2`` (16) and ``MRSERVICETD`` (48));

then ``signature_data_len`` u32 and the signature data (quote buffers may end in zero padding,
as quotes from dstack's tappd do). In the body: ``MRTD`` at 136,
``RTMR0..3`` at 328/376/424/472 (48 bytes each) and ``REPORTDATA`` at 520 (64 bytes). The
signed region is everything before ``signature_data_len``. The signature chain (QE report, PCK
certificates up to Intel's root) is *not* checked here: that is :mod:`intentmesh.verify._dcap`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["TDX_TEE_TYPE", "TdxQuote", "build_tdx_quote", "parse_tdx_quote"]

TDX_TEE_TYPE = 0x81
HEADER = 48
BODY = 584
BODY_TD15 = 648
DESCRIPTOR = 6
_BODY_SIZES = {2: BODY, 3: BODY_TD15}  # v5 body type -> size
_MRTD, _RTMR, _REPORT_DATA, _MR_SERVICE_TD = 136, 328, 520, 600


@dataclass(frozen=True, slots=True)
class TdxQuote:
    version: int
    mrtd: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    signed: bytes
    signature_data: bytes
    body_type: int = 2
    mr_service_td: bytes | None = None

    def measurements(self) -> dict[str, str]:
        """``{"mrtd": hex, "rtmr0": hex, …}``: what golden values are compared with."""
        out = {"mrtd": self.mrtd.hex()}
        out.update({f"rtmr{i}": r.hex() for i, r in enumerate(self.rtmrs)})
        if self.mr_service_td is not None:
            out["mrservicetd"] = self.mr_service_td.hex()
        return out


def parse_tdx_quote(raw: bytes) -> TdxQuote:
    """Parse the header and TD report body; raise ``ValueError`` if it is not a TDX quote."""
    if len(raw) < HEADER + BODY + 4:
        raise ValueError(f"a TDX quote is at least {HEADER + BODY + 4} bytes, got {len(raw)}")
    version, _key_type, tee_type = struct.unpack_from("<HHI", raw, 0)
    if version not in (4, 5):
        raise ValueError(f"unsupported quote version {version} (TDX quotes are v4 or v5)")
    if tee_type != TDX_TEE_TYPE:
        raise ValueError(f"tee_type {tee_type:#x} is not TDX (0x81)")
    body_type, start, size = _locate_body(raw, version)
    end = start + size
    if len(raw) < end + 4:
        raise ValueError(f"the quote ends inside its {size}-byte TD report body")
    body = raw[start:end]
    rtmrs = tuple(body[_RTMR + 48 * i : _RTMR + 48 * (i + 1)] for i in range(4))
    (sig_len,) = struct.unpack_from("<I", raw, end)
    signature, padding = raw[end + 4 : end + 4 + sig_len], raw[end + 4 + sig_len :]
    if sig_len != len(signature) or padding.strip(b"\x00"):
        raise ValueError(
            f"the signature data length field says {sig_len} bytes but "
            f"{len(raw) - end - 4} follow (only zero padding may follow it)"
        )
    return TdxQuote(
        version,
        body[_MRTD : _MRTD + 48],
        rtmrs,  # type: ignore[arg-type]
        body[_REPORT_DATA : _REPORT_DATA + 64],
        raw[:end],
        signature,
        body_type,
        body[_MR_SERVICE_TD : _MR_SERVICE_TD + 48] if body_type == 3 else None,
    )


def _locate_body(raw: bytes, version: int) -> tuple[int, int, int]:
    """``(body type, offset, size)`` of the TD report body."""
    if version == 4:
        return 2, HEADER, BODY
    body_type, size = struct.unpack_from("<HI", raw, HEADER)
    expected = _BODY_SIZES.get(body_type)
    if expected is None:
        raise ValueError(f"v5 body type {body_type} is not a TD report (2 = TD 1.0, 3 = TD 1.5)")
    if size != expected:
        raise ValueError(
            f"v5 body type {body_type} must be {expected} bytes, its descriptor says {size}"
        )
    return body_type, HEADER + DESCRIPTOR, size


def build_tdx_quote(
    report_data: bytes,
    *,
    mrtd: bytes = b"\x11" * 48,
    rtmrs: tuple[bytes, ...] = (b"\x22" * 48, b"\x33" * 48, b"\x44" * 48, b"\x55" * 48),
    signature: bytes = b"\x00" * 64,
    version: int = 4,
    body_type: int = 2,
    mr_service_td: bytes = b"\x66" * 48,
) -> bytes:
    """A structurally valid (unsigned) quote, for fakes and tests: v4, or v5 with TD 1.0/1.5."""
    size = _BODY_SIZES[body_type] if version == 5 else BODY
    body = bytearray(size)
    body[_MRTD : _MRTD + 48] = mrtd
    for i, r in enumerate(rtmrs):
        body[_RTMR + 48 * i : _RTMR + 48 * (i + 1)] = r
    body[_REPORT_DATA : _REPORT_DATA + 64] = report_data.ljust(64, b"\x00")[:64]
    if size == BODY_TD15:
        body[_MR_SERVICE_TD : _MR_SERVICE_TD + 48] = mr_service_td
    header = struct.pack("<HHI", version, 2, TDX_TEE_TYPE).ljust(HEADER, b"\x00")
    descriptor = struct.pack("<HI", body_type, size) if version == 5 else b""
    return header + descriptor + bytes(body) + struct.pack("<I", len(signature)) + signature
