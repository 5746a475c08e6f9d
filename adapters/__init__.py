"""Backend adapters: one file per backend family behind the small interface in ``base``."""

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
]
