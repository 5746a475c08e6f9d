"""``intentmesh serve``: a thin wrapper over ``intentmesh.server.serve_main`` (imported lazily)."""

from __future__ import annotations

from typing import Annotated

import typer

from intentmesh.cli._common import ConfigOpt, VerboseOpt, options
from intentmesh.cli._errors import CliError

HostOpt = Annotated[
    str | None,
    typer.Option("--host", help="Interface to listen on [default: the config's [server] host].",
                 show_default=False),
]  # fmt: skip
PortOpt = Annotated[
    int | None,
    typer.Option("--port", min=0, max=65535, help="Port [default: the config's [server] port].",
                 show_default=False),
]  # fmt: skip
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Worker processes [default: the config's].",
                 show_default=False),
]  # fmt: skip


def serve(
    ctx: typer.Context,
    host: HostOpt = None,
    port: PortOpt = None,
    workers: WorkersOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the gateway as an OpenAI-compatible HTTP endpoint (needs intentmesh[server])."""
    opts = options(ctx, config, False, verbose)
    try:
        from intentmesh.server import serve_main  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise CliError(
            f"the HTTP server is not available ({exc}); "
            "install it with: pip install 'intentmesh[server]'"
        ) from None
    serve_main(host=host, port=port, config=opts.config, workers=workers)
