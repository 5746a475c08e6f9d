"""Helpers for the network adapter tests: build a backend of a type against a running fake."""

from __future__ import annotations

from typing import Any

import pytest

from intentmesh.adapters._registry import build_backend
from intentmesh.adapters.base import Backend


@pytest.fixture
async def make_backend(monkeypatch: pytest.MonkeyPatch):
    """``make_backend(type, base_url, key=None, **options)`` -> the configured adapter;
    every backend made is closed after the test."""
    made: list[Any] = []

    def make(type_name: str, base_url: str | None, key: str | None = None, **extra: Any) -> Any:
        from intentmesh.config import BackendConfig

        env = f"TEST_{type_name.upper().replace('-', '_')}_KEY"
        if key is not None:
            monkeypatch.setenv(env, key)
        data: dict[str, Any] = {"name": type_name, "type": type_name, "api_key_env": env}
        if base_url:
            data["base_url"] = base_url
        data.update(extra)
        backend: Backend = build_backend(BackendConfig.model_validate(data))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()
