"""Receipts signed and written off the event loop, many per SQLite transaction.

A :class:`ReceiptWriter` owns one background thread. :meth:`ReceiptWriter.asubmit` hands it a
receipt's fields and awaits the signed :class:`Receipt`; the thread takes everything queued,
opens one ``BEGIN IMMEDIATE`` transaction, chains, signs and inserts each receipt, and commits
once (group commit). Two modes (``[receipts] commit``, see ``docs/receipts.md``):

``"sync"`` (default)
    a receipt is handed back only after the transaction holding it has committed: no receipt
    a caller has seen is ever lost to a crash of the process.
``"async"``
    a receipt is handed back as soon as it is signed and inserted, before its transaction
    commits. The transaction commits when nothing more is queued, and at the latest
    ``async_window_ms`` after its first receipt (or at 1,024 receipts). A crash loses at most
    the receipts of that open transaction; the ledger still verifies (it ends earlier).

Merkle checkpoints are sealed on the same thread, after a commit. Bad fields (secrets, chain
fields) fail that receipt alone: its caller gets the :class:`ReceiptError`.

A caller with nothing else in flight (``asubmit(..., alone=True)``) skips the hand-off when it
cannot wait on anyone: the writer is idle and the SQLite ledger's write lock is free at once.
Its receipt is then signed and committed in the caller's thread (one transaction, the same
chain); a checkpoint that falls due is still sealed on the writer's thread. Otherwise it joins
the writer's next group commit. A hand-off and the writer's wake-up cost a lone caller more
than the write itself (docs/benchmarks.md), and with nothing else in flight there is no one
for the write to hold up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, Literal

from intentmesh.errors import ReceiptError
from intentmesh.receipts._keys import SigningKey
from intentmesh.receipts._ledger import Ledger
from intentmesh.receipts._receipt import Receipt, _receipt
from intentmesh.receipts._store import Row

__all__ = ["CommitMode", "ReceiptWriter"]

CommitMode = Literal["sync", "async"]
MAX_GROUP = 1024
"""Receipts per transaction at most."""

_Build = Callable[[int, str | None], Row]
_STOP = object()


class _SealAfter:
    """Ask the writer's thread to seal the checkpoints due behind ``seq``."""

    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq


