"""``serve()``: run a local OpenAI-compatible server in the foreground until interrupted."""

from __future__ import annotations

import errno
import signal
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

from intentmesh.local_backend._engines import EngineName, check_installed, command, pick_engine
from intentmesh.local_backend._errors import PortInUse
from intentmesh.local_backend._generation import Engine
from intentmesh.local_backend._models import ModelRef, resolve_model

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "load_engine", "port_is_free", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8751


def serve(
    model: str | None = None,
    engine: str = "auto",
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    served_model_name: str | None = None,
    vllm_python: str | None = None,
    vllm_args: Sequence[str] = (),
) -> None:
    """Serve ``model`` (default: the embedded SmolLM2) on ``host:port`` until Ctrl-C or SIGTERM.

    Raises :class:`~intentmesh.errors.ConfigurationError` subclasses for a missing engine or
    model, or a busy port, before anything is loaded.
    """
    ref = resolve_model(model, served_model_name)
    name = pick_engine(engine, ref, vllm_python=vllm_python)
    check_installed(name, ref, vllm_python)
    if not port_is_free(host, port):
        raise PortInUse(host, port)
    if name == "vllm":
        _run_foreground(
            command(name, ref, host, port, vllm_python=vllm_python, vllm_args=vllm_args)
        )
        return
    run_app(load_engine(name, ref), host, port, served_model_names=[ref.name])


def load_engine(engine: EngineName, model: ModelRef) -> Engine:
    """Load ``model`` into an in-process engine (``torch`` or ``llamacpp``)."""
    if engine == "llamacpp":
        from intentmesh.local_backend._llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine.load(model.path, model_id=model.name)
    from intentmesh.local_backend._torch_engine import TorchEngine

    return TorchEngine.load(model.path, model_id=model.name)


def run_app(engine: Engine, host: str, port: int, *, served_model_names: list[str]) -> None:
    """Run the ASGI app for ``engine`` with uvicorn (blocks; SIGINT/SIGTERM stop it cleanly)."""
    import uvicorn

    from intentmesh.local_backend._app import create_app

    app = create_app(engine, served_model_names=served_model_names)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    uvicorn.Server(config).run()


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (a bind test, like the server's own)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _run_foreground(cmd: list[str]) -> None:
    proc = subprocess.Popen(cmd)

    def forward(signum: int, frame: Any) -> None:
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
