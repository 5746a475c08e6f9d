"""NVIDIA GPU evidence: NRAS tokens verified against the issuer's JWKS (a local fake issuer
with its own keys), nonce bound, claims checked; an unchecked signature never passes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from verif_support import MODEL, MRTD, FakeTeeProvider, backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Intent
from intentmesh.testing.networks.nras import FakeNras
from intentmesh.verify import AttestationFailed, NrasPolicy, NrasVerifier

jwt = pytest.importorskip("jwt")

NONCE = "5e" * 32


@pytest.fixture
def nras() -> Iterator[FakeNras]:
    server = FakeNras()
    server.start()
    yield server
    server.stop()


def policy(nras: FakeNras, **kw: Any) -> NrasPolicy:
    return NrasPolicy(
        url=f"{nras.url}/v3/attest/gpu",
        jwks_url=f"{nras.url}/.well-known/jwks.json",
        issuer=nras.issuer,
        **kw,
    )


def verify(nras: FakeNras, token: Any, nonce: str = NONCE, **kw: Any) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        v = NrasVerifier(policy(nras, **kw))
        try:
            return await v.averify(token, nonce)
        finally:
            await v.aclose()

    return asyncio.run(go())


def rejected(nras: FakeNras, token: Any, check: str, match: str, **kw: Any) -> None:
    with pytest.raises(AttestationFailed, match=match) as err:
        verify(nras, token, **kw)
    assert err.value.check == check


def test_a_good_token_verifies_and_the_keys_are_cached(nras: FakeNras) -> None:
    verdict = verify(nras, nras.issue(NONCE, gpus=2))
    assert verdict["verdict"] == "ok" and [g["id"] for g in verdict["gpus"]] == ["GPU-0", "GPU-1"]
    assert verdict["gpus"][0]["hwmodel"] == "GH100 A01 GSP BROM"

    async def twice() -> None:
        v = NrasVerifier(policy(nras))
        await v.averify(nras.issue(NONCE), NONCE)
        await v.averify(json.dumps(nras.issue(NONCE)), NONCE)  # the answer as JSON text too
        assert v.jwks.fetches == 1
        await v.aclose()

    before = nras.jwks_fetches
    asyncio.run(twice())
    assert nras.jwks_fetches == before + 1


def test_another_nonce_is_rejected(nras: FakeNras) -> None:
    rejected(nras, nras.issue("00" * 32), "nonce", "eat_nonce is not our nonce")


def test_a_signature_by_another_key_is_rejected(nras: FakeNras) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = nras.issue(NONCE, key=ec.generate_private_key(ec.SECP384R1()))
    rejected(nras, forged, "gpu_signature", "Signature verification failed")


def test_an_unsigned_or_symmetric_token_is_never_accepted(nras: FakeNras) -> None:
    good = nras.issue(NONCE)
    claims = jwt.decode(good[0][1], options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": nras.kid})
    rejected(nras, [["JWT", unsigned], good[1]], "gpu_signature", "'none' is not accepted")
    public_pem = nras.jwks()["keys"][0]["x"]  # alg confusion: HS256 keyed with public data
    hs = jwt.encode(claims, public_pem, algorithm="HS256", headers={"kid": nras.kid})
    rejected(nras, [["JWT", hs], good[1]], "gpu_signature", "'HS256' is not accepted")
    rejected(nras, [["JWT", good[0][1] + "x"], good[1]], "gpu_signature", "token")


def test_a_swapped_gpu_token_breaks_the_binding(nras: FakeNras) -> None:
    good, other = nras.issue(NONCE), nras.issue(NONCE)
    rejected(nras, [good[0], other[1]], "gpu_binding", "not the one the overall token signs")
    rejected(nras, [good[0], {"GPU-7": other[1]["GPU-0"]}], "gpu_binding", "does not list it")


def test_claims_are_checked_against_the_policy(nras: FakeNras) -> None:
    rejected(nras, nras.issue(NONCE, overall=False), "gpu_claims", "overall attestation")
    rejected(
        nras,
        nras.issue(NONCE),
        "gpu_claims",
        "driver-version='570.133.20'",
        driver_versions=["999.1"],
    )
    rejected(nras, nras.issue(NONCE), "gpu_claims", "hwmodel", hwmodels=["GB100"])
    nras.gpu_claims = {"measres": "fail", "dbgstat": "enabled"}
    rejected(nras, nras.issue(NONCE), "gpu_claims", "measres='fail'")


def test_expired_and_foreign_issuer_tokens_are_rejected(nras: FakeNras) -> None:
    old = int(time.time()) - 7200
    rejected(nras, nras.issue(NONCE, exp=old), "gpu_signature", "expired")
    rejected(nras, nras.issue(NONCE, iss="https://evil.example"), "gpu_signature", "issuer")
    rejected(nras, {"not": "nras"}, "gpu_evidence", "not an NRAS answer")


class GpuTeeProvider(FakeTeeProvider):
    """TDX evidence plus GPU evidence: the raw evidence (``nvidia_payload``) that NRAS
    appraises, or (``gpu_nonce``) an NRAS token issued for another nonce."""

    def __init__(self, nras: FakeNras, **kw: Any) -> None:
        super().__init__(**kw)
        self.nras = nras

    def _item(self, nonce: str) -> dict[str, Any]:
        item = super()._item(nonce)
        if self.mode == "gpu_nonce":
            item["nras_token"] = self.nras.issue("11" * 32)
            return item
        payload = {
            "nonce": nonce,
            "arch": "HOPPER",
            "evidence_list": [
                {
                    "evidence": base64.b64encode(b"report").decode(),
                    "certificate": base64.b64encode(b"chain").decode(),
                }
            ],
        }
        item["nvidia_payload"] = json.dumps(payload)
        return item


def gpu_entry(name: str, p: FakeTeeProvider, nras: FakeNras, price: float) -> str:
    att = (
        f'attestation = {{ kind = "chutes", chute_id = "{p.chute_id}", '
        f'golden = [{{ mrtd = "{MRTD}" }}], nras = {{ url = "{nras.url}/v3/attest/gpu", '
        f'jwks_url = "{nras.url}/.well-known/jwks.json", issuer = "{nras.issuer}" }} }}'
    )
    return backend_toml(name, p.base_url, price=price, levels=("attested",), extra=att)


def test_gpu_evidence_through_the_gateway(
    start: Callable[..., Any], nras: FakeNras, tmp_path: Path
) -> None:
    intent = Intent(model=MODEL, prompt="hi", max_tokens=8, verifiability="attested")
    bad = start(GpuTeeProvider(nras, mode="gpu_nonce"))
    good = start(GpuTeeProvider(nras))
    entries = [gpu_entry("bad", bad, nras, 0.1), gpu_entry("good", good, nras, 0.5)]
    with make_gateway(tmp_path, entries) as gw:
        res = gw.infer(intent)
        assert res.backend == "good" and res.attempts[0].error_kind == "attestation_failed"
        assert "eat_nonce" in (res.attempts[0].error or "")
    block = res.receipt.body["verification"]
    assert block["checks"]["gpu"] == "ok" and block["gpus"][0]["verifier"] == "nras"
    assert block["gpus"][0]["gpus"][0]["driver_version"] == "570.133.20"
    with make_gateway(tmp_path, entries[:1]) as gw, pytest.raises(AllBackendsFailed):
        gw.infer(intent)


def test_the_documented_dcap_and_nras_tables_parse() -> None:
    import tomllib

    from intentmesh.verify import AttestationPolicy

    docs = (Path(__file__).parents[2] / "docs" / "verifiability.md").read_text()
    tables = {}
    for name in ("dcap", "nras"):
        block = docs.split(f"[backends.attestation.{name}]\n", 1)[1].split("```", 1)[0]
        tables[name] = tomllib.loads(block)
    policy = AttestationPolicy(kind="openai", **tables)
    assert policy.dcap is not None and policy.dcap.tcb_statuses == ["UpToDate", "SWHardeningNeeded"]
    assert policy.nras is not None and policy.nras.claims["measres"] == "success"
