"""The executor's public, typed per-attempt seam, used only through ``intentmesh.router``."""

from __future__ import annotations

import pytest

from intentmesh import Intent, IntentValidationError
from intentmesh.adapters.base import ChatRequest
from intentmesh.adapters.openai import OpenAIBackend
from intentmesh.router import (
    AttemptFn,
    Budget,
    Call,
    Candidate,
    Executor,
    HealthBook,
    Offer,
    Outcome,
    RouteRequest,
    Try,
    solve,
)
from intentmesh.testing import FakeOpenAIProvider, Fault


def offers(names: list[str]) -> list[Offer]:
    return [Offer(n, n, "m", "fake-llama", 0.1 * (i + 1), 0.2 * (i + 1))
            for i, n in enumerate(names)]


def call_for(names: list[str]) -> Call:
    request = RouteRequest(("m",), prompt_tokens_max=64, prompt_tokens_expected=8, max_tokens=8)
    plan = solve(request, offers(names), HealthBook(), {n: n for n in names})

    def build(cand: Candidate, limit: float | None) -> ChatRequest:
        return ChatRequest(cand.provider_model, [{"role": "user", "content": "hi"}], max_tokens=8,
                           timeout_s=limit)

    return Call(plan, build, Budget(None))


async def test_complete_runs_a_wrapped_attempt_with_typed_tries() -> None:
    with FakeOpenAIProvider(["fake-llama"]) as a, FakeOpenAIProvider(["fake-llama"]) as b:
        a.always(Fault.status(503))
        backends = {"a": OpenAIBackend("a", a.base_url), "b": OpenAIBackend("b", b.base_url)}
        executor = Executor(backends, HealthBook())
        seen: list[tuple[str, Try]] = []

        def wrap(inner: AttemptFn) -> AttemptFn:
            async def attempt(call: Call, cand: Candidate, t: Try) -> Outcome:
                seen.append((cand.backend, t))
                return await inner(call, cand, t)

            return attempt

        call = call_for(["a", "b"])
        outcome = await executor.complete(call, attempt=wrap(executor.attempt))
        assert outcome.candidate.backend == "b" and outcome.completion.text == "echo: hi"
        assert seen == [("a", Try(hedge=False, retry=0, left=1)), ("b", Try(False, 0, 0))]
        assert [(x.backend, x.outcome) for x in call.attempts] == [("a", "error"), ("b", "ok")]
        for backend in backends.values():
            await backend.aclose()


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_ttft_ms", 0), ("stall_ms", -5), ("on_midstream", "retry")],
)
def test_new_intent_fields_are_validated(field: str, value: object) -> None:
    with pytest.raises(IntentValidationError) as info:
        Intent(model="m", prompt="hi", **{field: value})
    assert info.value.field == field
    assert "use " in str(info.value)
