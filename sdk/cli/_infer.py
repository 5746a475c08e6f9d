"""``intentmesh infer`` (answer, then a one-line summary) and ``intentmesh plan`` (dry run)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import (
    ConfigOpt,
    ExcludeOpt,
    HedgeOpt,
    IntentArgs,
    JsonOpt,
    MaxLatencyOpt,
    MaxPriceOpt,
    MaxTokensOpt,
    ModelOpt,
    NetworkOpt,
    Optimize,
    OptimizeOpt,
    SeedOpt,
    SystemOpt,
    TemperatureOpt,
    VerboseOpt,
    Verifiability,
    VerifiabilityOpt,
    console,
    emit_json,
    emit_json_line,
    money,
    new_table,
    open_gateway,
    options,
    unknown_model_hint,
)
from intentmesh.cli._errors import EXIT_NO_ROUTE, CliError

if TYPE_CHECKING:
    from intentmesh import Gateway, InferenceResult, Intent
    from intentmesh.router import Plan

PromptArg = Annotated[str, typer.Argument(help="The prompt ('-' reads standard input).")]
StreamOpt = Annotated[bool, typer.Option("--stream", help="Print tokens as they arrive.")]


def infer(
    ctx: typer.Context,
    prompt: PromptArg,
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = 256,
    temperature: TemperatureOpt = 0.0,
    seed: SeedOpt = None,
    max_price: MaxPriceOpt = None,
    max_latency: MaxLatencyOpt = None,
    verifiability: VerifiabilityOpt = Verifiability.receipt,
    optimize: OptimizeOpt = Optimize.cost,
    network: NetworkOpt = None,
    exclude: ExcludeOpt = None,
    hedge: HedgeOpt = None,
    system: SystemOpt = None,
    stream: StreamOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Serve a prompt on the best feasible backend: the answer on stdout, then a summary line
    (backend, network, cost, latency, receipt) on stderr."""
    opts = options(ctx, config, json_out, verbose)
    args = IntentArgs(
        prompt,
        model,
        max_tokens,
        temperature,
        seed,
        max_price,
        max_latency,
        verifiability,
        optimize,
        network,
        exclude,
        hedge,
        system,
    )
    with open_gateway(opts) as gw:
        intent = args.build(gw)
        if stream:
            result = _stream(gw, intent, opts.json)
        else:
            result = gw.infer(intent)
            if opts.json:
                emit_json(result_data(result))
            else:
                sys.stdout.write(result.text.rstrip("\n") + "\n")
    if opts.json and stream:
        emit_json_line({"type": "result", **result_data(result)})
    elif not opts.json:
        sys.stdout.flush()
        sys.stderr.write(summary_line(result) + "\n")


def _stream(gw: Gateway, intent: Intent, as_json: bool) -> InferenceResult:
    run = gw.stream(intent)
    wrote = False
    try:
        for chunk in run:
            if not chunk.text:
                continue
            if as_json:
                emit_json_line({"type": "chunk", "text": chunk.text})
            else:
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
                wrote = True
    finally:
        if wrote:
            sys.stdout.write("\n")
            sys.stdout.flush()
    assert run.result is not None
    return run.result


def result_data(result: InferenceResult) -> dict[str, Any]:
    """The ``infer --json`` document (schema ``intentmesh.infer.v1``)."""
    return {"schema": "intentmesh.infer.v1", **result.to_dict(), "receipt_id": result.receipt_id}


def summary_line(result: InferenceResult) -> str:
    """``─ akash (akash) · llama-3.1-8b-instruct · $0.0000025 · 131 ms · 4 attempts (3 failed)``…"""
    failed = sum(1 for a in result.attempts if a.outcome != "ok")
    attempts = len(result.attempts)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}" + (
        f" ({failed} failed)" if failed else ""
    )
    parts = [
        f"─ {result.backend} ({result.network})",
        result.model,
        money(result.cost_usd),
        f"{result.latency_ms:.0f} ms",
        "cached" if result.cached else tries,
        f"receipt {result.receipt_id}" if result.receipt_id else "no receipt",
    ]
    if result.flags:
        parts.append("flags: " + ",".join(result.flags))
    return " · ".join(parts)


def plan(
    ctx: typer.Context,
    prompt: PromptArg,
    model: ModelOpt = None,
    max_tokens: MaxTokensOpt = 256,
    max_price: MaxPriceOpt = None,
    max_latency: MaxLatencyOpt = None,
    verifiability: VerifiabilityOpt = Verifiability.receipt,
    optimize: OptimizeOpt = Optimize.cost,
    network: NetworkOpt = None,
    exclude: ExcludeOpt = None,
    system: SystemOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Dry run: the candidates in the order they would be tried, and every rejection with its
    reason. Sends nothing."""
    opts = options(ctx, config, json_out, verbose)
    args = IntentArgs(
        prompt,
        model,
        max_tokens,
        max_price=max_price,
        max_latency=max_latency,
        verifiability=verifiability,
        optimize=optimize,
        networks=network,
        exclude=exclude,
        system=system,
    )
    with open_gateway(opts) as gw:
        intent = args.build(gw)
        the_plan = gw.plan(intent)
        hint = unknown_model_hint(gw, the_plan.models)
    data = plan_data(the_plan, hint)
    if opts.json:
        emit_json(data)
    else:
        render_plan(the_plan)
    if not the_plan.candidates:
        wanted = " or ".join(repr(m) for m in the_plan.models)
        reason = hint or (
            "no backend is configured" if not the_plan.rejections else "see the reasons above"
        )
        raise CliError(f"no backend can serve {wanted}: {reason}", EXIT_NO_ROUTE)


def plan_data(the_plan: Plan, hint: str = "") -> dict[str, Any]:
    """The ``plan --json`` document (schema ``intentmesh.plan.v1``)."""
    req = the_plan.request
    return {
        "schema": "intentmesh.plan.v1",
        **the_plan.to_dict(),
        "feasible": the_plan.feasible,
        "prompt_tokens": {
            "upper_bound": req.prompt_tokens_max,
            "expected": req.prompt_tokens_expected,
        },
        "max_tokens": req.max_tokens,
        "hint": hint,
    }


def render_plan(the_plan: Plan) -> None:
    from rich.text import Text

    out = console()
    table = new_table(
        f"plan for {' or '.join(the_plan.models)}",
        ["#", "backend", "network", "provider model", "worst case", "expected", "latency", "p95"],
        right=("#", "worst case", "expected", "latency", "p95"),
    )
    for i, c in enumerate(the_plan.candidates, 1):
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    i,
                    c.backend,
                    c.offer.network,
                    c.provider_model,
                    money(c.worst_case_cost_usd),
                    money(c.expected_cost_usd),
                    f"{c.expected_latency_ms:.0f} ms",
                    f"{c.p95_latency_ms:.0f} ms",
                )
            )
        )
    if the_plan.candidates:
        out.print(table)
    else:
        out.print(Text("no feasible candidate"))
    for r in the_plan.rejections:
        out.print(Text(f"✗ {r.reason:<26} {r.message}"))
