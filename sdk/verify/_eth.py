"""Ethereum-style response signatures (EIP-191 ``personal_sign`` over secp256k1), as the
dstack vLLM proxy used by NEAR AI Cloud signs answers.

``message = b"\\x19Ethereum Signed Message:\\n" + str(len(text)) + text``; the 65-byte signature
``r || s || v`` (``v`` 27/28 or 0/1) is over ``keccak256(message)``; the signer's address is the
last 20 bytes of ``keccak256(uncompressed public key without its 0x04 prefix)``. Uses coincurve
(libsecp256k1) and pycryptodome's Keccak, from the ``tee`` extra.
"""

from __future__ import annotations

from intentmesh.errors import ConfigurationError

__all__ = ["eth_address", "keccak256", "personal_sign_hash", "recover_signer"]


def keccak256(data: bytes) -> bytes:
    try:
        from Crypto.Hash import keccak
    except ImportError:
        raise ConfigurationError(
            "response signatures need pycryptodome; install it with: pip install 'intentmesh[tee]'"
        ) from None
    return keccak.new(digest_bits=256, data=data).digest()


def personal_sign_hash(text: str) -> bytes:
    raw = text.encode()
    return keccak256(b"\x19Ethereum Signed Message:\n" + str(len(raw)).encode() + raw)


def eth_address(public_key: bytes) -> str:
    """``0x`` + 40 hex of an uncompressed (65-byte) or raw (64-byte) secp256k1 public key."""
    raw = public_key[1:] if len(public_key) == 65 else public_key
    return "0x" + keccak256(raw)[-20:].hex()


def recover_signer(text: str, signature_hex: str) -> str | None:
    """The address that signed ``text``; ``None`` when the signature is not one."""
    try:
        import coincurve
    except ImportError:
        raise ConfigurationError(
            "response signatures need coincurve; install it with: pip install 'intentmesh[tee]'"
        ) from None
    try:
        sig = bytes.fromhex(signature_hex.removeprefix("0x"))
    except ValueError:
        return None
    if len(sig) != 65:
        return None
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    try:
        key = coincurve.PublicKey.from_signature_and_message(
            sig[:64] + bytes([v]), personal_sign_hash(text), hasher=None
        )
    except (ValueError, TypeError):
        return None
    return eth_address(key.format(compressed=False))
