"""spot with TOPLOC: the torch server commits to its answer's final hidden states; the reference
server re-runs the answer's ids through its own copy of the model and checks the commitments
with toploc's verifier. Real servers (uvicorn on loopback) on tiny random Llamas made on the spot:
the same weights pass, other weights or other ids fail with the check named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from verif_support import MODEL, backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Intent
from intentmesh.adapters.local import LocalBackend
from intentmesh.local_backend import LocalServer
from intentmesh.verify import SpotPolicy

pytest.importorskip("torch")
pytest.importorskip("transformers")
try:  # the PyPI wheel's compiled part is built for one torch; see docs/verifiability.md
    import toploc  # noqa: F401
except ImportError as exc:
    pytest.skip(f"toploc does not load here: {exc}", allow_module_level=True)

SERVED = "fake-llama"  # the id verif_support maps MODEL to


def _serve(engine: Any) -> Iterator[str]:

    from intentmesh.local_backend._app import create_app
    from intentmesh.server import ThreadedServer

    app = create_app(engine, served_model_names=[SERVED])
    server = ThreadedServer(app).start(timeout_s=30)
    yield server.url
    server.stop()


def _engine(folder: Path) -> Any:
    from intentmesh.local_backend._torch_engine import TorchEngine

    return TorchEngine.load(folder, model_id=SERVED)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from intentmesh.local_backend.tiny import create_tiny_model

    root = tmp_path_factory.mktemp("toploc")
    return {
        "same": create_tiny_model(root / "same", seed=0),
        "other": create_tiny_model(root / "other", seed=1),  # other weights, same tokenizer
    }


@pytest.fixture(scope="module")
def reference(models: dict[str, Path]) -> Iterator[str]:
    yield from _serve(_engine(models["same"]))


@pytest.fixture(scope="module")
def honest(models: dict[str, Path]) -> Iterator[str]:
    yield from _serve(_engine(models["same"]))  # its own copy of the same weights


@pytest.fixture(scope="module")
def cheat(models: dict[str, Path]) -> Iterator[str]:
    yield from _serve(_engine(models["other"]))


def _chat(url: str, **extra: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": "Hello! How are you?"}],
            "max_tokens": 40, "temperature": 0, **extra}  # fmt: skip
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _check(url: str, token_ids: list[int], proofs: list[str]) -> dict[str, Any]:
    ask = {"toploc_verify": {"token_ids": token_ids, "proofs": proofs}}
    return dict(_chat(url, intentmesh=ask)["choices"][0]["toploc_verification"])


def test_the_server_commits_and_the_reference_accepts_the_same_model(
    honest: str, reference: str
) -> None:
    choice = _chat(honest, intentmesh={"toploc": True})["choices"][0]
    ids, proofs = choice["token_ids"], choice["toploc_proofs"]
    assert len(ids) == 40 and len(proofs) == 2  # batches of 32 tokens
    verdict = _check(reference, ids, proofs)
    assert verdict["verified"] is True, verdict
    assert all(b["passed"] and b["exp_mismatches"] == 0 for b in verdict["batches"])


def test_other_weights_or_other_ids_fail_the_check(honest: str, cheat: str, reference: str) -> None:
    other = _chat(cheat, intentmesh={"toploc": True})["choices"][0]
    verdict = _check(reference, other["token_ids"], other["toploc_proofs"])
    assert verdict["verified"] is False and "outside the thresholds" in verdict["reason"]
    mine = _chat(honest, intentmesh={"toploc": True})["choices"][0]
    ids = list(mine["token_ids"])
    ids[5] = (ids[5] + 1) % 384  # one token swapped after committing
    assert _check(reference, ids, mine["toploc_proofs"])["verified"] is False
    short = _check(reference, mine["token_ids"], mine["toploc_proofs"][:1])
    assert short["verified"] is False and "expected 2" in short["reason"]


def test_an_engine_without_hidden_states_refuses_the_field() -> None:
    from starlette.testclient import TestClient

    from intentmesh.local_backend._app import create_app

    class Bytes:  # a token-level engine that is not the torch engine
        model_id, context_length, eos_token_ids = "bytes", 64, frozenset({0})

        def encode_chat(self, messages: Any) -> list[int]:
            return list(b"hi")

        def encode_prompt(self, prompt: str) -> list[int]:
            return list(prompt.encode())

        def decode(self, token_ids: Any) -> str:
            return bytes(token_ids).decode()

        def sample(self, prompt_ids: Any, params: Any) -> Iterator[int]:
            yield 0

    with TestClient(create_app(Bytes())) as client:  # type: ignore[arg-type]
        for ext, field in (({"toploc": True}, "intentmesh.toploc"),
                           ({"toploc_verify": {"token_ids": [1], "proofs": []}},
                            "intentmesh.toploc_verify")):  # fmt: skip
            r = client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "x"}], "intentmesh": ext})  # fmt: skip
            assert r.status_code == 400
            assert r.json()["error"]["param"] == field and "torch" in r.json()["error"]["message"]


class _Running(LocalBackend):
    """The local adapter on a server this test already runs (no lifecycle management)."""

    async def ensure_ready(self) -> None:
        return None


def _local(name: str, url: str, *, toploc: bool) -> LocalBackend:
    port = int(url.rsplit(":", 1)[1])
    return _Running(name, LocalServer(host="127.0.0.1", port=port), timeout_s=60, toploc=toploc)


def _gateway(tmp_path: Path, answering: str, reference: str, **policy: Any) -> Any:
    entries = [backend_toml("edge", answering, price=0.1),
               backend_toml("local", reference, price=0.0)]  # fmt: skip
    backends = {"edge": _local("edge", answering, toploc=True),
                "local": _local("local", reference, toploc=False)}  # fmt: skip
    gw = make_gateway(tmp_path, entries, backends=backends)
    gw.verification.spot = SpotPolicy(**{"rate": 1.0, **policy})
    return gw


def intent() -> Intent:
    return Intent(model=MODEL, prompt="Hello!", max_tokens=12, verifiability="spot", seed=3)


def test_spot_records_a_toploc_comparison_for_an_honest_answer(
    honest: str, reference: str, tmp_path: Path
) -> None:
    with _gateway(tmp_path, honest, reference) as gw:
        res = gw.infer(intent())
        assert res.backend == "edge"
        block = res.receipt.body["verification"]
        assert block["comparison"] == "toploc" and block["result"] == "agreed"
        assert block["toploc"]["verified"] is True
        assert gw.health.penalty("edge") == 0
        assert gw.verify_ledger()


def test_spot_rejects_commitments_from_other_weights(
    cheat: str, reference: str, tmp_path: Path
) -> None:
    with _gateway(tmp_path, cheat, reference) as gw:
        res = gw.infer(intent())
        block = res.receipt.body["verification"]
        assert block["comparison"] == "toploc" and block["result"] == "disagreed"
        assert block["toploc"]["verified"] is False
        assert gw.health.penalty("edge") > 0
    strict = _gateway(tmp_path / "fail", cheat, reference, fail=True)
    with strict, pytest.raises(AllBackendsFailed, match=r"spot check \(toploc\)"):
        strict.infer(intent())


def test_without_commitments_spot_stays_exact(honest: str, reference: str, tmp_path: Path) -> None:
    entries = [backend_toml("edge", honest, price=0.1),
               backend_toml("local", reference, price=0.0)]  # fmt: skip
    backends = {"edge": _local("edge", honest, toploc=False),
                "local": _local("local", reference, toploc=False)}  # fmt: skip
    with make_gateway(tmp_path, entries, backends=backends) as gw:
        gw.verification.spot = SpotPolicy(rate=1.0)
        block = gw.infer(intent()).receipt.body["verification"]
        assert block["comparison"] == "exact" and block["result"] == "agreed"
        assert "toploc" not in block


async def test_a_server_that_drops_the_field_is_an_error_not_a_silent_answer() -> None:
    from intentmesh.adapters.base import ChatRequest
    from intentmesh.errors import MalformedResponse
    from intentmesh.testing import FakeOpenAIProvider

    plain = FakeOpenAIProvider([SERVED], reply=lambda _p: "four")  # ignores `intentmesh`, as vLLM
    plain.start()
    try:
        backend = _local("edge", plain.base_url.removesuffix("/v1"), toploc=True)
        request = ChatRequest(model=SERVED, messages=[{"role": "user", "content": "2+2?"}])
        with pytest.raises(MalformedResponse, match=r"intentmesh\.toploc"):
            await backend.acomplete(request)
        await backend.aclose()
    finally:
        plain.stop()


def test_toploc_with_an_engine_that_cannot_commit_is_a_config_error() -> None:
    from intentmesh.config import BackendConfig
    from intentmesh.errors import ConfigurationError

    for engine in ("xllamacpp", "llamacpp", "vllm"):
        entry = BackendConfig(name="l", type="local", engine=engine, toploc=True)  # type: ignore[call-arg]
        with pytest.raises(ConfigurationError, match="toploc = true needs engine"):
            LocalBackend.from_config(entry)


def test_streams_and_completions_carry_proofs_and_unknown_keys_are_refused(honest: str) -> None:
    import json

    body = {"prompt": "Hello", "max_tokens": 5, "temperature": 0, "stream": True,
            "intentmesh": {"toploc": True}}  # fmt: skip
    with httpx.stream("POST", f"{honest}/v1/completions", json=body, timeout=60) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    last = json.loads(events[-2])["choices"][0]
    assert len(last["token_ids"]) == 5 and len(last["toploc_proofs"]) == 1
    r2 = httpx.post(f"{honest}/v1/completions", json={"prompt": "x", "intentmesh": {"tplc": 1}})
    assert r2.status_code == 400 and r2.json()["error"]["param"].startswith("intentmesh")


def test_the_xllamacpp_routes_refuse_the_field_before_the_engine_runs() -> None:
    from starlette.testclient import TestClient

    from intentmesh.local_backend._app import create_app

    class Native:  # the NativeEngine protocol; handle() must never be reached here
        model_id, context_length = "native", 64

        def handle(self, kind: Any, body: Any, on_chunk: Any) -> dict[str, Any]:
            raise AssertionError("the engine ran")

    with TestClient(create_app(Native())) as client:  # type: ignore[arg-type]
        r = client.post("/v1/completions", json={"prompt": "x", "intentmesh": {"toploc": True}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "intentmesh.toploc"
        assert "xllamacpp" in r.json()["error"]["message"]
