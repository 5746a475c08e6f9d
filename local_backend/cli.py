"""``intentmesh local``: serve a model in the foreground, or start/stop/inspect a background one."""

from __future__ import annotations

from typing import Annotated

import typer

from intentmesh.errors import IntentmeshError
from intentmesh.local_backend._lifecycle import LocalServer
from intentmesh.local_backend._serve import DEFAULT_HOST, DEFAULT_PORT, serve

__all__ = ["app"]

app = typer.Typer(help="Run a local OpenAI-compatible inference server.", no_args_is_help=True)

ModelOpt = Annotated[
    str | None,
    typer.Option(help="Model folder, .gguf file or cached HF id (default: embedded SmolLM2)."),
]
EngineOpt = Annotated[str, typer.Option(help="auto, xllamacpp, llamacpp, torch or vllm.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(min=1, help="CPU threads for the llama.cpp engines (default: usable cores)."),
]
HostOpt = Annotated[str, typer.Option(help="Interface to listen on.")]
PortOpt = Annotated[int, typer.Option(help="Port to listen on.")]
VllmArgs = Annotated[
    list[str] | None, typer.Option("--vllm-arg", help="An argument passed on to vLLM (repeat).")
]
VllmOpt = Annotated[
    str | None, typer.Option(help="Python of the environment vLLM is installed in.")
]


@app.command("serve")
def serve_command(
    model: ModelOpt = None,
    engine: EngineOpt = "auto",
    host: HostOpt = DEFAULT_HOST,
    port: PortOpt = DEFAULT_PORT,
    vllm_python: VllmOpt = None,
    vllm_arg: VllmArgs = None,
    threads: ThreadsOpt = None,
) -> None:
    """Serve a model in the foreground until Ctrl-C (shown by `local status`, reused by
    `local start` and the local backend)."""

    def ready(url: str) -> None:
        typer.echo(f"serving on {url} (Ctrl-C stops)", err=True)

    with _errors():
        serve(
            model, engine, host, port, vllm_python=vllm_python, vllm_args=vllm_arg or (),
            threads=threads, on_ready=ready,
        )  # fmt: skip


@app.command("start")
def start_command(
    model: ModelOpt = None,
    engine: EngineOpt = "auto",
    host: HostOpt = DEFAULT_HOST,
    port: PortOpt = DEFAULT_PORT,
    vllm_python: VllmOpt = None,
    vllm_arg: VllmArgs = None,
    threads: ThreadsOpt = None,
) -> None:
    """Start a server in the background (or reuse the one already on the port)."""
    server = LocalServer(
        model, engine=engine, host=host, port=port, vllm_python=vllm_python,
        vllm_args=vllm_arg or (), threads=threads,
    )  # fmt: skip
    with _errors():
        record = server.ensure_running()
    typer.echo(f"{record.model} ({record.engine}, pid {record.pid}) at {record.base_url}")


@app.command("stop")
def stop_command(port: PortOpt = DEFAULT_PORT) -> None:
    """Stop the background server on a port."""
    stopped = LocalServer(port=port).stop()
    typer.echo("stopped" if stopped else f"no local server on port {port}")


@app.command("status")
def status_command(port: PortOpt = DEFAULT_PORT) -> None:
    """Show the background server on a port."""
    record = LocalServer(port=port).status()
    if record is None:
        typer.echo(f"no local server on port {port}")
        raise typer.Exit(1)
    typer.echo(f"{record.model} ({record.engine}, pid {record.pid}) at {record.base_url}")
    log = "none (foreground `local serve`)" if record.foreground else record.log
    typer.echo(f"log: {log}")


class _errors:
    """Print an intentmesh error as one line and exit 2, instead of a traceback."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, IntentmeshError):
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
