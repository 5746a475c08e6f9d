"""Streaming on the executor: fail over freely until the first token, then stream with time
limits, and on a mid-stream failure either raise or continue on the next candidate.

    open          Executor.run over ``_open``: a first token within the first-token limit
    body          chunks with a stall limit, the attempt's ``timeout_s`` ceiling and the deadline
    continuation  ``on_midstream="continue"``: the next candidate continues from what was
                  delivered (assistant prefill); only its new tokens are streamed
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from intentmesh.adapters.base import ChatRequest, Chunk, Completion, Usage
from intentmesh.errors import BackendError, BackendTimeout, DeadlineExceeded, MidStreamError
from intentmesh.router._accounting import Audit, max_answer_chars
from intentmesh.router._executor import Call, Executor, Outcome, Try, within
from intentmesh.router._plan import Attempt, Candidate
from intentmesh.router._tokens import estimate_text_tokens

__all__ = ["StreamRun"]


@dataclass(slots=True)
class _Head:
    """A stream that has produced its first token, with what it produced so far."""

    cand: Candidate
    rec: Attempt
    iterator: AsyncIterator[Chunk]
    buffered: list[Chunk]
    t0: float
    ttft_ms: float
    end: float | None  # the attempt's timeout_s ceiling on the executor's clock


@dataclass(slots=True)
class _Segment:
    """What one attempt's stream said: its text and its last usage, finish and model."""

    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish: str | None = None
    model: str = ""
    cut: bool = False


