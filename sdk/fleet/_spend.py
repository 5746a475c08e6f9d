"""Admission and settlement of one request against a named account (SDK and server alike)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from intentmesh.errors import ExecutionError
from intentmesh.fleet._accounts import AccountStore, Hold, Limits
from intentmesh.router import ConsensusPlan

if TYPE_CHECKING:
    from intentmesh._gateway import Gateway
    from intentmesh._intent import Intent
    from intentmesh._result import InferenceResult
    from intentmesh.router import Plan

__all__ = ["Limited", "admit", "cost_of_failure", "settle"]


async def admit(
    store: AccountStore, name: str, limits: Limits, plan: Plan, intent: Intent
) -> tuple[Hold | None, Intent]:
    """Admit ``intent`` under ``name``: its rate windows, and its worst case reserved.

    The intent comes back capped at what was reserved. With no feasible candidate nothing is
    admitted (the call fails with NoRouteError and costs nothing).
    """
    if not plan.candidates:
        return None, intent
    cheapest, most = _worst_cases(plan)
    want = intent.max_price_usd if intent.max_price_usd is not None else most
    hold = await store.aadmit(name, limits, want, cheapest)
    if hold.amount is None:
        return hold, intent
    return hold, intent.model_copy(update={"max_price_usd": hold.amount})


def _worst_cases(plan: Plan) -> tuple[float, float]:
    """The cheapest way the plan can succeed, and the most it can spend, in worst cases.

    A consensus call runs its whole panel (and spares replace members that fail), so its
    cheapest success is the panel's summed worst case and its most is every candidate's."""
    worst = [c.worst_case_cost_usd for c in plan.candidates]
    if isinstance(plan, ConsensusPlan):
        return plan.worst_case_cost_usd, sum(worst)
    return min(worst), max(worst)


async def settle(store: AccountStore, hold: Hold | None, cost_usd: float, tokens: int) -> None:
    """Settle a hold; shielded, so a cancelled request still settles."""
    if hold is None:
        return
    with anyio.CancelScope(shield=True):
        await store.asettle(hold, cost_usd, tokens)


def cost_of_failure(exc: BaseException, hold: Hold | None) -> float:
    """What a failed request cost: its recorded attempts; everything held when unknown."""
    held = (hold.amount or 0.0) if hold is not None else 0.0
    if not isinstance(exc, Exception):  # cancelled: an attempt may have been billed
        return held
    if isinstance(exc, ExecutionError):
        return sum(a.cost_usd for a in exc.attempts)
    return 0.0


class Limited:
    """A gateway whose calls count against one named limit (``gateway.limit("team-a")``).

    Raises :class:`~intentmesh.errors.LimitExceeded` when the budget, USD/day, requests/min or
    tokens/min limit refuses, and :class:`~intentmesh.errors.StateUnavailable` when the shared
    store cannot be reached (budgets fail closed).
    """

    def __init__(self, gateway: Gateway, name: str, limits: Limits, store: AccountStore) -> None:
        self.gateway = gateway
        self.name = name
        self.limits = limits
        self.store = store

    async def ainfer(self, intent: Intent | None = None, **fields: Any) -> InferenceResult:
        from intentmesh._gateway import _coerce_intent

        intent = _coerce_intent(intent, fields)
        hold, capped = await admit(
            self.store, self.name, self.limits, self.gateway.plan(intent), intent
        )
        try:
            result = await self.gateway.ainfer(capped)
        except BaseException as exc:
            await settle(self.store, hold, cost_of_failure(exc, hold), 0)
            raise
        await settle(self.store, hold, result.cost_usd, result.usage.total_tokens)
        return result

    def infer(self, intent: Intent | None = None, **fields: Any) -> InferenceResult:
        """Blocking :meth:`ainfer`."""
        return self.gateway._portal.run(self.ainfer(intent, **fields))

    async def abalance(self) -> tuple[float | None, float, float]:
        """``(budget, spent, reserved)`` of this limit's budget (budget None: no budget)."""
        found = await self.store.abalance(self.name, self.limits)
        return found.budget, found.spent, found.reserved

    def balance(self) -> tuple[float | None, float, float]:
        return self.gateway._portal.run(self.abalance())
