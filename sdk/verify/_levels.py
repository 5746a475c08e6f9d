"""How the gateway serves each verifiability level on top of the executor.

    none, receipt     Executor.complete as is (the receipt is written by the gateway)
    attested          each attempt also fetches evidence for a fresh nonce, in parallel; the
                      answer counts only when the evidence checks out, else fail over
    proof             each attempt's proof is checked by the backend's proof verifier
    consensus         the panel of k distinct-operator backends answers with greedy decoding
                      and a fixed seed; the answer counts only when they all agree

A level is never downgraded: a backend that claims a level without the means to show it is
left out of the plan (its offer does not list the level) and, if reached anyway, raises
:class:`LevelUnavailable` for that attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from intentmesh.errors import (
    AllBackendsFailed,
    BackendError,
    ConsensusAnswer,
    ConsensusError,
    LevelUnavailable,
    ProofFailed,
    VerificationFailed,
)
from intentmesh.router import (
    AttemptFn,
    Call,
    Candidate,
    ConsensusPlan,
    ConsensusPolicy,
    Plan,
    Rejection,
    Try,
    consensus_plan,
    operator_of,
    verdict,
)
from intentmesh.verify._attestation import AttestationVerifier, TdxAttestationVerifier
from intentmesh.verify._proof import (
    ProofVerifier,
    ProvingBackend,
    averify_proof,
    build_proof_verifier,
    request_inputs,
)
from intentmesh.verify._spot import SpotPlan, SpotPolicy, spot_plan, spot_record, with_rate

if TYPE_CHECKING:
    from intentmesh._intent import Intent
    from intentmesh._result import InferenceResult
    from intentmesh.adapters.base import ChatRequest
    from intentmesh.config import BackendConfig, GatewayConfig
    from intentmesh.router import Executor, HealthBook, Outcome

__all__ = ["LevelRunner"]

BUFFERED_LEVELS = frozenset({"attested", "consensus", "proof", "spot"})


def _option(entry: BackendConfig, name: str) -> Mapping[str, Any] | None:
    value = getattr(entry, name, None)
    if value is None:
        value = entry.options.get(name)
    return value if isinstance(value, Mapping) else None


class LevelRunner:
    """Attestation and proof verifiers per backend, the consensus policy, and the runners."""

    def __init__(
        self,
        config: GatewayConfig,
        health: HealthBook,
        *,
        consensus: ConsensusPolicy | None = None,
        spot: SpotPolicy | None = None,
    ) -> None:
        self.health = health
        self.consensus = consensus or ConsensusPolicy()
        self.spot = spot or SpotPolicy()
        self.attestors: dict[str, AttestationVerifier] = {}
        self.provers: dict[str, ProofVerifier] = {}
        for entry in config.backends:
            if not entry.enabled:
                continue
            att = _option(entry, "attestation")
            if att is not None:
                self.attestors[entry.name] = TdxAttestationVerifier.from_config(
                    entry.name, entry.base_url, att, entry.api_key()
                )
            proof = _option(entry, "proof")
            if proof is not None:
                self.provers[entry.name] = build_proof_verifier(entry.name, proof)

    # -- planning ---------------------------------------------------------------------

    def levels_of(self, entry: BackendConfig) -> frozenset[str]:
        """The levels a backend can show: what it claims, less what it has no means for."""
        levels = {"none", "receipt", *entry.verifiability}
        if entry.name not in self.attestors:
            levels.discard("attested")
        if entry.name not in self.provers:
            levels.discard("proof")
        return frozenset(levels)

    def policy_for(self, intent: Intent) -> ConsensusPolicy:
        k = getattr(intent, "consensus_k", None) or self.consensus.k
        threshold = getattr(intent, "consensus_threshold", None) or self.consensus.threshold
        seed = intent.seed if intent.seed is not None else self.consensus.seed
        return ConsensusPolicy(k=k, threshold=threshold, seed=seed)

    def spot_for(self, intent: Intent) -> SpotPolicy:
        policy = with_rate(self.spot, intent.spot_rate, intent.spot_fail)
        return policy if intent.seed is None else replace(policy, seed=intent.seed)

    def shape_plan(self, intent: Intent, plan: Plan) -> Plan:
        """For consensus, the panel and its summed worst case; for spot, the reference split
        out; other levels unchanged."""
        level = intent.verifiability
        if level == "consensus":
            return consensus_plan(plan, self.policy_for(intent))
        if level == "spot":
            return spot_plan(plan, self.spot_for(intent))
        means: set[str] | None = None
        if level == "attested":
            means = set(self.attestors)
        elif level == "proof":
            means = set(self.provers)
        if means is None:
            return plan
        keep = tuple(c for c in plan.candidates if c.backend in means)
        dropped = tuple(
            Rejection(
                c.backend,
                "verifiability_unsupported",
                f"{c.backend}: claims verifiability {level!r} but has no "
                f"{'attestation' if level == 'attested' else 'proof verifier'} configured; "
                "not downgraded",
                c.model,
            )
            for c in plan.candidates
            if c.backend not in means
        )
        if not dropped:
            return plan
        return replace(plan, candidates=keep, rejections=(*plan.rejections, *dropped))

    @staticmethod
    def buffers(intent: Intent) -> bool:
        """Levels whose answer must be verified whole before any of it is shown."""
        return intent.verifiability in BUFFERED_LEVELS

    # -- running ----------------------------------------------------------------------

    async def complete(self, executor: Executor, intent: Intent, call: Call) -> Outcome:
        level = intent.verifiability
        if level == "consensus":
            return await self._consensus(executor, intent, call)
        if level == "spot":
            return await self._spot(executor, intent, call)
        if level == "attested":
            return await executor.complete(call, attempt=self._attested(executor))
        if level == "proof":
            inputs = request_inputs(intent.chat_messages())
            return await executor.complete(call, attempt=self._proved(executor, inputs))
        return await executor.complete(call)

    def receipt_fields(self, result: InferenceResult) -> dict[str, Any]:
        """``{"verification": {...}}`` when the answer carries evidence of its level."""
        for attempt in result.attempts:
            found = attempt.extra.get("verification")
            if found is not None:
                return {"verification": found}
        return {}

    async def aclose(self) -> None:
        for verifier in self.attestors.values():
            await verifier.aclose()

    # -- attested ---------------------------------------------------------------------

    def _attested(self, executor: Executor) -> AttemptFn:
        async def attempt(call: Call, cand: Candidate, t: Try) -> Outcome:
            verifier = self.attestors.get(cand.backend)
            if verifier is None:
                raise _unavailable(executor, call, cand, t, "attested")
            nonce = secrets.token_hex(32)
            evidence = asyncio.create_task(verifier.aattest(nonce))
            try:
                outcome = await executor.attempt(call, cand, t)
            except BaseException:
                evidence.cancel()
                with contextlib.suppress(BaseException):
                    await evidence
                raise
            try:
                report = await evidence
                verifier.check_served_by(report, outcome.completion.headers)
            except VerificationFailed as exc:
                raise self._rejected(outcome, exc) from None
            except BackendError as exc:
                raise self._rejected(outcome, VerificationFailed(str(exc), check="fetch")) from exc
            outcome.attempt.extra["verification"] = report.to_receipt()
            return outcome

        return attempt

    # -- proof ------------------------------------------------------------------------

    def _proved(self, executor: Executor, inputs: list[list[float]]) -> AttemptFn:
        async def attempt(call: Call, cand: Candidate, t: Try) -> Outcome:
            verifier = self.provers.get(cand.backend)
            backend = executor.backends[cand.backend]
            if verifier is None or not isinstance(backend, ProvingBackend):
                raise _unavailable(executor, call, cand, t, "proof")
            outcome = await executor.attempt(call, cand, t)
            try:
                bundle = backend.proof_for(outcome.completion)
                if bundle is None:
                    raise ProofFailed("proof: the backend returned no proof", check="missing")
                if _answer_outputs(outcome.completion.text) != [list(r) for r in bundle.outputs]:
                    raise ProofFailed("proof: the answer text is not the proven output")
                report = await averify_proof(verifier, bundle, inputs)
            except VerificationFailed as exc:
                raise self._rejected(outcome, exc) from None
            outcome.attempt.extra["verification"] = report.to_receipt()
            return outcome

        return attempt

    def _rejected(self, outcome: Outcome, exc: VerificationFailed) -> VerificationFailed:
        """Turn a verified-looking success into a failed attempt, and penalise the backend."""
        backend = outcome.candidate.backend
        message = f"{str(exc).removeprefix(f'{backend}: ')} (failed check: {exc.check})"
        error = type(exc)(message, backend=backend, check=exc.check)
        rec = outcome.attempt
        rec.outcome, rec.error_kind, rec.error = "error", error.kind, str(error)
        rec.extra["check"] = error.check
        self.health.penalize(backend)
        self.health.record_failure(backend, error.kind, str(error))
        return error

    # -- spot -------------------------------------------------------------------------

    async def _spot(self, executor: Executor, intent: Intent, call: Call) -> Outcome:
        policy = self.spot_for(intent)
        if not isinstance(call.plan, SpotPlan):
            call.plan = spot_plan(call.plan, policy)
        plan = call.plan
        call.build_request = _greedy(call.build_request, policy.seed)
        outcome = await executor.complete(call)
        answer = _response_digest(outcome)
        if plan.reference is None or not policy.sampled():
            outcome.attempt.extra["verification"] = spot_record(
                policy, sampled=False, answer_digest=answer
            )
            return outcome
        commitments = outcome.completion.extra.get("toploc")
        build = call.build_request
        if commitments and "proofs" in commitments:
            call.build_request = _toploc_check(build, commitments)
        try:
            reference = await _reference_answer(executor, call, plan, plan.reference)
        finally:
            call.build_request = build
        if reference is None:
            outcome.attempt.extra["verification"] = spot_record(
                policy, sampled=True, answer_digest=answer, outcome="reference_failed"
            )
            return outcome
        agreed, check = _spot_verdict(outcome, reference, commitments)
        outcome.attempt.extra["verification"] = spot_record(
            policy,
            sampled=True,
            answer_digest=answer,
            reference_digest=_response_digest(reference),
            outcome="agreed" if agreed else "disagreed",
            toploc=check,
        )
        if not agreed:
            self.health.penalize(outcome.candidate.backend)
            if policy.fail:
                error = self._rejected(
                    outcome,
                    VerificationFailed(
                        _spot_failure(policy, check), check="spot_toploc" if check else "spot"
                    ),
                )
                raise AllBackendsFailed(str(error), call.attempts)
        return outcome

    # -- consensus --------------------------------------------------------------------

    async def _consensus(self, executor: Executor, intent: Intent, call: Call) -> Outcome:
        plan = call.plan
        if not isinstance(plan, ConsensusPlan):
            plan = consensus_plan(plan, self.policy_for(intent))
        policy = self.policy_for(intent)
        greedy = _greedy(call.build_request, policy.seed)
        answers = await _panel_answers(executor, call, plan, greedy)
        texts = [o.completion.text for o in answers]
        v = verdict(texts, policy)
        members = [
            ConsensusAnswer(o.candidate.backend, operator_of(o.candidate), o.completion.text, s)
            for o, s in zip(answers, v.scores, strict=True)
        ]
        if not v.agreed:
            for i in v.dissenters:
                self.health.penalize(answers[i].candidate.backend)
            raise ConsensusError(
                members,
                dissenters=[answers[i].candidate.backend for i in v.dissenters],
                comparison=policy.comparison,
                threshold=policy.threshold,
                attempts=call.attempts,
            )
        winner = answers[0]
        winner.attempt.extra["verification"] = _consensus_record(policy, v.agreement, answers)
        return winner


def _unavailable(
    executor: Executor, call: Call, cand: Candidate, t: Try, level: str
) -> BackendError:
    exc = LevelUnavailable(
        f"claims verifiability {level!r} but has no means to show it; not downgraded",
        backend=cand.backend,
    )
    return executor.refuse(call, cand, t, exc)


def _greedy(
    build: Callable[[Candidate, float | None], ChatRequest], seed: int
) -> Callable[[Candidate, float | None], ChatRequest]:
    def greedy(cand: Candidate, remaining: float | None) -> ChatRequest:
        return replace(build(cand, remaining), temperature=0.0, seed=seed, top_p=None)

    return greedy


async def _panel_answers(
    executor: Executor,
    call: Call,
    plan: ConsensusPlan,
    build: Callable[[Candidate, float | None], ChatRequest],
) -> list[Outcome]:
    """One answer from each panel member; a member that fails is replaced by a spare of an
    operator not yet used. Answers come back in panel order."""
    used = {operator_of(c) for c in plan.panel}
    spares = [c for c in plan.candidates if c not in plan.panel]
    queue = list(plan.panel)
    answers: list[Outcome] = []
    while queue:
        subs = [
            Call(Plan(plan.models, (c,), (), plan.request), build, call.budget, call.deadline)
            for c in queue
        ]
        results = await asyncio.gather(
            *(executor.complete(s) for s in subs), return_exceptions=True
        )
        for sub in subs:
            call.attempts.extend(sub.attempts)
        queue = []
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, AllBackendsFailed):
                    raise result
                spare = next((s for s in spares if operator_of(s) not in used), None)
                if spare is None:
                    raise AllBackendsFailed(
                        f"consensus needs {plan.k} answers from distinct operators; "
                        f"{len(answers)} came back and no spare is left ({result})",
                        call.attempts,
                    )
                used.add(operator_of(spare))
                queue.append(spare)
            else:
                answers.append(result)
    return answers


async def _reference_answer(
    executor: Executor, call: Call, plan: Plan, reference: Candidate
) -> Outcome | None:
    """The same request on the reference backend; ``None`` when it could not answer."""
    only = Plan(plan.models, (reference,), (), plan.request)
    sub = Call(only, call.build_request, call.budget, call.deadline)
    try:
        return await executor.complete(sub)
    except AllBackendsFailed:
        return None
    finally:
        call.attempts.extend(sub.attempts)


def _toploc_check(
    build: Callable[[Candidate, float | None], ChatRequest], commitments: Mapping[str, Any]
) -> Callable[[Candidate, float | None], ChatRequest]:
    """The reference request asking the reference to check the answer's TOPLOC proofs."""
    ask = {"toploc_verify": {"token_ids": list(commitments.get("token_ids") or []),
                             "proofs": list(commitments["proofs"])}}  # fmt: skip

    def check(cand: Candidate, remaining: float | None) -> ChatRequest:
        request = build(cand, remaining)
        return replace(request, extra={**request.extra, "intentmesh": ask})

    return check


