"""The disconnect watcher of non-streamed calls starts only once a call has run a while."""

from __future__ import annotations

import asyncio
from typing import Any


async def test_a_quick_answer_never_starts_a_disconnect_watcher() -> None:
    from intentmesh.server._app import _unless_gone

    asked: list[str] = []

    async def receive() -> dict[str, Any]:
        asked.append("receive")
        return {"type": "http.disconnect"}

    async def quick() -> str:
        await asyncio.sleep(0)
        return "answer"

    assert await _unless_gone(receive, quick) == "answer"
    await asyncio.sleep(0.05)
    assert asked == []  # no watcher ever asked for the client's messages


async def test_a_client_gone_before_the_watcher_starts_still_cancels_a_slow_call() -> None:
    from intentmesh.server._app import WATCH_AFTER_S, _unless_gone

    cancelled = asyncio.Event()

    async def receive() -> dict[str, Any]:  # the client hung up at once
        return {"type": "http.disconnect"}

    async def slow() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "too late"

    started = asyncio.get_running_loop().time()
    assert await _unless_gone(receive, slow) is None
    assert cancelled.is_set()
    assert asyncio.get_running_loop().time() - started < WATCH_AFTER_S + 5  # not the 30 s call
