"""Receipt interop with ``aci/1``, the Attested Confidential Inference draft (Dstack-TEE).

Source: ``docs/specs/attested-confidential-inference.md`` in github.com/Dstack-TEE/dstack
(draft; §4.1 workload keyset, §9.2 receipt shape, §9.3 events, §9.4 signature, §10.2
verification). Our reading, in short:

* a receipt is ``{api_version: "aci/1", receipt_id, chat_id, workload_id,
  workload_keyset_digest, endpoint, method, served_at, event_log: [{seq, type, ...}],
  signature: {algo, key_id, value}}``; the signature covers ``JCS(receipt without
  signature.value)`` (RFC 8785), Ed25519 over those bytes or ``ecdsa-secp256k1`` (65-byte
  recoverable, over their SHA-256), hex;
* ``workload_id = "sha256:" + hex(sha256(JCS(keyset.workload_identity.public_key)))`` and
  ``workload_keyset_digest = "sha256:" + hex(sha256(JCS(keyset)))``;
* events: ``request.received`` first, ``request.forwarded``, ``response.returned``; ``seq``
  strictly increasing; unknown event types are ignored by generic verifiers.

**Export** maps one of our receipts to that shape, signed with the gateway's Ed25519 key, with
our fields (backend, model, cost, attempts, verification) as ``intentmesh.*`` extension events.
The keyset it names is the gateway's own (:func:`gateway_keyset`), published by us, **not** TEE
attested: an exported receipt proves what this gateway says, exactly as our receipt does.
Body hashes are our digests (SHA-256 of the canonical request/response JSON), not of wire bytes.
**Import** (:func:`verify_aci_receipt`) checks a receipt from an ACI gateway against a keyset
the caller has already established (e.g. from an attestation report it verified).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from intentmesh.errors import VerificationFailed

__all__ = [
    "ACI_VERSION",
    "aci_digest",
    "export_aci_receipt",
    "gateway_keyset",
    "verify_aci_receipt",
]

ACI_VERSION = "aci/1"
REQUIRED_EVENTS = ("request.received", "request.forwarded", "response.returned")


def aci_digest(obj: object) -> str:
    """``"sha256:" + hex(sha256(JCS(obj)))``."""
    from intentmesh.receipts import canonical_json

    return "sha256:" + hashlib.sha256(canonical_json(obj)).hexdigest()


def gateway_keyset(
    public_key_hex: str, key_id: str, *, version: int = 0, not_after: int = 0
) -> dict[str, Any]:
    """The ``workload_keyset`` (§4.1) naming the gateway's Ed25519 receipt key.

    It is an unattested keyset: our gateway does not run in a TEE and offers no E2EE or TLS
    keys, so it lists the receipt key only."""
    key = {"algo": "ed25519", "public_key": public_key_hex}
    return {
        "workload_identity": {"public_key": key, "subject": "intentmesh-gateway"},
        "keyset_epoch": {"version": version, "not_after": not_after},
        "receipt_signing_keys": [{"key_id": key_id, **key}],
        "e2ee_public_keys": [],
        "tls_public_keys": [],
    }


def export_aci_receipt(receipt: Any, signing_key: Any) -> dict[str, Any]:
    """One of our receipts (``Receipt`` or its dict) as a signed ``aci/1`` receipt."""
    body: Mapping[str, Any] = receipt.body if hasattr(receipt, "body") else receipt["body"]
    keyset = gateway_keyset(signing_key.public_key_hex(), signing_key.key_id)
    request = body.get("request_digest")
    events: list[dict[str, Any]] = [
        {"type": "request.received", "body_hash": request},
        {"type": "request.forwarded", "body_hash": request},
        {"type": "intentmesh.routed", **_routing(body)},
    ]
    if body.get("verification") is not None:
        events.append(
            {"type": "intentmesh.verification", "verification": _no_floats(body["verification"])}
        )
    response = body.get("response_digest")
    events.append({"type": "response.returned", "cleartext_hash": response, "wire_hash": response})
    out: dict[str, Any] = {
        "api_version": ACI_VERSION,
        "receipt_id": str(body.get("id")),
        "chat_id": None,
        "workload_id": aci_digest(keyset["workload_identity"]["public_key"]),
        "workload_keyset_digest": aci_digest(keyset),
        "endpoint": "/v1/chat/completions",
        "method": "POST",
        "served_at": _unix(body.get("timestamp")),
        "event_log": [{"seq": i, **e} for i, e in enumerate(events)],
        "signature": {"algo": "ed25519", "key_id": signing_key.key_id},
    }
    from intentmesh.receipts import canonical_json

    out["signature"]["value"] = signing_key.sign(canonical_json(out)).hex()
    return out


def verify_aci_receipt(receipt: Mapping[str, Any], keyset: Mapping[str, Any]) -> dict[str, Any]:
    """Check an ``aci/1`` receipt against an established workload keyset (§9.4, §10.2).

    Raises :class:`VerificationFailed` with ``check`` = ``aci_shape``, ``aci_identity`` or
    ``aci_signature``; returns ``{receipt_id, workload_id, key_id, events}``."""
    if receipt.get("api_version") != ACI_VERSION:
        raise _fail("aci_shape", f"api_version is {receipt.get('api_version')!r}, not aci/1")
    _check_events(receipt.get("event_log"))
    if receipt.get("workload_id") != aci_digest(keyset["workload_identity"]["public_key"]):
        raise _fail("aci_identity", "workload_id is not the established workload's")
    if receipt.get("workload_keyset_digest") != aci_digest(dict(keyset)):
        raise _fail("aci_identity", "workload_keyset_digest is not the established keyset's")
    sig = receipt.get("signature")
    if not isinstance(sig, Mapping):
        raise _fail("aci_shape", "no signature object")
    key = next(
        (k for k in keyset.get("receipt_signing_keys", []) if k.get("key_id") == sig.get("key_id")),
        None,
    )
    if key is None:
        raise _fail(
            "aci_signature", f"key {sig.get('key_id')!r} is not a receipt key of the keyset"
        )
    if key.get("algo") != sig.get("algo"):
        raise _fail("aci_signature", f"signature algo {sig.get('algo')!r} is not the key's")
    unsigned = {**receipt, "signature": {k: v for k, v in sig.items() if k != "value"}}
    from intentmesh.receipts import canonical_json

    if not _signature_ok(
        str(sig["algo"]),
        str(key["public_key"]),
        str(sig.get("value", "")),
        canonical_json(unsigned),
    ):
        raise _fail("aci_signature", "the signature does not verify")
    return {
        "receipt_id": receipt.get("receipt_id"),
        "workload_id": receipt["workload_id"],
        "key_id": sig["key_id"],
        "events": [e["type"] for e in receipt["event_log"]],
    }


def _routing(body: Mapping[str, Any]) -> dict[str, Any]:
    """Our fields as an extension event. ACI's canonical profile allows integers only, so
    amounts travel as decimal strings."""
    attempts = body.get("attempts") or []
    return {
        "backend": body.get("backend"),
        "network": body.get("network"),
        "model": body.get("model"),
        "provider_model": body.get("provider_model"),
        "cost_usd": _decimal(body.get("cost_usd")),
        "latency_ms": _decimal(body.get("latency_ms")),
        "attempts": [
            {
                "backend": a.get("backend"),
                "outcome": a.get("outcome"),
                "error_kind": a.get("error_kind"),
                "cost_usd": _decimal(a.get("cost_usd")),
            }
            for a in attempts
            if isinstance(a, Mapping)
        ],
        "verifiability": body.get("verifiability"),
        "intentmesh_receipt": {
            "id": body.get("id"),
            "seq": body.get("seq"),
            "key_id": body.get("key_id"),
        },
    }


def _check_events(events: Any) -> None:
    if not isinstance(events, Sequence) or not events:
        raise _fail("aci_shape", "event_log is empty")
    seqs: list[Any] = [e.get("seq") for e in events if isinstance(e, Mapping)]
    if len(seqs) != len(events) or any(not isinstance(s, int) for s in seqs):
        raise _fail("aci_shape", "every event needs an integer seq")
    if any(b <= a for a, b in zip(seqs, seqs[1:], strict=False)):
        raise _fail("aci_shape", "event_log seq values are not strictly increasing")
    types = [e.get("type") for e in events]
    if types[0] != "request.received":
        raise _fail("aci_shape", "the first event is not request.received")
    missing = [t for t in REQUIRED_EVENTS if t not in types]
    if missing:
        raise _fail("aci_shape", f"event_log lacks {missing}")


def _signature_ok(algo: str, public_hex: str, value_hex: str, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        public, value = bytes.fromhex(public_hex), bytes.fromhex(value_hex)
        if algo == "ed25519":
            Ed25519PublicKey.from_public_bytes(public).verify(value, message)
            return True
        if algo == "ecdsa-secp256k1" and len(value) == 65:
            point = b"\x04" + public if len(public) == 64 else public
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), point)
            r, s = int.from_bytes(value[:32], "big"), int.from_bytes(value[32:64], "big")
            digest = hashlib.sha256(message).digest()
            key.verify(
                utils.encode_dss_signature(r, s), digest, ec.ECDSA(utils.Prehashed(hashes.SHA256()))
            )
            return True
    except (InvalidSignature, ValueError):
        return False
    return False


def _no_floats(value: Any) -> Any:
    """ACI's canonical profile has no floats: they become decimal strings."""
    if isinstance(value, float):
        return _decimal(value)
    if isinstance(value, Mapping):
        return {k: _no_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_floats(v) for v in value]
    return value


def _decimal(value: Any) -> str | None:
    return None if value is None else format(float(value), ".12g")


def _unix(timestamp: Any) -> int:
    if isinstance(timestamp, str):
        try:
            return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return 0
    return int(timestamp or 0)


def _fail(check: str, message: str) -> VerificationFailed:
    return VerificationFailed(f"aci/1 receipt: {message}", check=check)
