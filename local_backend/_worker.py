"""One worker thread that runs generation jobs in order, so the event loop never blocks.

Jobs are serialised: models on a CPU gain little from running two at once, and one thread keeps
sampling deterministic. Text deltas travel back to the event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from intentmesh.local_backend._generation import (
    Engine,
    GenerationResult,
    SamplingParams,
    replayed,
    run_generation,
)
from intentmesh.local_backend._metrics import ServerMetrics

__all__ = ["GenerationWorker", "WorkerEvent"]


@dataclass(frozen=True, slots=True)
class WorkerEvent:
    """The prompt ids (first), text deltas, then the whole result; or an error instead."""

    prompt_ids: list[int] | None = None
    delta: str = ""
    result: GenerationResult | None = None
    error: BaseException | None = None


Prepare = Callable[[Engine], tuple[list[int], SamplingParams]]
"""Runs on the worker: tokenizes the request and settles its sampling parameters."""

Finish = Callable[[Engine, GenerationResult], None]
"""Runs on the worker after generation: adds extension fields to the result."""


@dataclass(slots=True)
class _Job:
    prepare: Prepare
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[WorkerEvent]
    cancel: threading.Event = field(default_factory=threading.Event)
    finish: Finish | None = None
    replay: list[int] | None = None
    queued_at: float = field(default_factory=time.perf_counter)


class GenerationWorker:
    """Owns the engine; :meth:`generate` streams one job's events to the caller."""

    def __init__(self, engine: Engine, metrics: ServerMetrics):
        self.engine = engine
        self._metrics = metrics
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._running = 0
        self._thread = threading.Thread(target=self._loop, name="intentmesh-generate", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def generate(
        self, prepare: Prepare, *, finish: Finish | None = None, replay: list[int] | None = None
    ) -> AsyncGenerator[WorkerEvent, None]:
        """Yield the job's events in order; leaving early cancels the job on the worker.

        ``replay``: take these ids as the answer instead of generating; ``finish``: then run."""
        job = _Job(prepare, asyncio.get_running_loop(), asyncio.Queue(), finish=finish,
                   replay=replay)  # fmt: skip
        self._jobs.put(job)
        self._report()
        try:
            while True:
                event = await job.events.get()
                yield event
                if event.result is not None or event.error is not None:
                    return
        finally:
            job.cancel.set()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.cancel.is_set():
                self._report()
                continue
            self._running = 1
            self._report()
            try:
                self._run(job)
            finally:
                self._running = 0
                self._report()

    def _run(self, job: _Job) -> None:
        def send(event: WorkerEvent) -> None:
            try:
                job.loop.call_soon_threadsafe(job.events.put_nowait, event)
            except RuntimeError:  # the caller's loop is gone: nobody is listening
                job.cancel.set()

        first = True

        def on_delta(text: str) -> None:
            nonlocal first
            if first:
                self._metrics.record_first_token(time.perf_counter() - job.queued_at)
                first = False
            send(WorkerEvent(delta=text))

        try:
            prompt_ids, params = job.prepare(self.engine)
            send(WorkerEvent(prompt_ids=prompt_ids))
            if job.replay is not None:
                result = replayed(self.engine, prompt_ids, job.replay)
            else:
                result = run_generation(self.engine, prompt_ids, params, on_delta, job.cancel)
            if job.finish is not None:
                job.finish(self.engine, result)
        except Exception as exc:  # an engine failure ends this job, never the worker
            send(WorkerEvent(error=exc))
            return
        self._metrics.record_answer(
            result.prompt_tokens, result.completion_tokens, time.perf_counter() - job.queued_at
        )
        send(WorkerEvent(result=result))

    def _report(self) -> None:
        self._metrics.queue_changed(running=self._running, waiting=self._jobs.qsize())
