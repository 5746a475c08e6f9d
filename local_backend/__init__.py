"""The local OpenAI-compatible inference server: torch, llama.cpp and vLLM engines.

Importing this package is cheap: torch, transformers, llama_cpp and vllm load only when an engine
does. ``serve()`` runs a server in the foreground; :class:`LocalServer` manages one in the
background (start, reuse, stale records, stop).
"""

from intentmesh.local_backend._engines import cuda_available, pick_engine
from intentmesh.local_backend._errors import (
    EngineNotInstalled,
    LocalModelNotFound,
    PortInUse,
    ServerStartFailed,
    ServerStartTimeout,
)
from intentmesh.local_backend._lifecycle import LocalServer, ServerRecord, data_dir
from intentmesh.local_backend._models import (
    DEFAULT_MODEL,
    DEFAULT_MODEL_NAME,
    ModelRef,
    default_model_path,
    resolve_model,
)
from intentmesh.local_backend._serve import DEFAULT_HOST, DEFAULT_PORT, serve

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_PORT",
    "EngineNotInstalled",
    "LocalModelNotFound",
    "LocalServer",
    "ModelRef",
    "PortInUse",
    "ServerRecord",
    "ServerStartFailed",
    "ServerStartTimeout",
    "cuda_available",
    "data_dir",
    "default_model_path",
    "pick_engine",
    "resolve_model",
    "serve",
]
