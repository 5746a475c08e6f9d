"""JoinedWrites: a response's head leaves in the same write as its body."""

from __future__ import annotations

import asyncio
from typing import Any

from intentmesh.server._wire import JoinedWrites, http_protocol

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


class Recorder(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def joined() -> tuple[JoinedWrites, Recorder]:
    inner = Recorder()
    return JoinedWrites(inner, asyncio.get_running_loop()), inner


async def test_head_and_body_leave_in_one_write() -> None:
    t, inner = joined()
    t.write(HEAD)
    assert inner.writes == []
    t.write(b"{}")
    assert inner.writes == [HEAD + b"{}"]
    t.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # the next response on the connection
    t.writelines([b"", b""])
    assert inner.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"


async def test_a_head_without_a_body_leaves_at_the_end_of_the_iteration() -> None:
    t, inner = joined()
    t.write(b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n")
    assert inner.writes == []
    await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n"]
    await asyncio.sleep(0)  # the flush runs once; nothing is written twice
    assert len(inner.writes) == 1


async def test_interim_heads_and_whole_responses_are_not_held() -> None:
    t, inner = joined()
    t.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # the client waits for it before its body
    whole = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 5\r\n\r\noops!"
    t.write(whole)
    t.write(memoryview(b"raw bytes"))
    assert inner.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", whole, b"raw bytes"]


async def test_close_sends_a_held_head_first_and_abort_drops_it() -> None:
    t, inner = joined()
    t.write(HEAD)
    t.close()
    assert inner.writes == [HEAD] and inner.closed
    t2, inner2 = joined()
    t2.write(HEAD)
    assert t2.get_write_buffer_size() == len(HEAD)
    t2.abort()
    await asyncio.sleep(0)
    assert inner2.writes == [] and inner2.closed
    assert t2.get_extra_info("peername") == ("127.0.0.1", 1)


def test_uvicorn_gets_a_protocol_class_it_can_hand_to_worker_processes() -> None:
    import pickle

    protocol = http_protocol()
    assert isinstance(protocol, type)
    assert pickle.loads(pickle.dumps(protocol)) is protocol
