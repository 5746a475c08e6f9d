"""``ThreadedServer``: the gateway app under uvicorn in a background thread, for tests and demos."""

from __future__ import annotations

import math
import socket
import threading
import time
from typing import Any, Self

from intentmesh._lifecycle import Startable

__all__ = ["ThreadedServer"]


class ThreadedServer(Startable):
    """Serve an ASGI app on ``127.0.0.1`` (ephemeral port) until :meth:`stop`.

    ``stop()`` shuts down like SIGTERM does: stop accepting, let in-flight responses finish
    (up to ``drain_timeout_s``), then run the app's shutdown.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", drain_timeout_s: float = 30.0):
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        config = uvicorn.Config(
            app,
            log_level="warning",
            timeout_graceful_shutdown=math.ceil(drain_timeout_s),
            backlog=4096,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="intentmesh-server", daemon=True)
        self.host = host
        self.port = int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (``.../v1``)."""
        return self.url + "/v1"

    def _run(self) -> None:
        self.server.run(sockets=[self._sock])

    def start(self, timeout_s: float = 10.0) -> Self:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway server did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """Graceful shutdown: in-flight requests and streams finish first."""
        self.server.should_exit = True
        self._thread.join(timeout_s)
        self._sock.close()
