from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from verif_support import FakeTeeProvider

from intentmesh.testing import FakeOpenAIProvider


@pytest.fixture
def start() -> Iterator[Callable[..., Any]]:
    """Start fakes and stop them after the test: ``start(FakeTeeProvider(mode=...))``."""
    started: list[FakeOpenAIProvider] = []

    def run(provider: FakeOpenAIProvider) -> Any:
        provider.start()
        started.append(provider)
        return provider

    yield run
    for p in started:
        p.stop()


__all__ = ["FakeTeeProvider"]
