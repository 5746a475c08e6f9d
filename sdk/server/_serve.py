"""``serve_main``: run the gateway under uvicorn (what ``intentmesh serve`` calls)."""

from __future__ import annotations

import gc
import math
import os
from pathlib import Path

from starlette.applications import Starlette

from intentmesh._gateway import Gateway
from intentmesh._zeroconf import with_zero_config
from intentmesh.fleet import open_fleet
from intentmesh.server._app import create_app
from intentmesh.server._budget import SpendBook
from intentmesh.server._config import ServerConfig, load_configs

__all__ = ["app_from_env", "serve_main"]

_CONFIG_ENV = "INTENTMESH_CONFIG"
GC_FIRST_GENERATION = 5000
"""Net new container objects between two collections of the youngest GC generation in a
server process (CPython's default is 700)."""


def serve_main(
    host: str | None = None,
    port: int | None = None,
    config: str | os.PathLike[str] | None = None,
    workers: int | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; in-flight streams drain for ``[server] drain_timeout_s``.

    ``host``, ``port`` and ``workers`` override the ``[server]`` section of ``config``
    (discovered as ``Gateway()`` does when None).
    """
    gateway_config, server = load_configs(config)
    server = server.model_copy(
        update={k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v}
    )
    fleet = open_fleet(gateway_config.state)  # an unreachable store fails here, clearly
    if fleet is not None:
        fleet.close()
    # re-check workers against budgets
    ServerConfig.model_validate(server.model_dump(), context={"state": fleet is not None})
    if server.budget_db != ":memory:" and fleet is None:
        SpendBook(server.budget_db).release_all_reservations()
    if server.workers > 1:
        if config is not None:
            os.environ[_CONFIG_ENV] = str(Path(config).resolve())
        _run("intentmesh.server._serve:app_from_env", server, factory=True)
    else:
        app = build_app(config)
        _tune_gc()
        _run(app, server)


def _run(app: Starlette | str, server: ServerConfig, factory: bool = False) -> None:
    import uvicorn

    from intentmesh.server._wire import http_protocol

    uvicorn.run(
        app,
        http=http_protocol(),  # one socket write per response (_wire.py)
        host=server.host,
        port=server.port,
        workers=server.workers if factory else None,
        factory=factory,
        timeout_graceful_shutdown=math.ceil(server.drain_timeout_s),
        log_level="info",
        access_log=server.access_log,
    )


def build_app(config: str | os.PathLike[str] | None = None) -> Starlette:
    """The app for a config file: a Gateway it owns and closes on shutdown."""
    gateway_config, server = load_configs(config)
    if gateway_config.otel.enabled:
        from intentmesh.telemetry import configure_otlp

        configure_otlp()  # export to $OTEL_EXPORTER_OTLP_ENDPOINT unless already set up
    # Like Gateway() and the CLI: the embedded local default and keyed networks join the config.
    gateway = Gateway(with_zero_config(gateway_config))
    return create_app(gateway, config=server, close_gateway=True)


def app_from_env() -> Starlette:
    """Factory for uvicorn workers: the config named by ``$INTENTMESH_CONFIG`` (or discovered)."""
    app = build_app(os.environ.get(_CONFIG_ENV) or None)
    _tune_gc()
    return app


def _tune_gc() -> None:
    """Tune the cyclic GC of a process that serves requests (docs/gateway.md#performance).

    What start-up built (modules, config, the gateway) is frozen out of the collector's
    scans, and the youngest generation is collected after :data:`GC_FIRST_GENERATION` net
    new objects rather than 700: with dozens of requests in flight, their live objects
    crossed 700 many times a second and were scanned and promoted again and again. Reference
    cycles are still collected; a higher threshold already set is kept.
    """
    gc.collect()
    gc.freeze()
    first, second, third = gc.get_threshold()
    gc.set_threshold(max(first, GC_FIRST_GENERATION), second, third)
