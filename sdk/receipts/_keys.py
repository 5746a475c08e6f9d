"""Ed25519 signing keys for receipts, and where intentmesh keeps its files.

The private key never leaves :class:`SigningKey`: it is not in ``repr``, not logged and not
serialised except by :meth:`SigningKey.load_or_create`, which writes it once with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from intentmesh.errors import ReceiptError

__all__ = [
    "KeyHistory",
    "KeyRecord",
    "SigningKey",
    "default_key_history_path",
    "default_key_path",
    "default_ledger_path",
    "intentmesh_home",
    "key_id_of",
    "load_public_key",
    "load_signing_key",
    "public_key_id",
    "rotate_key",
]

HOME_ENV = "INTENTMESH_HOME"
KEY_ENV = "INTENTMESH_SIGNING_KEY"
KEY_FILE_ENV = "INTENTMESH_SIGNING_KEY_FILE"
ROTATION_TYPE = "intentmesh.key_rotation"


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


def default_key_history_path() -> Path:
    """``<home>/key_history.jsonl``: every public key that has signed receipts here."""
    return intentmesh_home() / "key_history.jsonl"


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


def load_signing_key(
    path: str | os.PathLike[str] | None = None, env: str | None = KEY_ENV
) -> SigningKey:
    """The server's signing key: ``$env`` (PEM or seed), else ``$INTENTMESH_SIGNING_KEY_FILE``,
    else the file at ``path`` (default :func:`default_key_path`), created on first use.
    """
    if env and os.environ.get(env, "").strip():
        return SigningKey.from_env(env)
    file = os.environ.get(KEY_FILE_ENV, "").strip()
    if file:
        return SigningKey.load(Path(file).expanduser())
    return SigningKey.load_or_create(path)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One entry of the key history: a public key, when it started signing, who endorsed it.

    ``endorsement`` is the previous key's base64url signature over the canonical JSON of
    ``rotation_statement()``; the first key has none.
    """

    key_id: str
    public_key: str
    created: str
    previous_key_id: str | None = None
    endorsement: str | None = None

    def rotation_statement(self) -> dict[str, Any]:
        return {
            "type": ROTATION_TYPE,
            "new_key_id": self.key_id,
            "new_public_key": self.public_key,
            "previous_key_id": self.previous_key_id,
            "created": self.created,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "created": self.created,
            "previous_key_id": self.previous_key_id,
            "endorsement": self.endorsement,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyRecord:
        try:
            return cls(
                str(data["key_id"]),
                str(data["public_key"]),
                str(data["created"]),
                data.get("previous_key_id"),
                data.get("endorsement"),
            )
        except (KeyError, TypeError) as exc:
            raise ReceiptError(f"key history: malformed entry ({exc})") from exc


class KeyHistory:
    """Every public key that signed receipts, oldest first, each endorsed by the one before.

    Pass :meth:`public_keys` to ``Ledger.verify`` so receipts signed before a rotation keep
    verifying; publish :meth:`to_json` so others can do the same.
    """

    def __init__(self, records: list[KeyRecord] | None = None) -> None:
        self.records = list(records or [])

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> KeyHistory:
        target = Path(path) if path is not None else default_key_history_path()
        if not target.exists():
            return cls()
        return cls.from_jsonl(target.read_text("utf-8"))

    @classmethod
    def from_jsonl(cls, text: str) -> KeyHistory:
        records = []
        for line in text.splitlines():
            if line.strip():
                records.append(KeyRecord.from_dict(json.loads(line)))
        return cls(records)

    @classmethod
    def from_json(cls, text: str | bytes) -> KeyHistory:
        """Read the document written by :meth:`to_json` (``{"keys": [...]}``)."""
        data = json.loads(text)
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise ReceiptError("a key history document is {\"keys\": [...]}")
        return cls([KeyRecord.from_dict(k) for k in keys])

    def to_json(self) -> str:
        """A document to publish: every public key (hex and PEM) with its endorsement."""
        keys = []
        for r in self.records:
            pem = _pem_of(load_public_key(r.public_key))
            keys.append({**r.to_dict(), "public_key_pem": pem})
        return json.dumps({"keys": keys}, indent=2, sort_keys=True)

    def public_keys(self) -> dict[str, str]:
        """``key_id`` → hex public key, for ``Ledger.verify(public_keys=...)``."""
        return {r.key_id: r.public_key for r in self.records}

    @property
    def current(self) -> KeyRecord | None:
        return self.records[-1] if self.records else None

    def problem(self) -> str | None:
        """Why the history is not one chain of endorsed keys, or None when it is."""
        previous: KeyRecord | None = None
        for r in self.records:
            key = load_public_key(r.public_key)
            if public_key_id(key) != r.key_id:
                return f"key {r.key_id}: key_id does not match its public key"
            if previous is not None:
                if r.previous_key_id != previous.key_id or r.endorsement is None:
                    return f"key {r.key_id}: not endorsed by the key before it"
                signer = load_public_key(previous.public_key)
                statement = _canonical(r.rotation_statement())
                try:
                    signer.verify(_unb64(r.endorsement), statement)
                except (InvalidSignature, ValueError):
                    return f"key {r.key_id}: the endorsement by {previous.key_id} does not verify"
            previous = r
        return None

    def _append(self, record: KeyRecord, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
        self.records.append(record)


def _record_for(key: SigningKey, previous: SigningKey | None) -> KeyRecord:
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = KeyRecord(key.key_id, key.public_key_hex(), created, None, None)
    if previous is None:
        return record
    record = KeyRecord(key.key_id, key.public_key_hex(), created, previous.key_id, None)
    endorsement = _b64(previous.sign(_canonical(record.rotation_statement())))
    return KeyRecord(key.key_id, key.public_key_hex(), created, previous.key_id, endorsement)


def rotate_key(
    path: str | os.PathLike[str] | None = None,
    history_path: str | os.PathLike[str] | None = None,
) -> tuple[SigningKey, KeyHistory]:
    """Replace the key file at ``path`` with a new key endorsed by the old one.

    The old public key stays in the history (``<home>/key_history.jsonl``) so receipts it
    signed still verify; the old private key is overwritten. Returns the new key and history.
    """
    key_path = Path(path) if path is not None else default_key_path()
    hist_path = Path(history_path) if history_path is not None else default_key_history_path()
    old = SigningKey.load_or_create(key_path)
    history = KeyHistory.load(hist_path)
    if history.current is None or history.current.key_id != old.key_id:
        history._append(_record_for(old, None), hist_path)
    new = SigningKey.generate()
    history._append(_record_for(new, old), hist_path)
    tmp = key_path.with_name(f".{key_path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(new._private_pem())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, key_path)
    return new, history


def _canonical(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON of a flat object of strings and nulls (all a rotation statement holds)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "==")
    if len(raw) != 64:
        raise ValueError("not an Ed25519 signature")
    return raw


def _pem_of(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
