"""What one generation request goes through, between HTTP parsing and the response body:
intent -> key policy -> admission (rate limits, budget reservation) -> gateway call -> settlement.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from intentmesh._gateway import Gateway, ResultStream
from intentmesh._intent import Intent
from intentmesh._result import InferenceResult
from intentmesh.errors import LimitExceeded, StateUnavailable
from intentmesh.fleet import (
    AccountStore,
    Hold,
    LocalAccounts,
    SpendBook,
    admit,
    cost_of_failure,
    settle,
)
from intentmesh.router import Plan
from intentmesh.server._config import KeyConfig
from intentmesh.server._errors import ApiError, translate
from intentmesh.server._keys import apply_policy
from intentmesh.server._openai import ParsedRequest

__all__ = ["Prepared", "Service"]


@dataclass(slots=True)
class Prepared:
    """A validated request with its admission (``hold`` None: the key has no limits)."""

    intent: Intent
    request: ParsedRequest
    account: str | None = None
    hold: Hold | None = None

    @property
    def reserved(self) -> float:
        return (self.hold.amount or 0.0) if self.hold is not None else 0.0


class Service:
    """Runs requests against one gateway, keeping each key within its budget and rates."""

    def __init__(self, gateway: Gateway, accounts: AccountStore, keys: list[KeyConfig]) -> None:
        self.gateway = gateway
        self.accounts = accounts
        self.keys = {k.label: k for k in keys}
        if isinstance(accounts, LocalAccounts):
            for key in keys:
                if key.budget_usd is not None:
                    accounts.open_account(key.label, key.budget_usd)

    @property
    def book(self) -> SpendBook | None:
        """The embedded budget store (None when budgets live in the fleet's Redis)."""
        return self.accounts.book if isinstance(self.accounts, LocalAccounts) else None

    async def prepare(self, request: ParsedRequest, key: KeyConfig | None) -> Prepared:
        """Build the intent, apply the key's policy, check its rates and reserve its worst case."""
        try:
            intent = apply_policy(Intent(**request.fields), key, self.gateway.catalog)
        except Exception as exc:
            raise self.error(exc, request, None) from exc
        if key is None or not key.limits.any:
            return Prepared(intent, request)
        return await self._admit(Prepared(intent, request, key.label), key)

    async def complete(self, job: Prepared) -> InferenceResult:
        try:
            result = await self.gateway.ainfer(job.intent)
        except BaseException as exc:
            await self._settle(job, cost_of_failure(exc, job.hold))
            raise self.error(exc, job.request, job.intent) from exc
        await self._settle(job, result.cost_usd, result.usage.total_tokens)
        return result

    async def open_stream(self, job: Prepared) -> ResultStream:
        """The gateway's own stream, opened: it raised before any content or it has begun."""
        stream = self.gateway.astream(job.intent)
        try:
            await stream.aopen()
        except BaseException as exc:
            spent = stream.spent_usd() if _is_cancel(exc) else cost_of_failure(exc, job.hold)
            await self._settle(job, spent)
            raise self.error(exc, job.request, job.intent) from exc
        return stream

    async def finish_stream(self, job: Prepared, stream: ResultStream) -> None:
        """Settle a stream that ended, broke or was cancelled."""
        res = stream.result
        cost = res.cost_usd if res is not None else stream.spent_usd()
        await self._settle(job, cost, res.usage.total_tokens if res is not None else 0)

    def error(self, exc: BaseException, request: ParsedRequest, intent: Intent | None) -> ApiError:
        if _is_cancel(exc):
            raise exc
        return translate(exc, lambda: self._requote(intent), request.top_level)

    # -- admission -----------------------------------------------------------------------------

    async def _admit(self, job: Prepared, key: KeyConfig) -> Prepared:
        assert job.account is not None
        plan = self.gateway.plan(job.intent)
        try:
            hold, capped = await admit(self.accounts, job.account, key.limits, plan, job.intent)
        except LimitExceeded as exc:
            raise _refused(exc) from None
        except StateUnavailable as exc:
            raise ApiError(503, str(exc), "service_unavailable", "state_unavailable") from None
        return Prepared(capped, job.request, job.account, hold)

    async def _settle(self, job: Prepared, cost: float, tokens: int = 0) -> None:
        hold, job.hold = job.hold, None
        await settle(self.accounts, hold, cost, tokens)

    def _requote(self, intent: Intent | None) -> tuple[Plan | None, float | None]:
        if intent is None:
            return None, None
        with contextlib.suppress(Exception):
            uncapped = intent.model_copy(update={"max_price_usd": None})
            return self.gateway.plan(uncapped), intent.max_price_usd
        return None, intent.max_price_usd


def _refused(exc: LimitExceeded) -> ApiError:
    """A budget spent is 402; a rate window or the day's USD is 429 with Retry-After."""
    if exc.kind == "budget":
        return ApiError(
            402, f"API key {exc}", "insufficient_quota", "budget_exhausted"
        )
    wait = math.ceil(exc.retry_after or 1.0)
    return ApiError(
        429,
        f"API key {exc}",
        "rate_limit_error",
        f"{exc.kind}_exceeded",
        headers={"retry-after": str(wait)},
    )


def _is_cancel(exc: BaseException) -> bool:
    return not isinstance(exc, Exception)