class _Job:
    """One receipt to write and who waits for it: a thread (``future``) or an event loop."""

    __slots__ = ("fields", "future", "loop")

    def __init__(
        self,
        fields: Mapping[str, Any],
        future: Future[Receipt] | asyncio.Future[Receipt],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.fields = fields
        self.future = future
        self.loop = loop


_Done = tuple[_Job, "Receipt | BaseException"]


class ReceiptWriter:
    """Signs and stores receipts for one :class:`Ledger` on a background thread."""

    def __init__(
        self,
        ledger: Ledger,
        key: SigningKey,
        *,
        mode: CommitMode = "sync",
        async_window_ms: float = 50.0,
    ) -> None:
        if mode not in ("sync", "async"):
            raise ReceiptError(f"receipts commit mode {mode!r}: use 'sync' or 'async'")
        self.ledger = ledger
        self.key = key
        self.mode = mode
        self.window_s = max(0.0, async_window_ms) / 1000
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._closed = False

    # -- callers ----------------------------------------------------------------------

    def submit(self, fields: Mapping[str, Any]) -> Future[Receipt]:
        """Queue ``fields``; the future holds the receipt (committed, in ``sync`` mode)."""
        future: Future[Receipt] = Future()
        self._ensure_thread()
        self._queue.put(_Job(fields, future))
        return future

    async def asubmit(self, fields: Mapping[str, Any], *, alone: bool = False) -> Receipt:
        """Queue ``fields`` and wait for the receipt without blocking the event loop (one
        wake-up of the loop per transaction, however many receipts it held).

        ``alone``: the caller has nothing else in flight; write in this thread when that
        waits on no one (see the module's docstring)."""
        if alone:
            receipt = self._write_now(fields)
            if receipt is not None:
                return receipt
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Receipt] = loop.create_future()
        self._ensure_thread()
        self._queue.put(_Job(fields, future, loop))
        return await future

    def _write_now(self, fields: Mapping[str, Any]) -> Receipt | None:
        """Sign and commit in this thread if nothing must be waited for, else None."""
        try_append = getattr(self.ledger._store, "try_append", None)  # SQLite, not PostgreSQL
        if try_append is None or not self._queue.empty() or self._closed:
            return None
        row = try_append(self.ledger.row_builder(fields, self.key))
        if row is None:
            return None
        if self.ledger.seal_due(row.seq):
            self._ensure_thread()
            self._queue.put(_SealAfter(row.seq))
        return _receipt(row)

    def append(self, fields: Mapping[str, Any]) -> Receipt:
        """Blocking :meth:`submit` (for threads that have no event loop)."""
        return self.submit(fields).result()

    def flush(self) -> None:
        """Wait until everything submitted so far is committed (also in ``async`` mode)."""
        if self._thread is None or not self._thread.is_alive():
            return
        done: Future[Receipt] = Future()
        self._queue.put(done)
        done.result()

    def close(self) -> None:
        """Commit what is queued and stop the thread; later submits raise."""
        with self._lock:
            self._closed = True
            thread = self._thread if self._pid == os.getpid() else None
            self._thread = None
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._closed:
                raise ReceiptError("the receipt writer is closed")
            if self._thread is None or self._pid != os.getpid():  # none yet, or after fork()
                self._queue = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name="intentmesh-receipts", daemon=True
                )
                self._thread.start()

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        stop = False
        while not stop:
            first = q.get()
            if first is _STOP:
                return
            if isinstance(first, _SealAfter):
                self._seal_upto(first.seq)
                continue
            stop = self._group(q, first)

    def _group(self, q: queue.SimpleQueue[Any], first: Any) -> bool:
        """One transaction: ``first`` and what is queued behind it; True when asked to stop."""
        done: list[_Done] = []
        markers: list[Future[Receipt]] = []
        stop = delivered = False
        last_seq = 0
        try:
            with _writing(self.ledger._store) as add:
                item: Any = first
                deadline = time.monotonic() + self.window_s
                while item is not None:
                    if item is _STOP:
                        stop = True
                        break
                    if isinstance(item, Future):  # a flush marker
                        markers.append(item)
                    elif isinstance(item, _SealAfter):
                        last_seq = max(last_seq, item.seq)
                    else:
                        last_seq = self._add(add, item, done) or last_seq
                        if len(done) >= MAX_GROUP:
                            break
                    item = self._next(q, deadline)
                if self.mode == "async":  # handed back before the commit
                    _deliver(done)
                    delivered = True
        except BaseException as exc:  # noqa: BLE001 - rolled back: none of them is stored
            if not delivered:
                _deliver([(job, exc if isinstance(r, Receipt) else r) for job, r in done])
            _deliver_markers(markers, exc)
            return stop
        if not delivered:
            _deliver(done)
        _deliver_markers(markers, None)
        if last_seq:
            self._seal(last_seq)
        return stop

    def _next(self, q: queue.SimpleQueue[Any], deadline: float) -> Any:
        """The next queued item for this transaction, or None to commit now: when nothing
        is queued, or (``async``) once the transaction has been open for the window."""
        if self.mode == "async" and time.monotonic() >= deadline:
            return None
        try:
            return q.get_nowait()
        except queue.Empty:
            return None

    def _add(self, add: Callable[[_Build], Row], job: _Job, done: list[_Done]) -> int | None:
        """Sign and insert one receipt; a bad one is recorded as failed, a store error raised."""
        try:
            row = add(self.ledger.row_builder(job.fields, self.key))
        except ReceiptError as exc:  # bad fields: this receipt fails, the others go on
            done.append((job, exc))
            return None
        except BaseException as exc:  # the store failed: the whole transaction rolls back
            done.append((job, exc))
            raise
        done.append((job, _receipt(row)))
        return row.seq

    def _seal(self, last_seq: int) -> None:
        with contextlib.suppress(Exception):  # sealing is retried after the next commit
            self.ledger.seal_if_due(last_seq, self.key)

    def _seal_upto(self, seq: int) -> None:
        """Seal the batch an inline receipt completed, and nothing after it: receipts written
        inline meanwhile are sealed when their own batch is due, whenever this thread runs."""
        with contextlib.suppress(Exception):  # retried when the next batch falls due
            if self.ledger.seal_due(seq):
                self.ledger.seal(self.key, upto_seq=seq)


def _writing(store: Any) -> contextlib.AbstractContextManager[Callable[[_Build], Row]]:
    """The store's group transaction; a store without one (PostgreSQL) commits row by row."""
    group = getattr(store, "writing", None)
    return group() if group is not None else _row_by_row(store)


@contextlib.contextmanager
def _row_by_row(store: Any) -> Iterator[Callable[[_Build], Row]]:
    yield store.append


def _deliver(done: list[_Done]) -> None:
    """Hand each receipt (or error) to its waiter: one call into each event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
    for job, outcome in done:
        if job.loop is None:
            _settle(job.future, outcome)
        else:
            by_loop.setdefault(job.loop, []).append((job, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle_all, items)


def _settle_all(items: list[_Done]) -> None:
    for job, outcome in items:
        _settle(job.future, outcome)


def _deliver_markers(markers: list[Future[Receipt]], exc: BaseException | None) -> None:
    for marker in markers:
        _settle(marker, exc)


def _settle(future: Future[Any] | asyncio.Future[Any], outcome: Any) -> None:
    """Set ``future`` to ``outcome`` (an exception is raised to the waiter) unless it is done
    (a caller that gave up cancels its future)."""
    if future.done():
        return
    if isinstance(future, Future) and not future.set_running_or_notify_cancel():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
