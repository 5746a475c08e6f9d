"""The executor: runs a plan with retries, failover, hedging, a deadline and a price cap.

Layers, each named for its job::

    complete / stream            deadline around everything (stream: router/_streaming.py)
      └─ run → _race             failover down the plan, hedging after a delay
           └─ _with_retries      one hand loop of retries on one backend
                └─ attempt       one request: breaker, budget, time limits, record, classify

The per-attempt step is public and typed (:class:`Try`, :data:`AttemptFn`), so verification
levels wrap :meth:`Executor.attempt` instead of reaching into the executor. Decisions (may we
retry, how long may this attempt take, is the cap kept) are small pure helpers; the I/O is the
backend call alone.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from intentmesh.adapters.base import (
    Backend,
    ChatRequest,
    Completion,
    Usage,
    set_caller_deadline,
)
from intentmesh.errors import (
    AllBackendsFailed,
    BackendError,
    BackendTimeout,
    DeadlineExceeded,
    InvalidRequest,
    RateLimited,
)
from intentmesh.router._accounting import Audit, max_answer_chars, settle_usage
from intentmesh.router._health import HealthBook
from intentmesh.router._plan import Attempt, Candidate, Plan

if TYPE_CHECKING:
    from intentmesh.router._streaming import StreamRun

__all__ = [
    "AttemptFn",
    "AttemptLimits",
    "Budget",
    "Call",
    "Executor",
    "Outcome",
    "RetryPolicy",
    "Try",
]

T = TypeVar("T")
_EPS = 1e-12
_CIRCUIT_OPEN = "circuit open"
_NO_BUDGET = "price cap: not enough budget left for its worst case"
OnMidstream = Literal["error", "continue"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries on one backend: ``retries`` more tries, exponential backoff, Retry-After honoured.

    A retry on the same backend happens only when no other candidate is left, or when the
    backend's ``Retry-After`` is at most ``short_retry_after_s`` (then waiting is cheaper than
    a cold backend). A Retry-After longer than ``max_retry_after_s`` never waits.
    """

    retries: int = 2
    backoff_s: float = 0.2
    backoff_max_s: float = 4.0
    max_retry_after_s: float = 5.0
    short_retry_after_s: float = 1.0

    def wait_s(self, retry_number: int, error: BaseException | None) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        wait: float = min(self.backoff_max_s, self.backoff_s * 2.0 ** (retry_number - 1))
        after = retry_after(error)
        if after is not None:
            wait = max(wait, after)
        return wait


@dataclass(frozen=True, slots=True)
class AttemptLimits:
    """One backend's time limits per attempt, in seconds (``None``: no such limit).

    ``timeout_s`` is a hard ceiling on a whole attempt (connect, headers and the full body);
    ``first_token_timeout_s`` abandons an attempt with no token yet; ``stall_timeout_s`` ends a
    stream whose tokens stop flowing for that long.
    """

    timeout_s: float | None = None
    first_token_timeout_s: float | None = None
    stall_timeout_s: float | None = None


_NO_LIMITS = AttemptLimits()
"""The limits of a backend configured without any."""


@dataclass(frozen=True, slots=True)
class Try:
    """Which try of a candidate this is: a hedge or not, the retry number on that backend, and
    how many candidates still wait behind it (``left``, used to share the deadline)."""

    hedge: bool = False
    retry: int = 0
    left: int = 0


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
    """One intent's execution: the plan, how to address a candidate, and its limits.

    ``max_ttft_s`` and ``stall_s`` come from the intent (``max_ttft_ms``, ``stall_ms``) and
    override the backend's configured defaults; ``on_midstream`` says what a broken stream does.
    """

    plan: Plan
    build_request: Callable[[Candidate, float | None], ChatRequest]
    budget: Budget
    deadline: float | None = None
    hedge_delay_s: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    started: float = 0.0
    max_ttft_s: float | None = None
    stall_s: float | None = None
    on_midstream: OnMidstream = "error"
    more: Callable[[], Sequence[Candidate]] | None = None
    """Candidates after the plan's own, asked for once when those run out (a plan that holds
    only the head of a long ranking still fails over to the rest)."""


