"""One way to write start/stop resources: ``with``, ``async with``, ``astart``/``astop``."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

__all__ = ["Startable"]


class Startable:
    """Mixin for things with a blocking ``start() -> Self`` and ``stop()``.

    Adds context-manager support and async twins that run the blocking calls in a worker thread,
    so a running event loop is never blocked.
    """

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> Any:
        raise NotImplementedError

    async def astart(self) -> Self:
        """:meth:`start` without blocking the caller's event loop."""
        await asyncio.to_thread(self.start)
        return self

    async def astop(self) -> None:
        """:meth:`stop` without blocking the caller's event loop."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        await self.astop()
