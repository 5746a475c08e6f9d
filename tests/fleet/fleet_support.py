"""Helpers shared by the fleet tests: real Redis and PostgreSQL on loopback, or a clear skip.

``INTENTMESH_TEST_REDIS_URL`` / ``INTENTMESH_TEST_POSTGRES_URL`` name the services (defaults:
this machine's). Where they are missing the tests skip with the reason, unless
``INTENTMESH_REQUIRE_SERVICES=1`` (set by ``.ci/run``): then a missing service fails them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

REDIS_URL = os.environ.get("INTENTMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "INTENTMESH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REQUIRED = os.environ.get("INTENTMESH_REQUIRE_SERVICES", "") == "1"
MODEL = "llama-3.1-8b-instruct"
INTENTMESH = str(Path(sys.executable).with_name("intentmesh"))

T = TypeVar("T")


def unavailable(reason: str) -> None:
    """Skip, or fail when the services are required."""
    if REQUIRED:
        pytest.fail(f"{reason} (INTENTMESH_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


def wait_for(check: Callable[[], T], timeout_s: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (bounded; generous for loaded CI)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_toml(name: str, base_url: str, price: float = 1.0, retries: int = 0) -> str:
    return "\n".join(
        [
            "[[backends]]",
            f'name = "{name}"',
            f'base_url = "{base_url}"',
            f"retries = {retries}",
            "timeout_s = 30",
            "[[backends.models]]",
            f'name = "{MODEL}"',
            'id = "fake-llama"',
            f"input_price = {price}",
            f"output_price = {price}",
            "",
        ]
    )


def state_toml(prefix: str, **extra: float) -> str:
    lines = ["[state]", f'url = "{REDIS_URL}"', f'prefix = "{prefix}"']
    lines += [f"{k} = {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


class TcpProxy:
    """A loopback TCP forwarder to Redis that can be cut and restored (on the same port)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._server: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> TcpProxy:
        import threading

        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and reset the open ones: Redis is 'down'."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._server.close()
            self._server = None
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._conns.clear()

    def _accept(self, server: socket.socket) -> None:
        import threading

        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
