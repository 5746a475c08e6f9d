"""Adapter types by name, as data, resolved lazily so optional dependencies load only when used.

One :class:`BackendSpec` holds every fact about a network that lives outside its adapter file:
the class, the network label, the environment variables its key is read from, whether a key
alone enables it (zero-config) and the extra its dependencies come with. Adding an
OpenAI-compatible network is its adapter file plus one :func:`register` call (or one line in
:data:`BACKENDS`); ``docs/architecture.md`` walks through it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from types import MappingProxyType
from typing import Any, Protocol, cast

from intentmesh.adapters.base import Backend
from intentmesh.config import BackendConfig
from intentmesh.errors import ConfigurationError

__all__ = [
    "BACKENDS",
    "BackendFactory",
    "BackendSpec",
    "backend_class",
    "backend_specs",
    "build_backend",
    "key_env_of",
    "register",
]


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """One adapter type: ``target`` is ``"module:Class"``.

    ``network`` labels the backends zero-config adds. ``key_env`` names the variables the API
    key is read from, in order (the first is the default ``api_key_env``; the others are
    aliases). ``zero_config``: a set key alone adds a backend of this type to ``Gateway()``;
    only for networks that publish prices (or are free), or there is nothing to route on.
    ``extra`` is the ``pip install 'intentmesh[extra]'`` its dependencies need.
    """

    target: str
    network: str = ""
    key_env: tuple[str, ...] = ()
    zero_config: bool = False
    extra: str | None = None


_A = "intentmesh.adapters."

# type name -> spec. Adding a backend family is one file plus one entry here (or register()).
BACKENDS: dict[str, BackendSpec] = {
    "openai": BackendSpec(_A + "openai:OpenAIBackend"),
    "chutes": BackendSpec(
        _A + "chutes:ChutesBackend", "bittensor", ("CHUTES_API_KEY",), zero_config=True
    ),
    "targon": BackendSpec(_A + "targon:TargonBackend", "bittensor", ("TARGON_API_KEY",)),
    "nineteen": BackendSpec(_A + "nineteen:NineteenBackend", "bittensor", ("NINETEEN_API_KEY",)),
    "apex": BackendSpec(_A + "apex:ApexBackend", "bittensor", ("APEX_API_KEY",)),
    "bittensor-native": BackendSpec(
        _A + "bittensor_native:BittensorNativeBackend", "bittensor", extra="bittensor"
    ),
    "ritual": BackendSpec(_A + "ritual:RitualBackend", "ritual"),
    "akashchat": BackendSpec(
        _A + "akash:AkashChatBackend",
        "akash",
        ("AKASH_API_KEY", "AKASHCHAT_API_KEY"),
        zero_config=True,
    ),
    "akashml": BackendSpec(
        _A + "akash:AkashMLBackend", "akash", ("AKASHML_API_KEY",), zero_config=True
    ),
    "akash-vllm": BackendSpec(_A + "akash:AkashVLLMBackend", "akash", ("VLLM_API_KEY",)),
    "ionet": BackendSpec(
        _A + "ionet:IONetBackend",
        "ionet",
        ("IOINTELLIGENCE_API_KEY", "IONET_API_KEY"),
        zero_config=True,
    ),
    "local": BackendSpec(_A + "local:LocalBackend", "local", extra="local"),
    "nearai": BackendSpec(_A + "nearai:NearAIBackend", "nearai", ("NEARAI_CLOUD_API_KEY",)),
    "phala": BackendSpec(_A + "phala:PhalaBackend", "phala", ("REDPILL_API_KEY",)),
    "tinfoil": BackendSpec(_A + "tinfoil:TinfoilBackend", "tinfoil", ("TINFOIL_API_KEY",)),
}


class BackendFactory(Protocol):
    """An adapter class: builds a backend from its config entry."""

    @classmethod
    def from_config(cls, config: BackendConfig) -> Backend: ...


def register(
    type_name: str,
    target: str | BackendSpec,
    *,
    network: str = "",
    key_env: str | tuple[str, ...] = (),
    zero_config: bool = False,
    extra: str | None = None,
) -> BackendSpec:
    """Register (or replace) the adapter type ``type_name``; returns its :class:`BackendSpec`.

    ``target`` is ``"module:Class"`` (imported on first use) or a whole spec; the keywords
    fill a spec as in :class:`BackendSpec`. A config entry ``type = "<type_name>"`` then builds
    this class, and with ``zero_config=True`` a set key alone adds it to ``Gateway()``.
    """
    if isinstance(target, BackendSpec):
        spec = target
    else:
        if ":" not in target:
            raise ConfigurationError(f"register({type_name!r}): target must be 'module:Class'")
        keys = (key_env,) if isinstance(key_env, str) else tuple(key_env)
        spec = BackendSpec(target, network, keys, zero_config, extra)
    BACKENDS[type_name] = spec
    backend_class.cache_clear()
    return spec


def backend_specs() -> Mapping[str, BackendSpec]:
    """Every registered adapter type and its spec (read-only; change it with :func:`register`)."""
    return MappingProxyType(BACKENDS)


def key_env_of(type_name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The variable a ``type_name`` backend reads its key from when the config names none:
    the first of the spec's ``key_env`` that is set, else the first (None without any)."""
    spec = BACKENDS.get(type_name)
    if spec is None or not spec.key_env:
        return None
    env = os.environ if environ is None else environ
    return next((name for name in spec.key_env if env.get(name)), spec.key_env[0])


@cache
def backend_class(type_name: str) -> type[BackendFactory]:
    """The adapter class for a config ``type``; unknown names list the known ones."""
    spec = BACKENDS.get(type_name)
    if spec is None:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigurationError(
            f"unknown backend type {type_name!r}; known types: {known}", key="type"
        )
    module_name, _, attr = spec.target.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with: pip install 'intentmesh[{spec.extra}]'" if spec.extra else ""
        raise ConfigurationError(
            f"backend type {type_name!r} is unavailable: {exc}{hint}", key="type"
        ) from exc
    try:
        return cast(type[BackendFactory], getattr(module, attr))
    except AttributeError:
        raise ConfigurationError(
            f"backend type {type_name!r}: {module_name} has no class {attr!r}", key="type"
        ) from None


def build_backend(config: BackendConfig) -> Backend:
    """Instantiate the adapter for one config entry."""
    factory: Any = backend_class(config.type)
    return cast(Backend, factory.from_config(config))
