"""Ed25519 signing keys for receipts, and where intentmesh keeps its files.

The private key never leaves :class:`SigningKey`: it is not in ``repr``, not logged and not
serialised except by :meth:`SigningKey.load_or_create`, which writes it once with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

import platformdirs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from intentmesh.errors import ReceiptError

__all__ = [
    "SigningKey",
    "default_key_path",
    "default_ledger_path",
    "intentmesh_home",
    "key_id_of",
    "load_public_key",
    "public_key_id",
]

HOME_ENV = "INTENTMESH_HOME"
KEY_ENV = "INTENTMESH_SIGNING_KEY"


def intentmesh_home() -> Path:
    """The directory for intentmesh's files: ``$INTENTMESH_HOME`` or the user data dir."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("intentmesh", appauthor=False))


def default_ledger_path() -> Path:
    """``<home>/receipts.sqlite3``; see :func:`intentmesh_home`."""
    return intentmesh_home() / "receipts.sqlite3"


def default_key_path() -> Path:
    """``<home>/signing_key.pem``; see :func:`intentmesh_home`."""
    return intentmesh_home() / "signing_key.pem"


def key_id_of(public_raw: bytes) -> str:
    """The first 16 hex digits of sha256 over the raw 32-byte public key."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class SigningKey:
    """An Ed25519 private key that signs receipts. ``repr`` shows only the ``key_id``."""

    __slots__ = ("_private", "_public_raw", "key_id")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ReceiptError("SigningKey needs an Ed25519 private key")
        self._private = private_key
        self._public_raw = _raw_public(private_key.public_key())
        self.key_id = key_id_of(self._public_raw)

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh random key (kept in memory only)."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """The key whose raw 32-byte private seed is ``seed``."""
        if len(seed) != 32:
            raise ReceiptError(f"an Ed25519 seed is 32 bytes, got {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_text(cls, text: str | bytes) -> SigningKey:
        """Parse a PEM (PKCS#8) key, or a raw 32-byte seed in hex or base64."""
        raw = text.encode() if isinstance(text, str) else text
        raw = raw.strip()
        if raw.startswith(b"-----BEGIN"):
            if b"\n" not in raw:  # an env var that kept "\n" escaped
                raw = raw.replace(b"\\n", b"\n")
            return cls._from_pem(raw)
        return cls.from_seed(_decode_seed(raw))

    @classmethod
    def _from_pem(cls, pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ReceiptError("not a readable unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise ReceiptError("the PEM key is not an Ed25519 key")
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SigningKey:
        """Read a key file written by :meth:`load_or_create` (PEM, or a hex/base64 seed)."""
        data = Path(path).read_bytes()
        try:
            return cls.from_text(data)
        except ReceiptError as exc:
            raise ReceiptError(f"{os.fspath(path)}: {exc}") from exc.__cause__

    @classmethod
    def load_or_create(cls, path: str | os.PathLike[str] | None = None) -> SigningKey:
        """Load the key at ``path`` (default :func:`default_key_path`), creating it if missing.

        A new key is written atomically with mode 0600; when two processes race, both end up
        with the key that reached the path first.
        """
        target = Path(path) if path is not None else default_key_path()
        if target.exists():
            return cls.load(target)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = cls.generate()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key._private_pem())
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, target)  # fails if another process got there first
            except FileExistsError:
                return cls.load(target)
        finally:
            tmp.unlink(missing_ok=True)
        return key

    @classmethod
    def from_env(cls, var: str = KEY_ENV) -> SigningKey:
        """The key in environment variable ``var``: PEM, or a 32-byte seed in hex or base64."""
        value = os.environ.get(var, "").strip()
        if not value:
            raise ReceiptError(f"environment variable {var} is not set")
        try:
            return cls.from_text(value)
        except ReceiptError as exc:
            raise ReceiptError(f"{var}: {exc}") from exc.__cause__

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return self._private.sign(data)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._private.public_key()

    def public_key_bytes(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public_raw

    def public_key_hex(self) -> str:
        return self._public_raw.hex()

    def public_key_pem(self) -> str:
        return (
            self._private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def _private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r})"

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("SigningKey cannot be pickled; load it in each process")


def _decode_seed(raw: bytes) -> bytes:
    if len(raw) == 64:
        try:
            return bytes.fromhex(raw.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            pass
    try:
        seed = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ReceiptError("expected PEM, or a 32-byte seed in hex or base64") from exc
    if len(seed) != 32:
        raise ReceiptError("expected PEM, or a 32-byte seed in hex or base64")
    return seed


def load_public_key(key: object) -> Ed25519PublicKey:
    """An Ed25519 public key from raw 32 bytes, 64 hex digits, PEM, or a key object.

    Raises :class:`ReceiptError` when ``key`` is not usable.
    """
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, SigningKey):
        return key.public_key
    if isinstance(key, str):
        text = key.strip()
        if not text.startswith("-----BEGIN"):
            try:
                raw = bytes.fromhex(text)
            except ValueError as exc:
                raise ReceiptError("public key: expected 64 hex digits or PEM") from exc
            return _from_raw(raw)
        key = text.encode()
    if isinstance(key, bytes | bytearray | memoryview):
        data = bytes(key)
        if data.lstrip().startswith(b"-----BEGIN"):
            return _from_pem(data)
        return _from_raw(data)
    raise ReceiptError(f"public key: unsupported type {type(key).__name__}")


def _from_raw(raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ReceiptError(f"public key: a raw Ed25519 key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def _from_pem(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ReceiptError("public key: not a readable PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ReceiptError("public key: the PEM key is not an Ed25519 key")
    return key


def public_key_id(key: Ed25519PublicKey) -> str:
    """The ``key_id`` of a public key object."""
    return key_id_of(_raw_public(key))
