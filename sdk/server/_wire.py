"""One socket write per response under uvicorn's HTTP/1.1 protocol (httptools).

uvicorn writes a response's head when the app sends ``http.response.start`` and its body when
the app sends ``http.response.body``: two ``send`` system calls and two TCP segments for every
answer. :func:`http_protocol` gives uvicorn its own protocol over a transport that holds a
response head back until the next write, so head and body leave together. A held head that no
body follows (``HEAD``, 204, 304) leaves at the end of the loop's current iteration; an interim
``1xx`` head (``100 Continue``) leaves at once, since the client waits for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["http_protocol"]

_STATUS_LINE = b"HTTP/1.1 "
_HEAD_END = b"\r\n\r\n"


class JoinedWrites(asyncio.Transport):
    """A transport that sends a final response head together with the write after it."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + bytes(data))
        elif _is_final_head(data):
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send a held head now."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()


def _is_final_head(data: bytes | bytearray | memoryview) -> bool:
    """A whole response head, status 2xx–5xx, with nothing after it."""
    start = bytes(data[:10])
    return start.startswith(_STATUS_LINE) and start[9:10] != b"1" and bytes(data[-4:]) == _HEAD_END


try:  # the server extra's uvicorn[standard] brings httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    _HTTPTOOLS = True
except ImportError:  # pragma: no cover - uvicorn picks another protocol itself
    _HTTPTOOLS = False

if _HTTPTOOLS:

    class JoinedWritesProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol over :class:`JoinedWrites` (module level: uvicorn's
        worker processes receive it by name)."""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(JoinedWrites(transport, self.loop))


def http_protocol() -> type[asyncio.Protocol] | str:
    """uvicorn's ``http`` setting: :class:`JoinedWritesProtocol`, or ``"auto"`` (uvicorn's
    own choice) where httptools is not installed."""
    return JoinedWritesProtocol if _HTTPTOOLS else "auto"
