"""Adapter types by name, resolved lazily so optional dependencies load only when used."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any, Protocol, cast

from intentmesh.adapters.base import Backend
from intentmesh.config import BackendConfig
from intentmesh.errors import ConfigurationError

__all__ = ["BACKENDS", "BackendFactory", "backend_class", "build_backend", "register"]

# type name -> "module:Class". Adding a backend family is one file plus one line here.
BACKENDS: dict[str, str] = {
    "openai": "intentmesh.adapters.openai:OpenAIBackend",
    "chutes": "intentmesh.adapters.chutes:ChutesBackend",
    "targon": "intentmesh.adapters.targon:TargonBackend",
    "nineteen": "intentmesh.adapters.nineteen:NineteenBackend",
    "apex": "intentmesh.adapters.apex:ApexBackend",
    "bittensor-native": "intentmesh.adapters.bittensor_native:BittensorNativeBackend",
    "ritual": "intentmesh.adapters.ritual:RitualBackend",
    "akashchat": "intentmesh.adapters.akash:AkashChatBackend",
    "akashml": "intentmesh.adapters.akash:AkashMLBackend",
    "akash-vllm": "intentmesh.adapters.akash:AkashVLLMBackend",
    "ionet": "intentmesh.adapters.ionet:IONetBackend",
    "local": "intentmesh.adapters.local:LocalBackend",
    "nearai": "intentmesh.adapters.nearai:NearAIBackend",
    "phala": "intentmesh.adapters.phala:PhalaBackend",
}

# Extra needed for each type's optional dependencies, named in the ImportError we raise.
_EXTRAS: dict[str, str] = {"bittensor-native": "bittensor", "local": "local"}


class BackendFactory(Protocol):
    """An adapter class: builds a backend from its config entry."""

    @classmethod
    def from_config(cls, config: BackendConfig) -> Backend: ...


def register(type_name: str, target: str) -> None:
    """Register an adapter type (``"module:Class"``) under ``type_name``."""
    BACKENDS[type_name] = target
    backend_class.cache_clear()


@cache
def backend_class(type_name: str) -> type[BackendFactory]:
    """The adapter class for a config ``type``; unknown names list the known ones."""
    target = BACKENDS.get(type_name)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(f"unknown backend type {type_name!r}; known types: {known}")
    module_name, _, attr = target.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(type_name)
        hint = f"; install it with: pip install 'intentmesh[{extra}]'" if extra else ""
        raise ConfigurationError(f"backend type {type_name!r} is unavailable: {exc}{hint}") from exc
    return cast(type[BackendFactory], getattr(module, attr))


def build_backend(config: BackendConfig) -> Backend:
    """Instantiate the adapter for one config entry."""
    factory: Any = backend_class(config.type)
    return cast(Backend, factory.from_config(config))
