"""What one generation request goes through, between HTTP parsing and the response body:
intent -> key policy -> budget reservation -> gateway call -> settlement.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from intentmesh._gateway import Gateway, ResultStream
from intentmesh._intent import Intent
from intentmesh._result import InferenceResult
from intentmesh.errors import ExecutionError
from intentmesh.router import ConsensusPlan, Plan
from intentmesh.server._budget import SpendBook
from intentmesh.server._config import KeyConfig
from intentmesh.server._errors import ApiError, translate
from intentmesh.server._keys import apply_policy
from intentmesh.server._openai import ParsedRequest

__all__ = ["Prepared", "Service"]


@dataclass(slots=True)
class Prepared:
    """A validated request with its budget reservation (``account`` None: no budget)."""

    intent: Intent
    request: ParsedRequest
    account: str | None = None
    reserved: float = 0.0


class Service:
    """Runs requests against one gateway, keeping each key's spend within its budget."""

    def __init__(self, gateway: Gateway, book: SpendBook, keys: list[KeyConfig]) -> None:
        self.gateway = gateway
        self.book = book
        for key in keys:
            if key.budget_usd is not None:
                book.open_account(key.label, key.budget_usd)

    def prepare(self, request: ParsedRequest, key: KeyConfig | None) -> Prepared:
        """Build the intent, apply the key's policy and reserve its worst case."""
        try:
            intent = apply_policy(Intent(**request.fields), key, self.gateway.catalog)
        except Exception as exc:
            raise self.error(exc, request, None) from exc
        if key is None or key.budget_usd is None:
            return Prepared(intent, request)
        return self._reserve(Prepared(intent, request, key.label))

    async def complete(self, job: Prepared) -> InferenceResult:
        try:
            result = await self.gateway.ainfer(job.intent)
        except BaseException as exc:
            self._settle(job, _cost_of_failure(exc, job))
            raise self.error(exc, job.request, job.intent) from exc
        self._settle(job, result.cost_usd)
        return result

    async def open_stream(self, job: Prepared) -> ResultStream:
        """The gateway's own stream, opened: it raised before any content or it has begun."""
        stream = self.gateway.astream(job.intent)
        try:
            await stream.aopen()
        except BaseException as exc:
            self._settle(job, stream.spent_usd() if _is_cancel(exc) else _cost_of_failure(exc, job))
            raise self.error(exc, job.request, job.intent) from exc
        return stream

    def finish_stream(self, job: Prepared, stream: ResultStream) -> None:
        """Settle a stream that ended, broke or was cancelled."""
        cost = stream.result.cost_usd if stream.result is not None else stream.spent_usd()
        self._settle(job, cost)

    def error(self, exc: BaseException, request: ParsedRequest, intent: Intent | None) -> ApiError:
        if _is_cancel(exc):
            raise exc
        return translate(exc, lambda: self._requote(intent), request.top_level)

    # -- budget ------------------------------------------------------------------------------

    def _reserve(self, job: Prepared) -> Prepared:
        assert job.account is not None
        plan = self.gateway.plan(job.intent)
        if not plan.candidates:
            return job  # it fails with NoRouteError and costs nothing
        cheapest, most = _worst_cases(plan)
        want = job.intent.max_price_usd if job.intent.max_price_usd is not None else most
        for _ in range(3):  # another worker may take the money between reading and reserving
            amount = min(want, self.book.left(job.account))
            if amount + 1e-12 < cheapest:
                raise self._exhausted(job.account, cheapest)
            if self.book.try_reserve(job.account, amount):
                capped = job.intent.model_copy(update={"max_price_usd": amount})
                return Prepared(capped, job.request, job.account, amount)
        raise self._exhausted(job.account, cheapest)

    def _settle(self, job: Prepared, cost: float) -> None:
        if job.account is not None and job.reserved:
            self.book.settle(job.account, job.reserved, cost)
            job.reserved = 0.0

    def _exhausted(self, account: str, cheapest: float) -> ApiError:
        budget, spent, reserved = self.book.balance(account)
        return ApiError(
            402,
            f"API key {account!r} has ${max(budget - spent - reserved, 0):.6g} of its "
            f"${budget:.6g} budget left (${spent:.6g} spent, ${reserved:.6g} reserved by "
            f"requests in flight); this request's cheapest worst case is ${cheapest:.6g}",
            "insufficient_quota",
            "budget_exhausted",
        )

    def _requote(self, intent: Intent | None) -> tuple[Plan | None, float | None]:
        if intent is None:
            return None, None
        with contextlib.suppress(Exception):
            uncapped = intent.model_copy(update={"max_price_usd": None})
            return self.gateway.plan(uncapped), intent.max_price_usd
        return None, intent.max_price_usd


def _worst_cases(plan: Plan) -> tuple[float, float]:
    """The cheapest way the plan can succeed, and the most it can spend, in worst cases.

    A consensus call runs its whole panel (and spares replace members that fail), so its
    cheapest success is the panel's summed worst case and its most is every candidate's."""
    worst = [c.worst_case_cost_usd for c in plan.candidates]
    if isinstance(plan, ConsensusPlan):
        return plan.worst_case_cost_usd, sum(worst)
    return min(worst), max(worst)


def _is_cancel(exc: BaseException) -> bool:
    return not isinstance(exc, Exception)


def _cost_of_failure(exc: BaseException, job: Prepared) -> float:
    """What a failed request cost: recorded attempts; everything reserved when unknown."""
    if _is_cancel(exc):
        return job.reserved
    if isinstance(exc, ExecutionError):
        return sum(a.cost_usd for a in exc.attempts)
    return 0.0
