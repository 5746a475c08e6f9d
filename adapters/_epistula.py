"""Epistula v2: sr25519-signed HTTP requests between Bittensor neurons (SN1, SN4).

Signing uses ``py-sr25519-bindings`` (the schnorrkel crate, as substrate-interface does),
imported lazily; install with ``pip install 'intentmesh[bittensor]'``. SS58 is only an
address encoding (base58 of prefix + public key + a blake2b checksum), done here.

Headers, as the SN1 code builds them (``shared/epistula.py``)::

    Epistula-Version: 2
    Epistula-Timestamp: <unix ms>
    Epistula-Uuid: <uuid4>
    Epistula-Signed-By: <caller ss58>
    Epistula-Signed-For: <receiver ss58>
    Epistula-Request-Signature: 0x<sign(f"{sha256(body)}.{uuid}.{timestamp}.{signed_for}")>
    Epistula-Secret-Signature-{0,1,2}: 0x<sign(f"{interval-1|interval|interval+1}.{signed_for}")>

with ``interval = ceil(timestamp / 1e4) * 1e4`` (a float, as Python prints it).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = [
    "MAX_AGE_MS",
    "Hotkey",
    "epistula_headers",
    "ss58_decode",
    "ss58_encode",
    "verify_epistula",
    "verify_signature",
]

MAX_AGE_MS = 8000  # what SN1 miners accept
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_SS58_PREFIX = 42  # generic Substrate, what Bittensor uses


def _sr25519() -> ModuleType:
    try:
        import sr25519  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "Epistula signing needs py-sr25519-bindings; "
            "install it with: pip install 'intentmesh[bittensor]'"
        ) from exc
    module: ModuleType = sr25519
    return module


def _b58encode(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    out = ""
    while number:
        number, rem = divmod(number, 58)
        out = _ALPHABET[rem] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def _b58decode(text: str) -> bytes:
    number = 0
    for char in text:
        index = _ALPHABET.find(char)
        if index < 0:
            raise ValueError(f"invalid base58 character {char!r}")
        number = number * 58 + index
    body = number.to_bytes((number.bit_length() + 7) // 8, "big")
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(b"SS58PRE" + payload, digest_size=64).digest()[:2]


def ss58_encode(public_key: bytes, prefix: int = _SS58_PREFIX) -> str:
    """The SS58 address of a 32-byte public key (single-byte prefixes only)."""
    if len(public_key) != 32 or not 0 <= prefix < 64:
        raise ValueError("need a 32-byte public key and a prefix below 64")
    payload = bytes([prefix]) + public_key
    return _b58encode(payload + _checksum(payload))


def ss58_decode(address: str) -> bytes:
    """The 32-byte public key of an SS58 address; a bad checksum raises ``ValueError``."""
    raw = _b58decode(address)
    if len(raw) != 35:
        raise ValueError(f"not a single-byte-prefix SS58 address: {address!r}")
    payload, check = raw[:33], raw[33:]
    if _checksum(payload) != check:
        raise ValueError(f"bad SS58 checksum: {address!r}")
    return payload[1:]


@dataclass(frozen=True)
class Hotkey:
    """An sr25519 keypair: ``public_key`` (32 bytes) and schnorrkel ``secret_key`` (64)."""

    public_key: bytes
    secret_key: bytes

    @classmethod
    def from_seed(cls, seed: bytes | str) -> Hotkey:
        """From a 32-byte mini-secret (bytes or ``0x``-hex), as a wallet's hotkey file holds."""
        raw = bytes.fromhex(seed.removeprefix("0x")) if isinstance(seed, str) else seed
        if len(raw) != 32:
            raise ValueError("an sr25519 seed is 32 bytes (64 hex characters)")
        public, secret = _sr25519().pair_from_seed(raw)
        return cls(bytes(public), bytes(secret))

    @property
    def ss58_address(self) -> str:
        return ss58_encode(self.public_key)

    def sign(self, message: str | bytes) -> bytes:
        data = message.encode() if isinstance(message, str) else message
        return bytes(_sr25519().sign((self.public_key, self.secret_key), data))

    def __repr__(self) -> str:  # never print the secret
        return f"Hotkey({self.ss58_address})"


def verify_signature(address: str, message: str | bytes, signature: str | bytes) -> bool:
    """Whether ``signature`` (bytes or ``0x``-hex) over ``message`` is by ``address``."""
    try:
        public = ss58_decode(address)
        sig = (
            bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
        )
    except ValueError:
        return False
    data = message.encode() if isinstance(message, str) else message
    if len(sig) != 64:
        return False
    return bool(_sr25519().verify(sig, data, public))


def _interval(timestamp_ms: int) -> float:
    return math.ceil(timestamp_ms / 1e4) * 1e4


def epistula_headers(
    hotkey: Hotkey,
    body: bytes,
    signed_for: str | None,
    *,
    now_ms: int | None = None,
    request_id: str | None = None,
) -> dict[str, str]:
    """The Epistula v2 headers for ``body`` sent by ``hotkey`` to ``signed_for``."""
    timestamp = round(time.time() * 1000) if now_ms is None else now_ms
    rid = request_id or str(uuid.uuid4())
    digest = hashlib.sha256(body).hexdigest()
    headers = {
        "Epistula-Version": "2",
        "Epistula-Timestamp": str(timestamp),
        "Epistula-Uuid": rid,
        "Epistula-Signed-By": hotkey.ss58_address,
        "Epistula-Request-Signature": "0x"
        + hotkey.sign(f"{digest}.{rid}.{timestamp}.{signed_for or ''}").hex(),
    }
    if signed_for:
        interval = _interval(timestamp)
        headers["Epistula-Signed-For"] = signed_for
        for i, value in enumerate((interval - 1, interval, interval + 1)):
            headers[f"Epistula-Secret-Signature-{i}"] = (
                "0x" + hotkey.sign(f"{value}.{signed_for}").hex()
            )
    return headers


def verify_epistula(
    headers: Mapping[str, Any],
    body: bytes,
    *,
    now_ms: int | None = None,
    max_age_ms: int = MAX_AGE_MS,
) -> str | None:
    """The receiver's check of the request signature: an error message, or None when valid.

    ``headers`` must be looked up case-insensitively (lower-case keys work).
    """

    def get(name: str) -> str | None:
        value = headers.get(name.lower()) if name.lower() in headers else headers.get(name)
        return str(value) if value is not None else None

    signature, timestamp = get("Epistula-Request-Signature"), get("Epistula-Timestamp")
    rid, signed_by = get("Epistula-Uuid"), get("Epistula-Signed-By")
    if get("Epistula-Version") != "2":
        return "Unknown Epistula version"
    if not (signature and timestamp and rid and signed_by):
        return "Missing Epistula headers"
    try:
        ts = int(timestamp)
    except ValueError:
        return "Invalid Timestamp"
    now = round(time.time() * 1000) if now_ms is None else now_ms
    if ts + max_age_ms < now:
        return "Request is too stale"
    message = f"{hashlib.sha256(body).hexdigest()}.{rid}.{ts}.{get('Epistula-Signed-For') or ''}"
    if not verify_signature(signed_by, message, signature):
        return "Signature Mismatch"
    return None