class _Broken(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class StreamRun:
    """Async iterator of chunks for one call; ``outcome`` is set when it ends."""

    def __init__(self, executor: Executor, call: Call) -> None:
        self._executor = executor
        self._call = call
        self._audit = Audit()
        self.outcome: Outcome | None = None

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._run()

    async def _run(self) -> AsyncIterator[Chunk]:
        ex, call = self._executor, self._call
        head = await ex.run(call, self._open, self._discard)
        delivered = ""
        try:
            while True:
                seg = _Segment()
                try:
                    async for chunk in self._body(head, seg, len(delivered)):
                        yield chunk
                except _Broken as broken:
                    delivered += "".join(seg.parts)
                    error = self._broken(head, delivered, broken.cause)
                    if call.on_midstream != "continue":
                        raise error from broken.cause
                    head = await self._continue(head, delivered, error)
                    continue
                break
        finally:  # closed early or broken: end the upstream request now, outermost first
            await _aclose(head.iterator)
        self.outcome = self._finish(head, seg, delivered)
        yield Chunk(usage=self.outcome.usage, model=seg.model)

    # -- opening ------------------------------------------------------------------------

    async def _open(self, call: Call, cand: Candidate, t: Try) -> _Head:
        """Start one stream and wait for its first token (failover is free until then)."""
        ex = self._executor
        rec = ex.book.begin(call, cand, t)
        t0 = ex.clock()
        first, why = ex.attempt_limit(call, cand, t, first_token=True)
        ceiling = ex.limits_for(cand.backend).timeout_s
        iterator: AsyncIterator[Chunk] | None = None
        buffered: list[Chunk] = []
        try:
            request = call.build_request(cand, _least(ceiling, ex.remaining(call)))
            iterator = ex.backends[cand.backend].astream(request).__aiter__()
            await within(first, why, cand.backend, _first_token(iterator, buffered))
        except BaseException as exc:
            ex.book.fail(call, cand, rec, t0, exc)
            await _aclose(iterator)
            raise
        end = None if ceiling is None else t0 + ceiling
        return _Head(cand, rec, iterator, buffered, t0, (ex.clock() - t0) * 1000, end)

    async def _discard(self, head: _Head) -> None:
        """A second stream reached its first token after the winner: close and record it."""
        await _aclose(head.iterator)
        self._executor.book.fail(
            self._call, head.cand, head.rec, head.t0, asyncio.CancelledError()
        )

    # -- the body -----------------------------------------------------------------------

    async def _body(self, head: _Head, seg: _Segment, before: int) -> AsyncIterator[Chunk]:
        """Yield one attempt's chunks; a failure is raised as :class:`_Broken`."""
        room = max_answer_chars(self._call.plan.request.max_tokens) - before
        while True:
            try:
                chunk = await self._next(head)
            except StopAsyncIteration:
                return
            except (BackendError, TimeoutError, DeadlineExceeded) as exc:
                raise _Broken(exc) from exc
            self._audit.malformed_events += chunk.malformed_events
            seg.usage = chunk.usage or seg.usage
            seg.finish = chunk.finish_reason or seg.finish
            seg.model = chunk.model or seg.model
            text = chunk.text
            if len(text) > room:  # read no more than max_tokens allows: cut and flag
                text, seg.cut, seg.finish = text[:room], True, "length"
            room -= len(text)
            seg.parts.append(text)
            if text or chunk.tool_calls or chunk.finish_reason:
                yield chunk if text == chunk.text else replace(chunk, text=text)
            if seg.cut:
                self._audit.cut_at_chars = before + sum(len(p) for p in seg.parts)
                await _aclose(head.iterator)
                return

    async def _next(self, head: _Head) -> Chunk:
        if head.buffered:
            return head.buffered.pop(0)
        limit, why = self._read_limit(head)
        if limit is None:
            return await head.iterator.__anext__()
        try:
            async with asyncio.timeout(max(limit, 0.0)):
                return await head.iterator.__anext__()
        except TimeoutError:
            backend = head.cand.backend
            if why == "deadline":
                raise DeadlineExceeded("max_latency_ms passed mid-stream") from None
            if why == "timeout_s":
                raise BackendTimeout(
                    "stream exceeded the attempt's timeout_s", backend=backend
                ) from None
            raise BackendTimeout(
                f"stream stalled: no token for {limit:.3g} s ({why})", backend=backend
            ) from None

    def _read_limit(self, head: _Head) -> tuple[float | None, str]:
        """The tightest of the stall limit, the attempt's ceiling and the deadline."""
        ex, call = self._executor, self._call
        options: list[tuple[float, str]] = []
        stall = call.stall_s
        why = "stall_ms"
        if stall is None:
            stall = ex.limits_for(head.cand.backend).stall_timeout_s
            why = "stall_timeout_s"
        if stall is not None:
            options.append((stall, why))
        if head.end is not None:
            options.append((head.end - ex.clock(), "timeout_s"))
        remaining = ex.remaining(call)
        if remaining is not None:
            options.append((remaining, "deadline"))
        return min(options) if options else (None, "")

    # -- endings ------------------------------------------------------------------------

    def _finish(self, head: _Head, seg: _Segment, delivered: str) -> Outcome:
        ex, call = self._executor, self._call
        text = "".join(seg.parts)
        completion = Completion(text=text, finish_reason=seg.finish, usage=seg.usage,
                                model=seg.model)
        latency = (ex.clock() - head.t0) * 1000
        outcome = ex.book.succeed(
            call, head.cand, head.rec, latency, head.ttft_ms, completion, self._audit
        )
        if delivered:  # a continuation: the answer is both attempts' text
            outcome.completion = replace(completion, text=delivered + text)
            usage = outcome.usage
            outcome.usage = Usage(
                usage.prompt_tokens,
                usage.completion_tokens + estimate_text_tokens(delivered),
                True,
            )
        return outcome

    def _broken(self, head: _Head, delivered: str, exc: BaseException) -> MidStreamError:
        """Record the broken attempt; tokens already delivered are never repeated."""
        ex, call = self._executor, self._call
        if isinstance(exc, TimeoutError):
            exc = DeadlineExceeded("max_latency_ms passed mid-stream", call.attempts)
        ex.book.fail(call, head.cand, head.rec, head.t0, exc, estimate_text_tokens(delivered))
        return MidStreamError(
            f"{head.cand.backend}: stream broke after {len(delivered)} characters were "
            f"delivered ({exc}); not repeated elsewhere",
            delivered=delivered,
            backend=head.cand.backend,
            attempts=call.attempts,
            cause=exc,
        )

    async def _continue(self, head: _Head, delivered: str, error: MidStreamError) -> _Head:
        """Ask the next candidates to continue ``delivered``; raise ``error`` if none can."""
        ex, call = self._executor, self._call
        rest = _after(call, head.cand)
        if not rest or (ex.remaining(call) or 1.0) <= 0:
            raise error
        sub = _continuation_call(call, rest, delivered)
        try:
            new = await ex.run(sub, self._open, self._discard)
        except Exception as exc:
            raise error from exc
        new.rec.extra["continues"] = {"backend": head.cand.backend, "at_chars": len(delivered)}
        self._audit.continuation = {
            "from_backend": head.cand.backend,
            "to_backend": new.cand.backend,
            "splice_at_chars": len(delivered),
            "splice_at_tokens": estimate_text_tokens(delivered),
        }
        return new


def _after(call: Call, broken: Candidate) -> list[Candidate]:
    """Candidates on other backends, in plan order, that were not the broken one."""
    return [c for c in call.plan.candidates if c.backend != broken.backend]


def _continuation_call(call: Call, rest: list[Candidate], delivered: str) -> Call:
    """A call whose requests end with ``delivered`` as an assistant prefill to continue.

    Its candidates reserve the longer prompt's worst case from the same budget, so the cap
    covers both attempts.
    """
    extra_bytes = len(delivered.encode())
    done = estimate_text_tokens(delivered)
    req = call.plan.request
    request = replace(
        req,
        prompt_tokens_max=req.prompt_tokens_max + extra_bytes,
        prompt_tokens_expected=req.prompt_tokens_expected + done,
    )
    cands = tuple(
        replace(c, worst_case_cost_usd=c.worst_case_cost_usd
                + extra_bytes * c.offer.input_price / 1e6)
        for c in rest
    )
    plan = replace(call.plan, candidates=cands, request=request)

    def build(cand: Candidate, limit: float | None) -> ChatRequest:
        return continuation_request(call.build_request(cand, limit), delivered)

    return Call(
        plan, build, call.budget, call.deadline, None, call.attempts, call.started,
        call.max_ttft_s, call.stall_s, call.on_midstream,
    )


def continuation_request(request: ChatRequest, delivered: str) -> ChatRequest:
    """``request`` continued from ``delivered``: an assistant prefill with vLLM's
    ``continue_final_message`` (chat), or the text appended to the prompt (completions)."""
    budget = max(1, request.max_tokens - estimate_text_tokens(delivered))
    if request.kind == "completion":
        return replace(request, prompt=(request.prompt or "") + delivered, max_tokens=budget)
    extra: dict[str, Any] = {
        **request.extra,
        "continue_final_message": True,
        "add_generation_prompt": False,
    }
    messages = [*request.messages, {"role": "assistant", "content": delivered}]
    return replace(request, messages=messages, max_tokens=budget, extra=extra)


async def _first_token(iterator: AsyncIterator[Chunk], buffered: list[Chunk]) -> None:
    """Read until a chunk carries something (text, tool calls, finish or usage)."""
    while True:
        try:
            chunk = await iterator.__anext__()
        except StopAsyncIteration:
            return
        buffered.append(chunk)
        if chunk.text or chunk.tool_calls or chunk.finish_reason or chunk.usage:
            return


def _least(*values: float | None) -> float | None:
    known = [v for v in values if v is not None]
    return min(known) if known else None


async def _aclose(iterator: AsyncIterator[Chunk] | None) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        # Closing a broken stream must not mask the error that broke it.
        with contextlib.suppress(Exception):
            await closer()
