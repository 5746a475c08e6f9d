"""NEAR AI Cloud: per-answer EIP-191 signatures over the request and response hashes, the
signing key attested in a TDX quote (address + nonce in REPORTDATA) with GPU evidence appraised
by NRAS; each misbehaviour of the loopback fake is rejected with its check named."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from intentmesh import AllBackendsFailed, Gateway, Intent
from intentmesh.adapters.nearai import SIGNER_HEADER, NearAIBackend
from intentmesh.config import parse_config

pytest.importorskip("coincurve")
pytest.importorskip("Crypto.Hash.keccak")
pytest.importorskip("jwt")

from intentmesh.testing.networks.nearai import FakeNearAI  # noqa: E402
from intentmesh.testing.networks.nras import FakeNras  # noqa: E402

MODEL = "deepseek-ai/DeepSeek-V3.1"


@pytest.fixture
def nras() -> Iterator[FakeNras]:
    server = FakeNras()
    server.start()
    yield server
    server.stop()


def entry(name: str, fake: FakeNearAI, nras: FakeNras, price: float) -> str:
    return f"""
[[backends]]
name = "{name}"
type = "nearai"
base_url = "{fake.base_url}"
retries = 0
verifiability = ["attested"]
[backends.attestation]
kind = "nearai"
model = "{MODEL}"
instance_header = "{SIGNER_HEADER}"
golden = [{{ mrtd = "{"11" * 48}" }}]
[backends.attestation.nras]
url = "{nras.url}/v3/attest/gpu"
jwks_url = "{nras.url}/.well-known/jwks.json"
issuer = "{nras.issuer}"
[[backends.models]]
name = "deepseek-v3.1"
id = "{MODEL}"
input_price = {price}
output_price = {price}
"""


def gateway(tmp_path: Path, fakes: list[tuple[str, FakeNearAI]], nras: FakeNras) -> Gateway:
    text = f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "k.pem"}"\n'
    text += "\n".join(entry(n, f, nras, 0.1 * (i + 1)) for i, (n, f) in enumerate(fakes))
    config = parse_config(text)
    backends = {n: NearAIBackend(n, f.base_url, api_key="nk-test") for n, f in fakes}
    return Gateway(config, backends=backends)


INTENT = Intent(model="deepseek-v3.1", prompt="hi", max_tokens=8, verifiability="attested")


def test_a_signed_attested_answer_is_verified(
    start: Callable[..., Any], nras: FakeNras, tmp_path: Path
) -> None:
    fake = start(FakeNearAI(api_key="nk-test"))
    with gateway(tmp_path, [("near", fake)], nras) as gw:
        res = gw.infer(INTENT)
    block = res.receipt.body["verification"]
    assert block["kind"] == "nearai" and fake.signing_address in block["instance_ids"]
    assert block["checks"]["served_by"] == "ok" and block["checks"]["gpu"] == "ok"
    assert block["checks"]["measurement"] == "ok"
    assert block["evidence_digest"].startswith("sha256:")


@pytest.mark.parametrize(
    ("mode", "check", "message"),
    [
        ("bad_signature", "response_signature", "not by the signing address"),
        ("wrong_hash", "response_signature", "response hash"),
        ("unattested", "instance", "not among the attested"),
        ("wrong_nonce", "nonce", "not our nonce"),
    ],
)
def test_misbehaviour_is_rejected_and_fails_over(
    start: Callable[..., Any],
    nras: FakeNras,
    tmp_path: Path,
    mode: str,
    check: str,
    message: str,
) -> None:
    bad, good = start(FakeNearAI(mode=mode)), start(FakeNearAI())
    with gateway(tmp_path, [("bad", bad), ("good", good)], nras) as gw:
        res = gw.infer(INTENT)
        assert res.backend == "good"
        first = res.attempts[0]
        assert first.backend == "bad" and first.error_kind == "attestation_failed"
        assert message in (first.error or "")
    with gateway(tmp_path, [("bad", bad)], nras) as gw, pytest.raises(AllBackendsFailed) as err:
        gw.infer(INTENT)
    assert check in str(err.value) or message in str(err.value)


def test_the_adapter_checks_signatures_at_every_level(
    start: Callable[..., Any], nras: FakeNras, tmp_path: Path
) -> None:
    bad = start(FakeNearAI(mode="wrong_hash"))
    with (
        gateway(tmp_path, [("bad", bad)], nras) as gw,
        pytest.raises(AllBackendsFailed, match="response hash"),
    ):
        gw.infer(Intent(model="deepseek-v3.1", prompt="hi", max_tokens=8))


def test_phala_speaks_the_same_proxy_protocol(
    start: Callable[..., Any], nras: FakeNras, tmp_path: Path
) -> None:
    from intentmesh.adapters.phala import PhalaBackend
    from intentmesh.testing.networks.nearai import FakePhala

    good, bad = start(FakePhala()), start(FakePhala(mode="wrong_nonce"))
    model = "phala/deepseek-chat-v3-0324"
    text = f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "k.pem"}"\n'
    for i, (name, fake) in enumerate((("bad", bad), ("good", good))):
        text += (
            entry(name, fake, nras, 0.1 * (i + 1))
            .replace('type = "nearai"', 'type = "phala"')
            .replace('kind = "nearai"', 'kind = "phala"')
            .replace(MODEL, model)
        )
    backends = {
        n: PhalaBackend(n, f.base_url, api_key="k") for n, f in (("bad", bad), ("good", good))
    }
    with Gateway(parse_config(text), backends=backends) as gw:
        res = gw.infer(INTENT)
        assert res.backend == "good" and res.attempts[0].error_kind == "attestation_failed"
    block = res.receipt.body["verification"]
    assert block["kind"] == "phala" and block["instance_ids"] == [good.signing_address]
    assert block["checks"]["gpu"] == "ok" and block["checks"]["served_by"] == "ok"
