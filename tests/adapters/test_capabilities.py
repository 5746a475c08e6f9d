"""Optional backend capabilities are declared in ``adapters.base`` and found with ``isinstance``."""

from __future__ import annotations

from typing import Any

import pytest

from intentmesh.adapters import (
    Backend,
    ChatRequest,
    Completion,
    DiscoversPrices,
    HasEndpoint,
    HealthCheck,
    ListsModels,
    ProvesCompletions,
)
from intentmesh.adapters.base import Chunk


@pytest.mark.parametrize(
    ("type_name", "lists", "discovers", "health", "options"),
    [
        ("openai", True, False, False, {}),
        ("chutes", True, True, False, {}),
        ("ionet", True, True, False, {}),
        ("akashchat", True, True, False, {}),
        ("ritual", False, False, True, {"container": "llm"}),
    ],
)
async def test_shipped_adapters_declare_their_capabilities(
    make_backend: Any,
    type_name: str,
    lists: bool,
    discovers: bool,
    health: bool,
    options: dict[str, Any],
) -> None:
    backend = make_backend(type_name, "http://127.0.0.1:9/v1", key="k", **options)
    assert isinstance(backend, Backend) and isinstance(backend, HasEndpoint)
    assert backend.endpoint_host == "127.0.0.1"
    assert isinstance(backend, ListsModels) is lists
    assert (isinstance(backend, DiscoversPrices) and backend.discovers_prices) is discovers
    assert isinstance(backend, HealthCheck) is health


class _Minimal:
    """Only the required interface: no host, no list, no health, no proofs."""

    name = "minimal"

    async def acomplete(self, request: ChatRequest) -> Completion:
        return Completion("ok", "stop", None)

    async def astream(self, request: ChatRequest) -> Any:
        yield Chunk("ok", "stop")

    async def aclose(self) -> None:
        return None


async def test_a_minimal_backend_has_no_optional_capability() -> None:
    from intentmesh._probe import probe_backend

    b = _Minimal()
    assert isinstance(b, Backend)
    for capability in (HasEndpoint, ListsModels, DiscoversPrices, HealthCheck, ProvesCompletions):
        assert not isinstance(b, capability), capability.__name__
    report = await probe_backend(b, ["m"], 1.0)
    assert report["ok"] is None and "cannot be probed" in report["error"]