@dataclass(slots=True)
class Outcome:
    """The winning attempt of a call; ``audit`` holds what the receipt records beyond usage
    (the backend's own usage claim, an overcharge, malformed events, a continuation)."""

    candidate: Candidate
    completion: Completion
    usage: Usage
    cost_usd: float
    latency_ms: float
    ttft_ms: float | None
    flags: list[str]
    attempt: Attempt
    audit: dict[str, Any] = field(default_factory=dict)


AttemptFn = Callable[[Call, Candidate, Try], Awaitable[Outcome]]


class Executor:
    """Runs plans against backends; shares a :class:`HealthBook` with the solver."""

    def __init__(
        self,
        backends: Mapping[str, Backend],
        health: HealthBook,
        policies: Mapping[str, RetryPolicy] | None = None,
        *,
        default_policy: RetryPolicy | None = None,
        limits: Mapping[str, AttemptLimits] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = backends
        self.health = health
        self.policies = dict(policies or {})
        self.default_policy = default_policy or RetryPolicy()
        self.limits = dict(limits or {})
        self.clock = clock
        self.book = AttemptBook(health, clock)
        self._sleep = sleep

    # -- entry points -----------------------------------------------------------------

    async def complete(self, call: Call, *, attempt: AttemptFn | None = None) -> Outcome:
        """Run ``call`` to one whole answer, or raise an :class:`ExecutionError`.

        ``attempt`` replaces the per-attempt step (verification levels wrap :meth:`attempt`).
        """
        return await self.run(call, attempt or self.attempt)

    def stream(self, call: Call) -> StreamRun:
        """Run ``call`` as a stream; iterate the returned :class:`StreamRun` for chunks."""
        from intentmesh.router._streaming import StreamRun

        return StreamRun(self, call)

    async def run(
        self,
        call: Call,
        attempt: Callable[[Call, Candidate, Try], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """Failover, hedging and retries down the plan, within the call's deadline.

        ``discard`` receives a result that arrived after another attempt had already won.
        """
        if not call.started:  # a continuation keeps its parent's start
            call.started = self.clock()
        async with DeadlineScope(self, call):
            return await self._race(call, attempt, discard)
        raise AssertionError("unreachable")  # pragma: no cover

    async def attempt(self, call: Call, cand: Candidate, t: Try) -> Outcome:
        """One non-streamed request to ``cand``: breaker, budget, time limit, record, classify.

        A non-streamed answer produces its first token with its whole body, so the first-token
        limit bounds the whole attempt here (see docs/routing.md, "Time limits").
        """
        rec = self.book.begin(call, cand, t)
        t0 = self.clock()
        limit, why = self.attempt_limit(call, cand, t, first_token=True)
        try:
            request = call.build_request(cand, limit)
            backend = self.backends[cand.backend]
            completion = await within(limit, why, cand.backend, backend.acomplete(request))
        except BaseException as exc:
            self.book.fail(call, cand, rec, t0, exc)
            raise
        latency = (self.clock() - t0) * 1000
        audit = Audit()
        completion = _cut(completion, call.plan.request.max_tokens, audit)
        return self.book.succeed(call, cand, rec, latency, None, completion, audit)

    def refuse(self, call: Call, cand: Candidate, t: Try, exc: BackendError) -> BackendError:
        """Record a try that could not be made at all (e.g. a level it cannot show)."""
        rec = self.book.new(call, cand, t)
        rec.outcome, rec.error_kind, rec.error = "error", exc.kind, str(exc)
        return exc

    # -- time -------------------------------------------------------------------------

    def limits_for(self, backend: str) -> AttemptLimits:
        """``backend``'s time limits per attempt (none set: all None)."""
        return self.limits.get(backend, _NO_LIMITS)

    def remaining(self, call: Call) -> float | None:
        """Seconds until the call's deadline, or None without one."""
        return None if call.deadline is None else call.deadline - self.clock()

    def attempt_limit(
        self, call: Call, cand: Candidate, t: Try, *, first_token: bool
    ) -> tuple[float | None, str]:
        """The tightest limit on this attempt (or on its first token) and its name.

        With a deadline and ``k`` candidates left (this one included), an attempt may use
        ``remaining / k`` seconds: one silent backend cannot eat the fallback's time.
        """
        lim = self.limits_for(cand.backend)
        options: list[tuple[float, str]] = []
        if lim.timeout_s is not None:
            options.append((lim.timeout_s, "timeout_s"))
        if first_token:
            if call.max_ttft_s is not None:
                options.append((call.max_ttft_s, "max_ttft_ms"))
            elif lim.first_token_timeout_s is not None:
                options.append((lim.first_token_timeout_s, "first_token_timeout_s"))
        remaining = self.remaining(call)
        if remaining is not None and t.left:  # the last one runs into the deadline itself
            options.append((max(remaining, 0.0) / (t.left + 1), "deadline share"))
        if not options:
            return None, ""
        return min(options)

    # -- failover and hedging ---------------------------------------------------------

    async def _race(
        self,
        call: Call,
        runner: Callable[[Call, Candidate, Try], Awaitable[T]],
        discard: Callable[[T], Awaitable[None]] | None = None,
    ) -> T:
        """Try candidates in order; with hedging, start the next one if the first is slow."""
        if call.hedge_delay_s is None:
            return await self._in_turn(call, runner)
        pending = list(call.plan.candidates)
        tasks: dict[asyncio.Task[T], Candidate] = {}
        errors: list[BaseException] = []

        def launch(hedge: bool) -> bool:
            while pending or _extend(call, pending):
                cand = pending[0]
                reason = self._skip_reason(call, cand)
                if reason == _NO_BUDGET and hedge and tasks:
                    return False  # the cap has no room for both now: keep it for failover
                pending.pop(0)
                if reason is None:
                    left = lambda: self._runnable(call, pending)  # noqa: E731
                    coro = self._with_retries(call, cand, hedge, runner, left)
                    tasks[asyncio.create_task(coro)] = cand
                    return True
                self.book.skip(call, cand, Try(hedge), reason)
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
                    errors.append(self._failover_or_raise(call, exc, pending))
                if not tasks:
                    hedged = False
                    launch(False)
        finally:
            await _cancel_all(tasks, discard)
        raise self._all_failed(call, errors)

    async def _in_turn(
        self, call: Call, runner: Callable[[Call, Candidate, Try], Awaitable[T]]
    ) -> T:
        """Failover without hedging: one candidate after another, each awaited in the caller's
        task (no task, no ``asyncio.wait`` per attempt: the hot path's cheapest form)."""
        pending = list(call.plan.candidates)
        errors: list[BaseException] = []
        while pending or _extend(call, pending):
            cand = pending.pop(0)
            reason = self._skip_reason(call, cand)
            if reason is not None:
                self.book.skip(call, cand, Try(False), reason)
                continue
            left = lambda: self._runnable(call, pending)  # noqa: E731
            try:
                return await self._with_retries(call, cand, False, runner, left)
            except Exception as exc:  # noqa: BLE001 - recorded; fail over or raise below
                errors.append(self._failover_or_raise(call, exc, pending))
        raise self._all_failed(call, errors)

    def _failover_or_raise(
        self, call: Call, exc: BaseException, pending: list[Candidate]
    ) -> BaseException:
        """Caller errors end the call; context-length errors narrow the rest of the plan."""
        if not isinstance(exc, BackendError) or exc.failover:
            return exc
        limit = context_limit(exc)
        if limit is None:
            raise exc
        req = call.plan.request
        need = max(limit + 1, req.prompt_tokens_expected + req.max_tokens)
        _extend(call, pending)
        fits = [c for c in pending if (c.offer.context_length or 0) >= need]
        if not fits:
            raise InvalidRequest(
                f"the prompt plus max_tokens exceeds the model's context window ({limit} tokens)"
                " and no other candidate's context window fits; shorten the prompt or lower "
                "max_tokens",
                backend=exc.backend,
                status_code=exc.status_code,
                body=exc.body,
            ) from exc
        pending[:] = fits
        return exc

    def _runnable(self, call: Call, pending: list[Candidate]) -> int:
        """How many waiting candidates could run now (breaker and budget allow them)."""
        return sum(1 for c in pending if self._skip_reason(call, c) is None)

    def _skip_reason(self, call: Call, cand: Candidate) -> str | None:
        """Why ``cand`` cannot start now, or None when it may run."""
        if not self.health.breaker(cand.backend).allows():
            return _CIRCUIT_OPEN
        if not call.budget.fits(cand.worst_case_cost_usd):
            return _NO_BUDGET
        return None

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
        runner: Callable[[Call, Candidate, Try], Awaitable[T]],
        left: Callable[[], int],
    ) -> T:
        """The one retry loop: try, and on a retryable error wait and try the same backend."""
        policy = self.policies.get(cand.backend, self.default_policy)
        retry = 0
        while True:
            try:
                return await runner(call, cand, Try(hedge, retry, left()))
            except BackendError as exc:
                retry += 1
                if not self._may_retry(call, cand, policy, retry, exc, left() > 0):
                    raise
                await self._sleep(policy.wait_s(retry, exc))

    def _may_retry(
        self,
        call: Call,
        cand: Candidate,
        policy: RetryPolicy,
        retry: int,
        error: BaseException | None,
        alternative: bool = False,
    ) -> bool:
        """Pure decision: retry ``retry`` (1-based) after ``error`` on the same backend?

        With another candidate available, fail over instead, unless a short Retry-After
        says this backend will take the request in a moment.
        """
        if not isinstance(error, BackendError) or not error.retryable or retry > policy.retries:
            return False
        after = retry_after(error)
        if after is not None and after > policy.max_retry_after_s:
            return False
        if alternative and (after is None or after > policy.short_retry_after_s):
            return False
        if not self.health.breaker(cand.backend).allows():
            return False
        remaining = self.remaining(call)
        if remaining is not None and policy.wait_s(retry, error) >= remaining:
            return False
        return call.budget.fits(cand.worst_case_cost_usd)


class AttemptBook:
    """Begin, succeed and fail one attempt: breaker, budget reservation, record, health.

    Shared by both drivers (:meth:`Executor.attempt` and the stream run) so they book alike.
    """

    def __init__(self, health: HealthBook, clock: Callable[[], float]) -> None:
        self.health = health
        self.clock = clock

    def new(self, call: Call, cand: Candidate, t: Try) -> Attempt:
        rec = Attempt(
            backend=cand.backend,
            network=cand.offer.network,
            model=cand.model,
            provider_model=cand.provider_model,
            started_ms=(self.clock() - call.started) * 1000,
            retry=t.retry,
            hedge=t.hedge,
        )
        call.attempts.append(rec)
        return rec

    def skip(self, call: Call, cand: Candidate, t: Try, reason: str) -> None:
        rec = self.new(call, cand, t)
        rec.outcome, rec.error_kind, rec.error = "skipped", "skipped", reason

    def begin(self, call: Call, cand: Candidate, t: Try) -> Attempt:
        """Take the breaker and reserve the worst case; a skipped try is recorded and raised."""
        if not self.health.breaker(cand.backend).acquire():
            reason = _CIRCUIT_OPEN
        elif not call.budget.try_reserve(cand.worst_case_cost_usd):
            reason = _NO_BUDGET
        else:
            return self.new(call, cand, t)
        self.skip(call, cand, t, reason)
        raise _Skipped(f"{cand.backend}: {reason}")

    def succeed(
        self,
        call: Call,
        cand: Candidate,
        rec: Attempt,
        latency_ms: float,
        ttft_ms: float | None,
        completion: Completion,
        audit: Audit | None = None,
    ) -> Outcome:
        """Settle usage honestly (see router/_accounting.py), record, and feed health."""
        audit = audit or Audit()
        settled = settle_usage(call.plan.request, cand, completion, audit)
        if settled.quarantine:
            self.health.quarantine(cand.backend, "billed beyond its own quote")
        elif settled.penalise:
            self.health.penalize(cand.backend)
        call.budget.settle(cand.worst_case_cost_usd, settled.cost_usd)
        self.health.observe_latency(cand.backend, cand.provider_model, latency_ms)
        if not settled.quarantine:
            self.health.record_success(cand.backend)
        rec.latency_ms, rec.cost_usd, rec.ttft_ms = latency_ms, settled.cost_usd, ttft_ms
        return Outcome(
            cand,
            completion,
            settled.usage,
            settled.cost_usd,
            latency_ms,
            ttft_ms,
            settled.flags,
            rec,
            settled.audit,
        )

    def fail(
        self,
        call: Call,
        cand: Candidate,
        rec: Attempt,
        t0: float,
        exc: BaseException,
        delivered_tokens: int = 0,
    ) -> None:
        """Record a failed or cancelled attempt, settle its reservation, feed the breaker."""
        rec.latency_ms = (self.clock() - t0) * 1000
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


class _Skipped(Exception):
    """A try that could not start (breaker or budget); already recorded, never retried."""


class DeadlineScope:
    """``async with``: the call's deadline as an asyncio timeout that raises DeadlineExceeded."""

    def __init__(self, executor: Executor, call: Call) -> None:
        self._executor = executor
        self._call = call
        self._timeout: asyncio.Timeout | None = None

    async def __aenter__(self) -> None:
        remaining = self._executor.remaining(self._call)
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


def _extend(call: Call, pending: list[Candidate]) -> bool:
    """Add the call's lazy tail of candidates (once); whether any came."""
    more, call.more = call.more, None
    if more is None:
        return False
    tried = {(c.backend, c.provider_model) for c in call.plan.candidates}
    pending.extend(c for c in more() if (c.backend, c.provider_model) not in tried)
    return bool(pending)


async def within(limit: float | None, why: str, backend: str, aw: Awaitable[T]) -> T:
    """Await ``aw`` for at most ``limit`` seconds; running out is a :class:`BackendTimeout`."""
    if limit is None:
        return await aw
    when = asyncio.get_running_loop().time() + max(limit, 0.0)
    try:
        async with asyncio.timeout_at(when):
            token = set_caller_deadline(when)  # an adapter's timer as long is left out
            try:
                return await aw
            finally:
                token.var.reset(token)
    except TimeoutError:
        raise BackendTimeout(f"no answer within {limit:.3g} s ({why})", backend=backend) from None


def retry_after(error: BaseException | None) -> float | None:
    """Seconds a backend asked us to wait: ``RateLimited.retry_after`` or a numeric header."""
    if isinstance(error, RateLimited):
        return error.retry_after
    if isinstance(error, BackendError):
        value = error.headers.get("retry-after") or error.headers.get("Retry-After")
        try:
            return max(0.0, float(value)) if value else None
        except ValueError:
            return None
    return None


_CONTEXT = re.compile(
    r"context[ _-]?(length|window)|maximum context|too many tokens|prompt is too long"
    r"|context_length_exceeded",
    re.IGNORECASE,
)
_LIMIT = re.compile(r"(?:maximum context length|context (?:length|window))\D{0,40}?(\d{3,8})", re.I)


def context_limit(exc: BackendError) -> int | None:
    """The context window named by a "context length exceeded" 400, or 0 when unnamed;
    None when the error is about something else (content filter, bad field, ...)."""
    if not isinstance(exc, InvalidRequest):
        return None
    text = f"{exc} {exc.body}"
    if not _CONTEXT.search(text):
        return None
    found = _LIMIT.search(text)
    return int(found.group(1)) if found else 0


def _cut(completion: Completion, max_tokens: int, audit: Audit) -> Completion:
    """An answer far longer than ``max_tokens`` allows is cut there and flagged."""
    room = max_answer_chars(max_tokens)
    if len(completion.text) <= room:
        return completion
    audit.cut_at_chars = room
    return replace(completion, text=completion.text[:room], finish_reason="length")


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
