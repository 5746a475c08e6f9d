"""The demo network's fake providers, a gateway over them, and a live gateway server."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from intentmesh import Gateway
from intentmesh.config import parse_config
from intentmesh.testing import DemoNetwork

MODEL = "llama-3.1-8b-instruct"


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(m) is None for m in modules)


# The langchain extra and the test-only langchain packages are optional here.
collect_ignore = [
    name
    for name, needs in {
        "test_langchain_standard.py": ("langchain_core", "langchain_tests"),
        "test_langchain_chat_intentmesh.py": ("langchain_core",),
        "test_langchain_chatopenai.py": ("langchain_openai",),
    }.items()
    if _missing(*needs)
]


@pytest.fixture
def demo() -> Iterator[DemoNetwork]:
    with DemoNetwork(latency_scale=0.01) as network:
        yield network


@pytest.fixture
def gateway(demo: DemoNetwork, tmp_path: Path) -> Iterator[Gateway]:
    receipts = f'[receipts]\nledger = "{tmp_path / "ledger.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    gw = Gateway(parse_config(receipts + "[routing]\nbackoff_s = 0.0\n" + demo.config_toml()))
    yield gw
    gw.close()


@pytest.fixture
async def agateway(gateway: Gateway) -> AsyncIterator[Gateway]:
    """The gateway for async tests: closes the connections it opened on the test's loop."""
    yield gateway
    await gateway.aclose()


@pytest.fixture
def server(gateway: Gateway) -> Iterator[object]:
    from intentmesh.server import ThreadedServer, create_app

    with ThreadedServer(create_app(gateway)) as live:
        yield live
