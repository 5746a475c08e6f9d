"""The executor: runs a plan with retries, failover, hedging, a deadline and a price cap.

Layers, each named for its job::

    complete / stream            deadline around everything
      └─ _race                   failover down the plan, hedging after a delay
           └─ _with_retries      tenacity retries on one backend
                └─ _attempt_*    one request: breaker, budget, record, classify

Decisions (may we retry, how long to wait, is the cap kept) are small pure helpers; the I/O
is the backend call alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from intentmesh.adapters.base import Backend, ChatRequest, Chunk, Completion, Usage
from intentmesh.errors import (
    AllBackendsFailed,
    BackendError,
    DeadlineExceeded,
    MidStreamError,
    RateLimited,
)
from intentmesh.router._health import HealthBook
from intentmesh.router._plan import Attempt, Candidate, Plan
from intentmesh.router._tokens import estimate_text_tokens

__all__ = ["Budget", "Call", "Executor", "Outcome", "RetryPolicy", "SkippedAttempt", "StreamRun"]

T = TypeVar("T")
_EPS = 1e-12
_CIRCUIT_OPEN = "circuit open"
_NO_BUDGET = "price cap: not enough budget left for its worst case"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries on one backend: ``retries`` more tries, exponential backoff, Retry-After honoured.

    A Retry-After longer than ``max_retry_after_s`` fails over instead of waiting.
    """

    retries: int = 2
    backoff_s: float = 0.2
    backoff_max_s: float = 4.0
    max_retry_after_s: float = 5.0

    def wait_s(self, retry_number: int, error: BaseException | None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        wait: float = min(self.backoff_max_s, self.backoff_s * 2.0 ** (retry_number - 1))
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait


@dataclass(slots=True)
class Budget:
    """The intent's price cap across all attempts: committed spend plus reservations in flight.

    An attempt reserves its worst case before it starts, so concurrent (hedged) and repeated
    attempts can never together exceed the cap.
    """

    cap: float | None
    committed: float = 0.0
    reserved: float = 0.0

    def fits(self, amount: float) -> bool:
        """Whether ``amount`` more could be spent without breaking the cap."""
        return self.cap is None or self.committed + self.reserved + amount <= self.cap + _EPS

    def try_reserve(self, amount: float) -> bool:
        if not self.fits(amount):
            return False
        self.reserved += amount
        return True

    def settle(self, reserved: float, actual: float) -> None:
        self.reserved -= reserved
        self.committed += actual


@dataclass(slots=True)
class Call:
    """One intent's execution: the plan, how to address a candidate, and its limits."""

    plan: Plan
    build_request: Callable[[Candidate, float | None], ChatRequest]
    budget: Budget
    deadline: float | None = None
    hedge_delay_s: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    started: float = 0.0


@dataclass(slots=True)
class Outcome:
    """The winning attempt of a call."""

    candidate: Candidate
    completion: Completion
    usage: Usage
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    flags: list[str]
    attempt: Attempt


class Executor:
    """Runs plans against backends; shares a :class:`HealthBook` with the solver."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        health: HealthBook,
        policies: Mapping[str, RetryPolicy] | None = None,
        *,
        default_policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = backends
        self.health = health
        self.policies = dict(policies or {})
        self.default_policy = default_policy or RetryPolicy()
        self._sleep = sleep
        self._clock = clock

    # -- entry points -----------------------------------------------------------------

    async def complete(self, call: Call) -> Outcome:
        """Run ``call`` to one whole answer, or raise an :class:`ExecutionError`."""
        call.started = self._clock()
        async with self._deadline(call):
            return await self._race(call, self._attempt_complete)
        raise AssertionError("unreachable")  # pragma: no cover

    def stream(self, call: Call) -> StreamRun:
        """Run ``call`` as a stream; iterate the returned object for chunks."""
        return StreamRun(self, call)

    # -- deadline ---------------------------------------------------------------------

    def _remaining(self, call: Call) -> float | None:
        return None if call.deadline is None else call.deadline - self._clock()

    def _deadline(self, call: Call) -> _DeadlineScope:
        return _DeadlineScope(self, call)

    # -- failover and hedging ---------------------------------------------------------

    async def _race(
        self,
        call: Call,
        runner: Callable[[Call, Candidate, bool, int], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """Try candidates in order; with hedging, start the next one if the first is slow."""
        pending = list(call.plan.candidates)
        tasks: dict[asyncio.Task[T], Candidate] = {}
        errors: list[BaseException] = []

        def launch(hedge: bool) -> bool:
            while pending:
                cand = pending.pop(0)
                if self._skip_reason(call, cand) is None:
                    task = asyncio.create_task(self._with_retries(call, cand, hedge, runner))
                    tasks[task] = cand
                    return True
            return False

        try:
            launch(False)
            hedged = False
            while tasks:
                wait = call.hedge_delay_s if not hedged and len(tasks) == 1 and pending else None
                done, _ = await asyncio.wait(
                    tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    hedged = True
                    launch(True)
                    continue
                for task in done:
                    tasks.pop(task)
                    exc = task.exception()
                    if exc is None:
                        return task.result()
                    if isinstance(exc, BackendError) and not exc.failover:
                        raise exc
                    errors.append(exc)
                if not tasks:
                    hedged = False
                    launch(False)
        finally:
            await _cancel_all(tasks, discard)
        raise self._all_failed(call, errors)

    def _skip_reason(self, call: Call, cand: Candidate) -> str | None:
        """Before launching: record a skipped attempt and say why, or None when it may run."""
        if not self.health.breaker(cand.backend).allows():
            reason = _CIRCUIT_OPEN
        elif not call.budget.fits(cand.worst_case_cost_usd):
            reason = _NO_BUDGET
        else:
            return None
        self._record_skip(call, cand, False, 0, reason)
        return reason

    def _record_skip(
        self, call: Call, cand: Candidate, hedge: bool, retry: int, reason: str
    ) -> None:
        rec = self._new_attempt(call, cand, hedge, retry)
        rec.outcome, rec.error_kind, rec.error = "skipped", "skipped", reason

    def _all_failed(self, call: Call, errors: list[BaseException]) -> AllBackendsFailed:
        tried = [a for a in call.attempts if a.outcome != "skipped"]
        if not tried:
            return AllBackendsFailed(
                "no candidate could be tried: "
                + "; ".join(f"{a.backend}: {a.error}" for a in call.attempts)
                or "plan is empty",
                call.attempts,
            )
        last = "; ".join(str(e) for e in errors[-3:])
        return AllBackendsFailed(
            f"all {len({a.backend for a in tried})} backend(s) failed after "
            f"{len(tried)} attempt(s); last errors: {last}",
            call.attempts,
        )

    # -- retries on one backend -------------------------------------------------------

    async def _with_retries(
        self,
        call: Call,
        cand: Candidate,
        hedge: bool,
        runner: Callable[[Call, Candidate, bool, int], Awaitable[T]],
    ) -> T:
        policy = self.policies.get(cand.backend, self.default_policy)
        try:
            return await runner(call, cand, hedge, 0)
        except BackendError as exc:
            if not self._may_retry(call, cand, policy, 1, exc):
                raise
            first_error: BaseException = exc

        def stop(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            return not self._may_retry(call, cand, policy, state.attempt_number + 1, exc)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return policy.wait_s(state.attempt_number + 1, exc)

        await self._sleep(policy.wait_s(1, first_error))
        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, BackendError) and e.retryable),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await runner(call, cand, hedge, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")  # pragma: no cover

    def _may_retry(
        self,
        call: Call,
        cand: Candidate,
        policy: RetryPolicy,
        retry: int,
        error: BaseException | None,
    ) -> bool:
        """Pure decision: retry ``retry`` (1-based) after ``error`` on the same backend?"""
        if not isinstance(error, BackendError) or not error.retryable or retry > policy.retries:
            return False
        if isinstance(error, RateLimited) and (error.retry_after or 0) > policy.max_retry_after_s:
            return False
        if not self.health.breaker(cand.backend).allows():
            return False
        remaining = self._remaining(call)
        if remaining is not None and policy.wait_s(retry, error) >= remaining:
            return False
        return call.budget.fits(cand.worst_case_cost_usd)

    # -- one attempt ------------------------------------------------------------------

    def _new_attempt(self, call: Call, cand: Candidate, hedge: bool, retry: int) -> Attempt:
        rec = Attempt(
            backend=cand.backend,
            network=cand.offer.network,
            model=cand.model,
            provider_model=cand.provider_model,
            started_ms=(self._clock() - call.started) * 1000,
            retry=retry,
            hedge=hedge,
        )
        call.attempts.append(rec)
        return rec

    def _begin(self, call: Call, cand: Candidate, hedge: bool, retry: int) -> Attempt:
        """Take the breaker and reserve the worst case; a skipped try is recorded and raised."""
        if not self.health.breaker(cand.backend).acquire():
            reason = _CIRCUIT_OPEN
        elif not call.budget.try_reserve(cand.worst_case_cost_usd):
            reason = _NO_BUDGET
        else:
            return self._new_attempt(call, cand, hedge, retry)
        self._record_skip(call, cand, hedge, retry, reason)
        raise SkippedAttempt(cand.backend, reason)

    async def _attempt_complete(
        self, call: Call, cand: Candidate, hedge: bool, retry: int
    ) -> Outcome:
        rec = self._begin(call, cand, hedge, retry)
        t0 = self._clock()
        try:
            request = call.build_request(cand, self._remaining(call))
            completion = await self.backends[cand.backend].acomplete(request)
        except BaseException as exc:
            self._fail(call, cand, rec, t0, exc)
            raise
        latency = (self._clock() - t0) * 1000
        usage = completion.usage or _count_usage(call, completion.text)
        return self._succeed(call, cand, rec, latency, None, completion, usage)

    def _succeed(
        self,
        call: Call,
        cand: Candidate,
        rec: Attempt,
        latency_ms: float,
        ttft_ms: float | None,
        completion: Completion,
        usage: Usage,
    ) -> Outcome:
        cost = cand.offer.cost(usage.prompt_tokens, usage.completion_tokens)
        flags = _integrity_flags(call, cand, completion.model, usage, cost)
        if any(f != "usage_estimated" for f in flags):
            self.health.penalize(cand.backend)
        call.budget.settle(cand.worst_case_cost_usd, cost)
        self.health.observe_latency(cand.backend, cand.provider_model, latency_ms)
        self.health.record_success(cand.backend)
        rec.latency_ms, rec.cost_usd, rec.ttft_ms = latency_ms, cost, ttft_ms
        return Outcome(cand, completion, usage, cost, latency_ms, ttft_ms, flags, rec)

    def _fail(
        self,
        call: Call,
        cand: Candidate,
        rec: Attempt,
        t0: float,
        exc: BaseException,
        delivered_tokens: int = 0,
    ) -> None:
        """Record a failed or cancelled attempt, settle its reservation, feed the breaker."""
        rec.latency_ms = (self._clock() - t0) * 1000
        possibly_billed = not isinstance(exc, BackendError) or exc.status_code is None
        cost = 0.0
        if possibly_billed:
            # No status came back: the backend may have processed (and billed) the prompt.
            cost = cand.offer.cost(call.plan.request.prompt_tokens_expected, delivered_tokens)
            rec.extra["cost_estimated"] = True
        call.budget.settle(cand.worst_case_cost_usd, cost)
        rec.cost_usd = cost
        if isinstance(exc, asyncio.CancelledError):
            rec.outcome, rec.error_kind, rec.error = "cancelled", "cancelled", "cancelled"
            self.health.breaker(cand.backend).record_failure("cancelled")
            return
        rec.outcome = "error"
        if isinstance(exc, BackendError):
            rec.error_kind, rec.error, rec.status_code = exc.kind, str(exc), exc.status_code
            if exc.kind == "model_not_found":
                self.health.mark_gone(cand.backend, cand.provider_model)
            self.health.record_failure(cand.backend, exc.kind, str(exc))
        else:
            rec.error_kind, rec.error = "internal", f"{type(exc).__name__}: {exc}"
            self.health.record_failure(cand.backend, "transient", rec.error)


class SkippedAttempt(BackendError):
    """Raised inside the executor when a try cannot start; not retried."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(reason, backend=backend)


class _DeadlineScope:
    """``async with``: the call's deadline as an asyncio timeout that raises DeadlineExceeded."""

    def __init__(self, executor: Executor, call: Call) -> None:
        self._executor = executor
        self._call = call
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        remaining = self._executor._remaining(self._call)
        if remaining is None:
            return
        if remaining <= 0:
            raise DeadlineExceeded("deadline passed before the first attempt", self._call.attempts)
        self._timeout = asyncio.timeout(remaining)
        await self._timeout.__aenter__()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._timeout is None:
            return
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise DeadlineExceeded(
                f"max_latency_ms passed after {len(self._call.attempts)} attempt(s)",
                self._call.attempts,
            ) from None


@dataclass(slots=True)
class _Head:
    """A stream that has produced its first token, with what it produced so far."""

    cand: Candidate
    rec: Attempt
    iterator: AsyncIterator[Chunk]
    buffered: list[Chunk]
    t0: float
    ttft_ms: float


class StreamRun:
    """Async iterator of chunks for one call; ``outcome`` is set when it ends."""

    def __init__(self, executor: Executor, call: Call) -> None:
        self._executor = executor
        self._call = call
        self.outcome: Outcome | None = None

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._run()

    async def _run(self) -> AsyncIterator[Chunk]:
        ex, call = self._executor, self._call
        call.started = ex._clock()
        async with ex._deadline(call):
            head = await ex._race(call, self._open, self._discard)
        parts: list[str] = []
        usage: Usage | None = None
        finish: str | None = None
        model = ""
        chunks = _Pending(head.buffered, head.iterator)
        try:
            while True:
                try:
                    chunk = await chunks.next(ex._remaining(call))
                except StopAsyncIteration:
                    break
                except (BackendError, TimeoutError) as exc:
                    raise self._broken(head, "".join(parts), exc) from exc
                usage = chunk.usage or usage
                finish = chunk.finish_reason or finish
                model = chunk.model or model
                parts.append(chunk.text)
                if chunk.text or chunk.tool_calls or chunk.finish_reason:
                    yield chunk
        finally:  # closed early or broken: end the upstream request now, outermost first
            await _aclose(head.iterator)
        text = "".join(parts)
        completion = Completion(text=text, finish_reason=finish, usage=usage, model=model)
        latency = (ex._clock() - head.t0) * 1000
        final = usage or _count_usage(call, text)
        self.outcome = ex._succeed(
            call, head.cand, head.rec, latency, head.ttft_ms, completion, final
        )
        yield Chunk(usage=final, model=model)

    def _broken(self, head: _Head, delivered: str, exc: BaseException) -> MidStreamError:
        """Record the broken attempt; tokens already delivered are never repeated."""
        ex, call = self._executor, self._call
        if isinstance(exc, TimeoutError):
            exc = DeadlineExceeded("max_latency_ms passed mid-stream", call.attempts)
        ex._fail(call, head.cand, head.rec, head.t0, exc, estimate_text_tokens(delivered))
        return MidStreamError(
            f"{head.cand.backend}: stream broke after {len(delivered)} characters were "
            f"delivered ({exc}); not repeated elsewhere",
            delivered=delivered,
            backend=head.cand.backend,
            attempts=call.attempts,
            cause=exc,
        )

    async def _discard(self, head: _Head) -> None:
        """A second stream reached its first token after the winner: close and record it."""
        await _aclose(head.iterator)
        self._executor._fail(self._call, head.cand, head.rec, head.t0, asyncio.CancelledError())

    async def _open(self, call: Call, cand: Candidate, hedge: bool, retry: int) -> _Head:
        """Start one stream and wait for its first token (failover is free until then)."""
        ex = self._executor
        rec = ex._begin(call, cand, hedge, retry)
        t0 = ex._clock()
        iterator: AsyncIterator[Chunk] | None = None
        buffered: list[Chunk] = []
        try:
            request = call.build_request(cand, ex._remaining(call))
            iterator = ex.backends[cand.backend].astream(request).__aiter__()
            while True:
                chunk = await iterator.__anext__()
                buffered.append(chunk)
                if chunk.text or chunk.tool_calls or chunk.finish_reason or chunk.usage:
                    break
        except StopAsyncIteration:
            pass
        except BaseException as exc:
            ex._fail(call, cand, rec, t0, exc)
            await _aclose(iterator)
            raise
        assert iterator is not None
        return _Head(cand, rec, iterator, buffered, t0, (ex._clock() - t0) * 1000)


class _Pending:
    """Chunks already read while racing for the first token, then the rest of the stream."""

    def __init__(self, buffered: list[Chunk], iterator: AsyncIterator[Chunk]) -> None:
        self._buffered = list(buffered)
        self._iterator = iterator

    async def next(self, remaining: float | None) -> Chunk:
        if self._buffered:
            return self._buffered.pop(0)
        if remaining is not None and remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            return await self._iterator.__anext__()


async def _aclose(iterator: AsyncIterator[Chunk] | None) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        # Closing a broken stream must not mask the error that broke it.
        with contextlib.suppress(Exception):
            await closer()


async def _cancel_all(
    tasks: Mapping[asyncio.Task[T], Candidate], discard: Callable[[T], Awaitable[None]] | None
) -> None:
    """Cancel the losers; one that finished anyway is handed to ``discard``."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            result = await task
        except BaseException:  # noqa: BLE001 - losers' errors are already recorded
            continue
        if discard is not None:
            await discard(result)


def _count_usage(call: Call, text: str) -> Usage:
    """Usage when a backend omits it: our estimate, flagged as such."""
    return Usage(call.plan.request.prompt_tokens_expected, estimate_text_tokens(text), True)


def _integrity_flags(
    call: Call, cand: Candidate, model: str, usage: Usage, cost: float
) -> list[str]:
    """Cheap checks that a backend told the truth about what it did."""
    flags: list[str] = []
    if usage.estimated:
        flags.append("usage_estimated")
    if usage.completion_tokens > call.plan.request.max_tokens:
        flags.append("usage_exceeds_max_tokens")
    if cost > cand.worst_case_cost_usd * (1 + 1e-9) + _EPS:
        flags.append("cost_exceeds_quote")
    if model and not _same_model(model, cand.provider_model):
        flags.append("model_mismatch")
    return flags


def _same_model(reported: str, asked: str) -> bool:
    a, b = reported.lower(), asked.lower()
    return a == b or a.endswith("/" + b) or b.endswith("/" + a)
