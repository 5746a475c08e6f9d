"""Fixtures for the core: loopback providers and a gateway configured for them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from core_support import GatewayFactory, backend_toml

from intentmesh import Gateway
from intentmesh.config import parse_config
from intentmesh.testing import FakeOpenAIProvider


@pytest.fixture
def providers() -> Iterator[dict[str, FakeOpenAIProvider]]:
    """Three providers serving the same model: cheap, mid and pricey."""
    made = {name: FakeOpenAIProvider(["fake-llama"]) for name in ("cheap", "mid", "pricey")}
    for p in made.values():
        p.start()
    yield made
    for p in made.values():
        p.stop()


@pytest.fixture
def make_gateway(
    providers: dict[str, FakeOpenAIProvider], tmp_path: Path
) -> Iterator[GatewayFactory]:
    """Build a gateway over the three providers; keyword args tweak backends and routing."""
    made: list[Gateway] = []
    prices = {"cheap": (0.1, 0.2), "mid": (0.5, 1.0), "pricey": (2.0, 4.0)}

    def build(
        routing: str = "backoff_s = 0.01\n",
        per_backend: dict[str, dict[str, Any]] | None = None,
        **gateway_kwargs: Any,
    ) -> Gateway:
        parts = [
            f'[receipts]\nledger = "{tmp_path / "ledger.sqlite3"}"\n'
            f'key = "{tmp_path / "key.pem"}"\n',
            "[routing]\n" + routing,
        ]
        for name, provider in providers.items():
            opts = {
                "input_price": prices[name][0],
                "output_price": prices[name][1],
                **(per_backend or {}).get(name, {}),
            }
            parts.append(backend_toml(name, provider.base_url, **opts))
        gw = Gateway(parse_config("\n".join(parts)), **gateway_kwargs)
        made.append(gw)
        return gw

    yield build
    for gw in made:
        gw.close()
