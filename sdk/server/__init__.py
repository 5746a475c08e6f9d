"""``intentmesh.server``: an OpenAI-compatible HTTP gateway over :class:`intentmesh.Gateway`.

Needs the ``server`` extra (``pip install 'intentmesh[server]'``)::

    from intentmesh import Gateway
    from intentmesh.server import create_app
    app = create_app(Gateway.from_config("intentmesh.toml"))   # any ASGI server

or ``intentmesh serve`` (:func:`serve_main`). Starlette and uvicorn are imported only when
:func:`create_app` or :func:`serve_main` is first used. See ``docs/gateway.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from intentmesh.server._budget import SpendBook
from intentmesh.server._config import (
    DEFAULT_PRESETS,
    KeyConfig,
    ServerConfig,
    load_configs,
    parse_configs,
)
from intentmesh.server._live import ThreadedServer

if TYPE_CHECKING:
    from intentmesh.server._app import create_app
    from intentmesh.server._serve import serve_main

__all__ = [
    "DEFAULT_PRESETS",
    "KeyConfig",
    "ServerConfig",
    "SpendBook",
    "ThreadedServer",
    "create_app",
    "load_configs",
    "parse_configs",
    "serve_main",
]

_LAZY = {"create_app": "intentmesh.server._app", "serve_main": "intentmesh.server._serve"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        try:
            module = import_module(_LAZY[name])
        except ImportError as exc:
            raise ImportError(
                f"intentmesh.server.{name} needs the server extra: pip install 'intentmesh[server]'"
            ) from exc
        return getattr(module, name)
    raise AttributeError(f"module 'intentmesh.server' has no attribute {name!r}")
