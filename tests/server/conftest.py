"""A live gateway on loopback (uvicorn in a thread) over the demo network's fake providers."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_support import ServeFactory

from intentmesh import Gateway
from intentmesh.config import parse_config
from intentmesh.server import ServerConfig, ThreadedServer, create_app
from intentmesh.testing import DemoNetwork

# These drive the server with the official openai client (a test dependency, not a runtime one).
_NEED_OPENAI = [
    "test_server_openai_client.py",
    "test_server_keys.py",
    "test_server_lifecycle.py",
    "test_server_load.py",
]
collect_ignore = [] if importlib.util.find_spec("openai") else _NEED_OPENAI


@pytest.fixture
def demo() -> Iterator[DemoNetwork]:
    """Three fake providers: chutes (cheap, slow), akash (mid), ionet (fast, pricey)."""
    with DemoNetwork(latency_scale=0.01) as network:
        yield network


@pytest.fixture
def gateway(demo: DemoNetwork, tmp_path: Path) -> Iterator[Gateway]:
    receipts = f'[receipts]\nledger = "{tmp_path / "ledger.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    routing = "[routing]\nbackoff_s = 0.0\nbackoff_max_s = 0.0\n"
    gw = Gateway(parse_config(receipts + routing + demo.config_toml()))
    yield gw
    gw.close()


@pytest.fixture
def serve(gateway: Gateway) -> Iterator[ServeFactory]:
    """``serve(keys=..., config=ServerConfig(...))`` starts a gateway server; stopped after."""
    started: list[ThreadedServer] = []

    def start(gw: Gateway | None = None, **kwargs: Any) -> ThreadedServer:
        kwargs.setdefault("config", ServerConfig())
        server = ThreadedServer(create_app(gw or gateway, **kwargs)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def server(serve: ServeFactory) -> ThreadedServer:
    return serve()
