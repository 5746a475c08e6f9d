"""Shared test set-up: no traffic leaves loopback, and every test gets its own INTENTMESH_HOME."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if isinstance(address, (str, bytes)):  # unix sockets
        return True
    if not isinstance(address, tuple) or not address:
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _allowed(address):
        raise RuntimeError(f"tests may only reach loopback; blocked connect to {address!r}")
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(address):
        raise RuntimeError(f"tests may only reach loopback; blocked connect to {address!r}")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """ALLOW_NETWORK = False: any connection beyond 127.0.0.0/8 or ::1 fails the test."""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys, ledgers and configs of one test never leak into another or into the user's home."""
    home = tmp_path_factory.mktemp("intentmesh-home")
    monkeypatch.setenv("INTENTMESH_HOME", str(home))
    monkeypatch.delenv("INTENTMESH_CONFIG", raising=False)
    # Gateway() must not start the embedded local model unless a test asks for it.
    monkeypatch.setenv("INTENTMESH_LOCAL_DEFAULT", "0")
    for var in (
        "CHUTES_API_KEY",
        "AKASH_API_KEY",
        "IOINTELLIGENCE_API_KEY",
        "TARGON_API_KEY",
        "NINETEEN_API_KEY",
        "AKASHML_API_KEY",
        "INTENTMESH_SIGNING_KEY",
    ):
        monkeypatch.delenv(var, raising=False)
