"""Fixtures for the local server: a tiny random model made on the spot, served over real HTTP."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def port() -> int:
    """A loopback port nothing listens on."""
    return _free_port()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder (seed 0), shared by the whole session."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from intentmesh.local_backend.tiny import create_tiny_model

    return create_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def tiny_engine(tiny_model: Path):  # type: ignore[no-untyped-def]
    from intentmesh.local_backend._torch_engine import TorchEngine

    return TorchEngine.load(tiny_model, model_id="tiny")


@pytest.fixture(scope="session")
def tiny_url(tiny_engine) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The torch engine with the tiny model behind uvicorn on a loopback port (in a thread)."""

    from intentmesh.local_backend._app import create_app
    from intentmesh.server import ThreadedServer

    app = create_app(tiny_engine, served_model_names=["tiny", "tiny-alias"])
    server = ThreadedServer(app).start(timeout_s=30)
    yield server.url
    server.stop()
