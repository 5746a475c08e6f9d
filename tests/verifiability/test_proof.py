"""proof: EZKL proofs of a small ONNX model served by a Ritual Infernet container with
``requires_proof: true``, end to end against the fake node; bad proofs never pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from verif_support import backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Intent, NoRouteError
from intentmesh.adapters.ritual import RitualOptions
from intentmesh.testing.networks.ritual import ContainerSpec, FakeInfernetNode
from intentmesh.verify import EzklVerifier, ProofBundle, ProofFailed
from intentmesh.verify._ritual import RitualProofBackend

pytest.importorskip("ezkl")
pytest.importorskip("onnx")
from ezkl_support import Circuit, EzklContainer, build_circuit  # noqa: E402

MODEL = "tiny-linear"
INPUT = [[0.2, 0.4, -0.6]]


@pytest.fixture(scope="module")
def circuit(tmp_path_factory: pytest.TempPathFactory) -> Circuit:
    return build_circuit(tmp_path_factory.mktemp("ezkl"))


@pytest.fixture
def network(circuit: Circuit) -> Iterator[dict[str, Any]]:
    """One Infernet node with four proving containers, honest and not."""
    containers = {m: EzklContainer(circuit, m) for m in ("honest", "tamper", "lie", "other_input")}
    for c in containers.values():
        c.start()
    specs = [ContainerSpec(m, c.url, generates_proofs=True) for m, c in containers.items()]
    node = FakeInfernetNode([*specs, ContainerSpec("plain", containers["honest"].url)])
    node.start()
    yield {"node": node, **containers}
    node.stop()
    for c in containers.values():
        c.stop()


def proof_entry(name: str, url: str, circuit: Circuit, price: float = 0.1) -> str:
    proof = (
        f'proof = {{ system = "ezkl", settings = "{circuit.settings}", vk = "{circuit.vk}", '
        f'srs = "{circuit.srs}" }}'
    )
    # timeout_s bounds a whole attempt, and proving takes long on a loaded machine.
    entry = backend_toml(name, url, price=price, levels=("proof",), extra=proof)
    return entry.replace('name = "llama-3.1-8b-instruct"', f'name = "{MODEL}"').replace(
        "timeout_s = 5", "timeout_s = 120"
    )


def ritual(name: str, node: FakeInfernetNode, container: str) -> RitualProofBackend:
    opts = RitualOptions(
        container=container, io="tgi", requires_proof=True, poll_interval_s=0.05
    )
    return RitualProofBackend(name, node.url, opts, timeout_s=60)


def intent(**kw: Any) -> Intent:
    prompt = json.dumps({"input": INPUT})
    return Intent(model=MODEL, prompt=prompt, max_tokens=8, verifiability="proof", **kw)


def test_an_honest_proof_is_verified_and_recorded(
    network: dict[str, Any], circuit: Circuit, tmp_path: Path
) -> None:
    node = network["node"]
    entry = proof_entry("ritual", node.url, circuit)
    backends = {"ritual": ritual("ritual", node, "honest")}
    with make_gateway(tmp_path, [entry], backends=backends) as gw:
        res = gw.infer(intent())
        assert json.loads(res.text)[0] == pytest.approx([-0.35, -0.075], abs=0.1)  # x W + b
        block = res.receipt.body["verification"]
        assert block["level"] == "proof" and block["system"] == "ezkl"
        assert block["checks"] == {"snark": "ok", "inputs_bound": "ok", "outputs_bound": "ok"}
        assert block["verifying_key_digest"].startswith("sha256:")
        assert gw.verify_ledger()


@pytest.mark.parametrize(
    ("container", "message"),
    [
        ("tamper", "does not verify"),
        ("lie", "not the proven output"),
        ("other_input", "not this request's inputs"),
    ],
)
def test_a_bad_proof_is_rejected_and_fails_over(
    network: dict[str, Any], circuit: Circuit, tmp_path: Path, container: str, message: str
) -> None:
    node = network["node"]
    entries = [
        proof_entry("bad", node.url, circuit, 0.1),
        proof_entry("good", node.url, circuit, 0.5),
    ]
    backends = {"bad": ritual("bad", node, container), "good": ritual("good", node, "honest")}
    with make_gateway(tmp_path, entries, backends=backends) as gw:
        res = gw.infer(intent())
        assert res.backend == "good"
        assert res.attempts[0].error_kind == "proof_failed" and message in res.attempts[0].error
    alone = {"bad": ritual("bad", node, container)}
    with (
        make_gateway(tmp_path, entries[:1], backends=alone) as gw,
        pytest.raises(AllBackendsFailed, match=message),
    ):
        gw.infer(intent())


def test_a_model_without_a_proof_system_has_no_route(
    network: dict[str, Any], circuit: Circuit, tmp_path: Path
) -> None:
    node = network["node"]
    plain = backend_toml("plain", node.url).replace(
        'name = "llama-3.1-8b-instruct"', f'name = "{MODEL}"'
    )
    claims = backend_toml("claims", node.url, levels=("proof",)).replace(
        'name = "llama-3.1-8b-instruct"', f'name = "{MODEL}"'
    )
    with make_gateway(tmp_path, [plain, claims]) as gw:
        with pytest.raises(NoRouteError, match="no proof system") as err:
            gw.infer(intent())
        assert {r.backend for r in err.value.rejections} == {"plain", "claims"}


def test_verifier_checks_bindings_without_the_network(circuit: Circuit) -> None:
    from ezkl_support import prove

    proof, outputs = prove(circuit, INPUT)
    verifier = EzklVerifier(circuit.settings, circuit.vk, circuit.srs)
    report = verifier.verify(ProofBundle("ezkl", proof, INPUT, outputs), INPUT)
    assert report.proof_digest.startswith("sha256:")
    with pytest.raises(ProofFailed, match="inputs"):
        verifier.verify(ProofBundle("ezkl", proof, INPUT, outputs), [[1.0, 1.0, 1.0]])
    with pytest.raises(ProofFailed, match="outputs"):
        verifier.verify(ProofBundle("ezkl", proof, INPUT, [[9.0, 9.0]]), INPUT)
    with pytest.raises(ProofFailed, match="expected an ezkl proof"):
        verifier.verify(ProofBundle("risc0", proof, INPUT, outputs), INPUT)


def _docs_proof_snippet() -> str:
    """The ``proof`` config block of docs/verifiability.md, as written."""
    docs = (Path(__file__).parents[2] / "docs" / "verifiability.md").read_text()
    section = docs.split("### `proof`", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_documented_proof_config_produces_and_verifies_a_proof(
    circuit: Circuit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' snippet, unchanged but for the node's address (tests reach only loopback)."""
    import shutil

    from intentmesh import Gateway

    snippet = _docs_proof_snippet()
    assert 'type = "ritual"' in snippet and 'base_url = "http://infernet-node:4000"' in snippet
    (tmp_path / "model").mkdir()
    for src, name in ((circuit.settings, "settings.json"), (circuit.vk, "vk.key"),
                      (circuit.srs, "kzg.srs")):
        shutil.copy(src, tmp_path / "model" / name)
    container = EzklContainer(circuit, "honest")
    container.start()
    node = FakeInfernetNode([ContainerSpec("ezkl-tiny", container.url, generates_proofs=True)])
    node.start()
    monkeypatch.chdir(tmp_path)  # the snippet's paths are relative: model/settings.json
    config = tmp_path / "intentmesh.toml"
    config.write_text(
        f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "k.pem"}"\n'
        + snippet.replace("http://infernet-node:4000", node.url)
    )
    try:
        with Gateway.from_config(config) as gw:
            res = gw.infer(intent())
            block = res.receipt.body["verification"]
            assert block["level"] == "proof" and block["system"] == "ezkl"
            assert block["checks"] == {"snark": "ok", "inputs_bound": "ok", "outputs_bound": "ok"}
            assert json.loads(res.text)[0] == pytest.approx([-0.35, -0.075], abs=0.1)
    finally:
        node.stop()
        container.stop()
