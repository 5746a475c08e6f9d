"""Receipt interop with the aci/1 draft: our receipts exported (canonical JSON, Ed25519, our
fields as extension events) and verified; receipts built the way an ACI gateway builds them
(Ed25519 and recoverable secp256k1), independently of our code, imported and checked."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from verif_support import MODEL, backend_toml, make_gateway

from intentmesh import Intent
from intentmesh.testing import FakeOpenAIProvider
from intentmesh.verify import (
    VerificationFailed,
    export_aci_receipt,
    gateway_keyset,
    verify_aci_receipt,
)


def jcs(obj: Any) -> bytes:
    """RFC 8785 for the integer/string documents ACI allows (ASCII keys)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(jcs(obj)).hexdigest()


def floats_in(obj: Any) -> bool:
    if isinstance(obj, float):
        return True
    if isinstance(obj, dict):
        return any(floats_in(v) for v in obj.values())
    if isinstance(obj, list):
        return any(floats_in(v) for v in obj)
    return False


def test_our_receipt_exports_as_aci_and_verifies(start: Callable[..., Any], tmp_path: Path) -> None:
    p = start(FakeOpenAIProvider(["fake-llama"]))
    with make_gateway(tmp_path, [backend_toml("b", p.base_url)]) as gw:
        res = gw.infer(Intent(model=MODEL, prompt="hi", max_tokens=8))
        signer = gw.signing_key
    aci = export_aci_receipt(res.receipt, signer)
    keyset = gateway_keyset(signer.public_key_hex(), signer.key_id)
    verdict = verify_aci_receipt(aci, keyset)
    assert verdict["events"][0] == "request.received" and "response.returned" in verdict["events"]
    body = res.receipt.body
    routed = next(e for e in aci["event_log"] if e["type"] == "intentmesh.routed")
    assert routed["backend"] == "b" and routed["intentmesh_receipt"]["id"] == body["id"]
    assert aci["event_log"][0]["body_hash"] == body["request_digest"]
    assert not floats_in(aci)  # ACI's canonical profile has integers only
    assert aci["workload_keyset_digest"] == digest(keyset)  # an independent JCS agrees
    tampered = json.loads(json.dumps(aci))
    routed_t = next(e for e in tampered["event_log"] if e["type"] == "intentmesh.routed")
    routed_t["cost_usd"] = "0"
    with pytest.raises(VerificationFailed, match="does not verify") as err:
        verify_aci_receipt(tampered, keyset)
    assert err.value.check == "aci_signature"


def _their_keyset(algo: str, public_hex: str) -> dict[str, Any]:
    key = {"algo": algo, "public_key": public_hex}
    return {
        "workload_identity": {"public_key": key, "subject": None},
        "keyset_epoch": {"version": 3, "not_after": 1900000000},
        "receipt_signing_keys": [{"key_id": "rk-1", **key}],
        "e2ee_public_keys": [
            {"key_id": "ek-1", "algo": "x25519-aes-256-gcm-hkdf-sha256", "public_key": "00" * 32}
        ],
        "tls_public_keys": [{"spki_sha256": "11" * 32}],
    }


def _their_receipt(
    algo: str,
    keyset: dict[str, Any],
    sign: Callable[[bytes], bytes],
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    receipt = {
        "api_version": "aci/1",
        "receipt_id": "rcpt-42",
        "chat_id": "chatcmpl-42",
        "workload_id": digest(keyset["workload_identity"]["public_key"]),
        "workload_keyset_digest": digest(keyset),
        "endpoint": "/v1/chat/completions",
        "method": "POST",
        "served_at": 1750000000,
        "event_log": events
        or [
            {"seq": 0, "type": "request.received", "body_hash": "sha256:" + "a" * 64},
            {"seq": 1, "type": "request.forwarded", "body_hash": "sha256:" + "a" * 64},
            {"seq": 2, "type": "vendor.routing", "upstream": "x"},
            {
                "seq": 3,
                "type": "response.returned",
                "cleartext_hash": "sha256:" + "b" * 64,
                "wire_hash": "sha256:" + "c" * 64,
            },
        ],
        "signature": {"algo": algo, "key_id": "rk-1"},
    }
    receipt["signature"]["value"] = sign(jcs(receipt)).hex()
    return receipt


def _ed25519() -> tuple[dict[str, Any], Callable[[bytes], bytes]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return _their_keyset("ed25519", public), key.sign


def _secp256k1() -> tuple[dict[str, Any], Callable[[bytes], bytes]]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = ec.generate_private_key(ec.SECP256K1())
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def sign(message: bytes) -> bytes:
        der = key.sign(hashlib.sha256(message).digest(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        r, s = utils.decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + b"\x00"  # r || s || v

    return _their_keyset("ecdsa-secp256k1", public[1:].hex()), sign


@pytest.mark.parametrize("make", [_ed25519, _secp256k1], ids=["ed25519", "secp256k1"])
def test_their_receipts_import_and_verify(make: Callable[..., Any]) -> None:
    keyset, sign = make()
    algo = keyset["receipt_signing_keys"][0]["algo"]
    receipt = _their_receipt(algo, keyset, sign)
    verdict = verify_aci_receipt(receipt, keyset)
    assert verdict["receipt_id"] == "rcpt-42" and "vendor.routing" in verdict["events"]
    forged = {**receipt, "served_at": 1750000001}
    with pytest.raises(VerificationFailed, match="does not verify"):
        verify_aci_receipt(forged, keyset)
    other, _ = make()
    with pytest.raises(VerificationFailed, match="workload_id") as err:
        verify_aci_receipt(receipt, other)
    assert err.value.check == "aci_identity"


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([{"seq": 0, "type": "request.forwarded"}], "first event"),
        (
            [{"seq": 0, "type": "request.received"}, {"seq": 0, "type": "response.returned"}],
            "strictly increasing",
        ),
        (
            [{"seq": 0, "type": "request.received"}, {"seq": 1, "type": "response.returned"}],
            "lacks \\['request.forwarded'\\]",
        ),
    ],
    ids=["first", "seq", "missing"],
)
def test_malformed_event_logs_are_named(events: list[dict[str, Any]], message: str) -> None:
    keyset, sign = _ed25519()
    receipt = _their_receipt("ed25519", keyset, sign, events)
    with pytest.raises(VerificationFailed, match=message) as err:
        verify_aci_receipt(receipt, keyset)
    assert err.value.check == "aci_shape"


def test_a_key_outside_the_keyset_is_refused() -> None:
    keyset, sign = _ed25519()
    receipt = _their_receipt("ed25519", keyset, sign)
    receipt["signature"]["key_id"] = "rk-9"
    with pytest.raises(VerificationFailed, match="not a receipt key") as err:
        verify_aci_receipt(receipt, keyset)
    assert err.value.check == "aci_signature"