def _spot_verdict(
    answer: Outcome, reference: Outcome, commitments: Mapping[str, Any] | None
) -> tuple[bool, dict[str, Any] | None]:
    """Exact text comparison, or the reference's TOPLOC verdict when the answer was committed."""
    if not commitments or "proofs" not in commitments:
        return reference.completion.text == answer.completion.text, None
    verdict = (reference.completion.extra.get("toploc") or {}).get("verification")
    if not isinstance(verdict, Mapping):
        return False, {"verified": False, "reason": "the reference returned no TOPLOC verdict"}
    check = dict(verdict)
    if reference.completion.text != answer.completion.text:  # ids committed, other text sent
        check["verified"] = False
        check["reason"] = "the committed token ids do not decode to the answer's text"
    return bool(check.get("verified")), check


def _spot_failure(policy: SpotPolicy, check: Mapping[str, Any] | None) -> str:
    if check is not None:
        return (
            f"spot check (toploc): the reference backend {policy.reference!r} rejected the "
            f"answer's activation commitments: {check.get('reason')}"
        )
    return (
        f"spot check: the answer differs from the reference backend {policy.reference!r} "
        f"under greedy decoding with seed {policy.seed}"
    )


def _response_digest(outcome: Outcome) -> str:
    from intentmesh.receipts import digest

    c = outcome.completion
    return digest({"text": c.text, "tool_calls": c.tool_calls, "finish_reason": c.finish_reason})


def _consensus_record(policy: ConsensusPolicy, agreement: float, answers: Sequence[Outcome]) -> Any:
    from intentmesh.receipts import digest

    return {
        "level": "consensus",
        "k": policy.k,
        "comparison": policy.comparison,
        "threshold": policy.threshold,
        "seed": policy.seed,
        "agreement": agreement,
        "members": [
            {
                "backend": o.candidate.backend,
                "operator": operator_of(o.candidate),
                "provider_model": o.candidate.provider_model,
                "response_digest": digest(
                    {
                        "text": o.completion.text,
                        "tool_calls": o.completion.tool_calls,
                        "finish_reason": o.completion.finish_reason,
                    }
                ),
            }
            for o in answers
        ],
    }


def _answer_outputs(text: str) -> list[list[float]] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict):
        data = data.get("output")
    if isinstance(data, list) and data and not isinstance(data[0], list):
        data = [data]
    try:
        return [[float(x) for x in row] for row in data] if isinstance(data, list) else None
    except (TypeError, ValueError):
        return None
