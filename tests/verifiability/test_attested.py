"""attested: evidence bound to a fresh nonce, checked, and recorded; failures are rejected
(failed over or raised), never silently downgraded."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from verif_support import MODEL, MRTD, FakeTeeProvider, backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Intent, NoRouteError
from intentmesh.receipts import digest
from intentmesh.verify import (
    AttestationFailed,
    AttestationPolicy,
    TdxAttestationVerifier,
    build_tdx_quote,
    check_evidence,
    parse_tdx_quote,
)

ATTESTED = Intent(model=MODEL, prompt="hi", max_tokens=8, verifiability="attested")


def chutes_entry(name: str, p: FakeTeeProvider, price: float = 0.1, extra: str = "") -> str:
    att = f'attestation = {{ kind = "chutes", chute_id = "{p.chute_id}", max_age_s = 60'
    att += f', golden = [{{ mrtd = "{MRTD}" }}]{extra} }}'
    return backend_toml(name, p.base_url, price=price, levels=("attested",), extra=att)


def test_good_evidence_is_recorded_in_the_receipt(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    tee = start(FakeTeeProvider())
    with make_gateway(tmp_path, [chutes_entry("tee", tee)]) as gw:
        res = gw.infer(ATTESTED)
    block = res.receipt.body["verification"]
    assert block["level"] == "attested" and block["kind"] == "chutes"
    assert block["nonce"] == tee.nonces[-1] and len(block["nonce"]) == 64
    assert block["checks"]["measurement"] == "ok"
    assert block["checks"]["quote_signature"] == "not_checked"
    assert block["instance_ids"] == ["inst-1"] and block["measurements"]["mrtd"] == MRTD
    assert block["evidence_digest"].startswith("sha256:")
    with make_gateway(tmp_path, [chutes_entry("tee", tee)]) as gw:
        gw.infer(ATTESTED)
    assert tee.nonces[0] != tee.nonces[1]  # a fresh nonce every time


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("wrong_nonce", "nonce"),
        ("stale", "freshness"),
        ("bad_measurement", "measurement"),
        ("garbage", "structure"),
        ("down", "fetch"),
    ],
)
def test_bad_evidence_fails_over_to_an_honest_backend(
    start: Callable[..., Any], tmp_path: Path, mode: str, check: str
) -> None:
    bad = start(FakeTeeProvider(mode=mode))
    good = start(FakeTeeProvider())
    entries = [chutes_entry("bad", bad, 0.1), chutes_entry("good", good, 0.5)]
    with make_gateway(tmp_path, entries) as gw:
        res = gw.infer(ATTESTED)
        assert res.backend == "good"
        first = res.attempts[0]
        assert first.backend == "bad" and first.outcome == "error"
        assert first.error_kind == "attestation_failed"
        assert gw.health.penalty("bad") > 0
    with make_gateway(tmp_path, [chutes_entry("bad", bad)]) as gw:
        with pytest.raises(AllBackendsFailed, match="attestation") as err:
            gw.infer(ATTESTED)
        assert err.value.attempts[0].error_kind == "attestation_failed"
        assert check in str(err.value) or mode in ("down", "garbage", "stale")


def test_claiming_attested_without_a_way_to_show_it_is_rejected(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    tee = start(FakeTeeProvider())
    entry = backend_toml("claims", tee.base_url, levels=("attested",))
    with make_gateway(tmp_path, [entry]) as gw:
        assert "claims" in gw.plan(ATTESTED).rejected
        with pytest.raises(NoRouteError, match="cannot show verifiability 'attested'"):
            gw.infer(ATTESTED)
        receipt_level = gw.infer(ATTESTED.model_copy(update={"verifiability": "receipt"}))
        assert "verification" not in receipt_level.receipt.body
    assert tee.calls["/v1/chat/completions"] == 1


def test_generic_openai_attestation_endpoint(start: Callable[..., Any], tmp_path: Path) -> None:
    tee = start(FakeTeeProvider(mode="sha256"))
    att = 'attestation = { kind = "openai", report_data = "sha256" }'
    entry = backend_toml("phala", tee.base_url, levels=("attested",), extra=att)
    with make_gateway(tmp_path, [entry]) as gw:
        res = gw.infer(ATTESTED)
    assert res.receipt.body["verification"]["kind"] == "openai"
    assert res.receipt.body["verification"]["checks"]["measurement"] == "not_checked"


def test_require_quote_signature_needs_a_verifier(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    tee = start(FakeTeeProvider())
    entry = chutes_entry("tee", tee, extra=", require_quote_signature = true")
    with make_gateway(tmp_path, [entry]) as gw:
        with pytest.raises(AllBackendsFailed, match="QuoteVerifier"):
            gw.infer(ATTESTED)

        seen: list[bytes] = []

        class Dcap:
            async def averify_quote(self, quote: bytes, evidence: Mapping[str, Any]) -> None:
                seen.append(quote)

        verifier = gw.verification.attestors["tee"]
        assert isinstance(verifier, TdxAttestationVerifier)
        verifier.quote_verifier = Dcap()
        res = gw.infer(ATTESTED)
    assert res.receipt.body["verification"]["checks"]["quote_signature"] == "ok"
    assert parse_tdx_quote(seen[0]).mrtd.hex() == MRTD


# -- the checks themselves ------------------------------------------------------------------


def evidence(bound: str, /, **item: Any) -> dict[str, Any]:
    quote = build_tdx_quote(bytes.fromhex(bound)).hex()
    return {"evidence": [{"instance_id": "i-1", "quote": quote} | item]}


NONCE = "ab" * 32
POLICY = AttestationPolicy(kind="chutes", chute_id="c", max_age_s=30, instance_ids=["i-1"])


def test_checks_each_rule() -> None:
    now = time.time()
    report = check_evidence("b", evidence(NONCE, timestamp=now), NONCE, POLICY, now)
    assert report.evidence_digest == digest(evidence(NONCE, timestamp=now))
    cases = {
        "nonce": (evidence("cd" * 32), NONCE),
        "freshness": (evidence(NONCE, timestamp="2001-01-01T00:00:00Z"), NONCE),
        "instance": (evidence(NONCE, instance_id="x"), NONCE),
        "structure": ({"evidence": []}, NONCE),
    }
    for check, (ev, nonce) in cases.items():
        with pytest.raises(AttestationFailed) as err:
            check_evidence("b", ev, nonce, POLICY, now)
        assert err.value.check == check, check
    echoed = evidence(NONCE, nonce="00" * 32)
    with pytest.raises(AttestationFailed, match="another nonce"):
        check_evidence("b", echoed, NONCE, POLICY, now)


def test_served_by_header_must_name_an_attested_instance() -> None:
    async def fetch(nonce: str) -> dict[str, Any]:
        return evidence(nonce)

    policy = POLICY.model_copy(update={"instance_header": "X-Instance-Id"})
    verifier = TdxAttestationVerifier("b", policy, fetch)
    import asyncio

    report = asyncio.run(verifier.aattest(NONCE))
    verifier.check_served_by(report, {"x-instance-id": "i-1"})
    with pytest.raises(AttestationFailed, match="not among the attested"):
        verifier.check_served_by(report, {"x-instance-id": "i-2"})


def test_not_a_tdx_quote() -> None:
    with pytest.raises(ValueError, match="TDX"):
        parse_tdx_quote(b"\x04\x00\x02\x00" + b"\x00" * 700)
