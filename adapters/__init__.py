"""Backend adapters: one file per backend family behind the small interface in ``base``."""

from intentmesh.adapters._registry import build_backend, register
from intentmesh.adapters.base import (
    Backend,
    ChatRequest,
    Chunk,
    Completion,
    ModelListing,
    PriceDiscovery,
    Usage,
)

__all__ = [
    "Backend",
    "ChatRequest",
    "Chunk",
    "Completion",
    "ModelListing",
    "PriceDiscovery",
    "Usage",
    "build_backend",
    "register",
]
