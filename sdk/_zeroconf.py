"""Zero-config networks: an API key in a network's usual environment variable enables it.

``Gateway()`` (no explicit config) adds a backend for each network below whose key is set and
that the config does not already cover (by backend type or name). The backend has no
configured models: its models and prices come from live discovery. Set
``INTENTMESH_ZEROCONF=0`` to turn this off. An explicit config always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from intentmesh.config import BackendConfig, GatewayConfig

__all__ = ["ZERO_CONFIG", "ZeroConfNetwork", "with_zero_config", "zero_config_backends"]


@dataclass(frozen=True, slots=True)
class ZeroConfNetwork:
    """A network enabled by its key alone: backend name and type, label, key variables."""

    name: str
    type: str
    network: str
    env: tuple[str, ...]


# Only networks that publish prices (or are free): without a price there is nothing to route.
ZERO_CONFIG: tuple[ZeroConfNetwork, ...] = (
    ZeroConfNetwork("chutes", "chutes", "bittensor", ("CHUTES_API_KEY",)),
    ZeroConfNetwork("akashchat", "akashchat", "akash", ("AKASH_API_KEY", "AKASHCHAT_API_KEY")),
    ZeroConfNetwork("akashml", "akashml", "akash", ("AKASHML_API_KEY",)),
    ZeroConfNetwork("ionet", "ionet", "ionet", ("IOINTELLIGENCE_API_KEY", "IONET_API_KEY")),
)


def zero_config_backends(
    config: GatewayConfig, environ: Mapping[str, str] | None = None
) -> list[BackendConfig]:
    """The backends the environment's keys enable that ``config`` does not already have."""
    env = os.environ if environ is None else environ
    if env.get("INTENTMESH_ZEROCONF", "1").lower() in ("0", "false", "no", "off"):
        return []
    taken = {b.type for b in config.backends} | {b.name for b in config.backends}
    found = []
    for net in ZERO_CONFIG:
        key_env = next((name for name in net.env if env.get(name)), None)
        if key_env is None or net.type in taken or net.name in taken:
            continue
        found.append(
            BackendConfig(name=net.name, type=net.type, network=net.network, api_key_env=key_env)
        )
    return found


def with_zero_config(
    config: GatewayConfig, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """``config`` plus the zero-config backends (unchanged when there are none)."""
    extra = zero_config_backends(config, environ)
    if not extra:
        return config
    return config.model_copy(update={"backends": [*config.backends, *extra]})
