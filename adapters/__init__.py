"""Backend adapters: one file per backend family behind the small interface in ``base``.

``register(type_name, "module:Class", network=..., key_env=..., zero_config=...)`` adds an
adapter type (see ``docs/architecture.md``, "Adding a backend"); ``build_backend(config)``
builds the adapter a config entry names.
"""

from intentmesh.adapters._http import add_secrets, loads_json
from intentmesh.adapters._registry import BackendSpec, backend_specs, build_backend, register
from intentmesh.adapters.base import (
    Backend,
    ChatRequest,
    Chunk,
    Completion,
    DiscoversPrices,
    HasEndpoint,
    HealthCheck,
    ListsModels,
    ModelListing,
    PriceDiscovery,
    ProofBundle,
    ProvesCompletions,
    Usage,
)

__all__ = [
    "Backend",
    "BackendSpec",
    "ChatRequest",
    "Chunk",
    "Completion",
    "DiscoversPrices",
    "HasEndpoint",
    "HealthCheck",
    "ListsModels",
    "ModelListing",
    "PriceDiscovery",
    "ProofBundle",
    "ProvesCompletions",
    "Usage",
    "backend_specs",
    "add_secrets",
    "build_backend",
    "loads_json",
    "register",
]
