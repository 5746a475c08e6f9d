"""``serve()``: run a local OpenAI-compatible server in the foreground until interrupted."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from intentmesh.local_backend._engines import EngineName, check_installed, command, pick_engine
from intentmesh.local_backend._errors import PortInUse
from intentmesh.local_backend._generation import Engine
from intentmesh.local_backend._models import ModelRef, resolve_model
from intentmesh.local_backend._xllamacpp_engine import NativeEngine

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
    threads: int | None = None,
    on_ready: Callable[[str], None] | None = None,
    register: bool = True,
    home: Path | None = None,
) -> None:
    """Serve ``model`` (default: the embedded SmolLM2) on ``host:port`` until Ctrl-C or SIGTERM.

    Raises :class:`~intentmesh.errors.ConfigurationError` subclasses for a missing engine or
    model, or a busy port, before anything is loaded. Once it serves, ``on_ready(base_url)`` is
    called and (``register``) the server's record is written, so ``local status`` shows it and
    ``local start`` and the local backend reuse it; the record is removed when it stops.
    ``threads`` (llama.cpp engines) defaults to the usable cores.
    """
    ref = resolve_model(model, served_model_name)
    name = pick_engine(engine, ref, vllm_python=vllm_python)
    check_installed(name, ref, vllm_python)
    if not port_is_free(host, port):
        raise PortInUse(host, port)
    with _registered(name, ref, host, port, register, home, on_ready) as ready:
        if name == "vllm":
            cmd = command(name, ref, host, port, vllm_python=vllm_python, vllm_args=vllm_args)
            _run_foreground(cmd, host, port, ready)
            return
        loaded = load_engine(name, ref, threads=threads)
        run_app(loaded, host, port, served_model_names=[ref.name], on_ready=ready)


def load_engine(
    engine: EngineName, model: ModelRef, *, threads: int | None = None
) -> Engine | NativeEngine:
    """Load ``model`` into an in-process engine (``xllamacpp``, ``llamacpp`` or ``torch``)."""
    if engine == "xllamacpp":
        from intentmesh.local_backend._xllamacpp_engine import XLlamaCppEngine

        return XLlamaCppEngine.load(model.path, model_id=model.name, threads=threads)
    if engine == "llamacpp":
        from intentmesh.local_backend._llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine.load(model.path, model_id=model.name, threads=threads)
    from intentmesh.local_backend._torch_engine import TorchEngine

    return TorchEngine.load(model.path, model_id=model.name)


def run_app(
    engine: Engine | NativeEngine,
    host: str,
    port: int,
    *,
    served_model_names: list[str],
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run the ASGI app for ``engine`` with uvicorn (blocks; SIGINT/SIGTERM stop it cleanly);
    ``on_ready`` runs once the socket listens."""
    import uvicorn

    from intentmesh.local_backend._app import create_app

    class _Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and on_ready is not None:
                on_ready()

    app = create_app(engine, served_model_names=served_model_names)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    _Server(config).run()


@contextlib.contextmanager
def _registered(
    engine: EngineName, ref: ModelRef, host: str, port: int, register: bool,
    home: Path | None, on_ready: Callable[[str], None] | None,
) -> Iterator[Callable[[], None]]:  # fmt: skip
    """Yield the callback to run once serving: it writes the record and calls ``on_ready``."""
    from intentmesh.local_backend._lifecycle import LocalServer

    server = LocalServer(ref.name, host=host, port=port, home=home)
    url = f"http://{host}:{port}/v1"

    def ready() -> None:
        if register:
            server.register_foreground(engine, ref)
        if on_ready is not None:
            on_ready(url)

    try:
        yield ready
    finally:
        if register:
            server.unregister_foreground()


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


def _run_foreground(cmd: list[str], host: str, port: int, on_ready: Callable[[], None]) -> None:
    proc = subprocess.Popen(cmd)
    watcher = threading.Thread(
        target=_when_healthy, args=(proc, host, port, on_ready), daemon=True
    )
    watcher.start()

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


def _when_healthy(
    proc: subprocess.Popen[bytes], host: str, port: int, on_ready: Callable[[], None]
) -> None:
    """Call ``on_ready`` once vLLM answers ``/health`` (never if it exits first)."""
    import httpx

    url = f"http://{host}:{port}/health"
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    on_ready()
                    return
            time.sleep(0.5)
