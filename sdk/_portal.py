"""Sync calls on a private event loop thread, so the sync API works inside running loops too."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """A daemon thread running one event loop; started on first use, stopped by ``close``."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # Iterators handed to sync callers who may never finish them (closed by ``close``).
        self._iterating: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def started(self) -> bool:
        return self._loop is not None

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="intentmesh-loop", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the private loop and wait for it from this (any) thread."""
        loop = self._ensure()
        if _running_on(loop):
            coro.close()
            raise RuntimeError("a sync intentmesh call cannot run on the gateway's own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def iterate(self, aiter: AsyncIterator[T]) -> Iterator[T]:
        """Drive an async iterator on the private loop, one item at a time."""
        anext_ = aiter.__anext__
        with contextlib.suppress(TypeError):  # not weak-referenceable: nothing to close
            self._iterating.add(aiter)
        try:
            while True:
                try:
                    yield self.run(_next(anext_))
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(aiter, "aclose", None)
            if closer is not None and self._loop is not None:
                self.run(closer())

    def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            open_iterators = list(self._iterating)
            with contextlib.suppress(Exception):
                drain = _drain(loop, open_iterators)
                asyncio.run_coroutine_threadsafe(drain, loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()


async def _drain(loop: asyncio.AbstractEventLoop, iterators: list[Any]) -> None:
    """Close the streams sync callers left open, outermost first (closing every async
    generator at once would close an inner one, e.g. the HTTP response, under an outer one
    still using it); then cancel what still runs and finalise the other async generators."""
    for iterator in iterators:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            with contextlib.suppress(Exception):
                await closer()
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks(loop) if t is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await loop.shutdown_asyncgens()


async def _next(anext_: Any) -> Any:
    return await anext_()


def _running_on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
