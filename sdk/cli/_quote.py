"""``intentmesh quote``: what one request would cost on every backend that serves the model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import (
    ConfigOpt,
    ExcludeOpt,
    IntentArgs,
    JsonOpt,
    MaxLatencyOpt,
    MaxPriceOpt,
    MaxTokensOpt,
    ModelOpt,
    NetworkOpt,
    Optimize,
    OptimizeOpt,
    SystemOpt,
    VerboseOpt,
    Verifiability,
    VerifiabilityOpt,
    console,
    emit_json,
    money,
    new_table,
    open_gateway,
    options,
    price_age,
    unknown_model_hint,
)
from intentmesh.cli._errors import EXIT_NO_ROUTE, CliError

if TYPE_CHECKING:
    from intentmesh import Gateway, Intent
    from intentmesh.router import Offer, Plan

PromptArg = Annotated[str, typer.Argument(help="The prompt ('-' reads standard input).")]


def quote(
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
    """Quote a request on every backend that serves the model: prices, worst-case and expected
    cost, latency, verifiability, price freshness, and why a backend is not feasible."""
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
        data = quote_data(gw, intent)
    if not data["rows"]:
        hint = data["hint"] or "no configured backend serves it"
        raise CliError(f"cannot quote {' or '.join(data['models'])!r}: {hint}", EXIT_NO_ROUTE)
    if opts.json:
        emit_json(data)
    else:
        render_quote(data)
    if not data["feasible"]:
        raise CliError(
            "no backend is feasible for this request (see the reasons above)", EXIT_NO_ROUTE
        )


def quote_data(gw: Gateway, intent: Intent) -> dict[str, Any]:
    """The ``quote --json`` document (schema ``intentmesh.quote.v1``, see docs/cli.md)."""
    plan = gw.plan(intent)
    req = plan.request
    offers = [o for o in gw.offers if o.model in req.models]
    rows = [_row(gw, plan, offer, rank) for rank, offer in enumerate(_ordered(plan, offers))]
    feasible = [r for r in rows if r["feasible"]]
    cheapest = min(feasible, key=lambda r: (r["expected_cost_usd"], r["backend"]), default=None)
    fastest = min(feasible, key=lambda r: (r["expected_latency_ms"], r["backend"]), default=None)
    for r in rows:
        r["cheapest"] = r is cheapest
        r["fastest"] = r is fastest
    serving = {o.backend for o in offers}
    return {
        "schema": "intentmesh.quote.v1",
        "models": list(req.models),
        "prompt_tokens": {
            "upper_bound": req.prompt_tokens_max,
            "expected": req.prompt_tokens_expected,
        },
        "max_tokens": req.max_tokens,
        "limits": {
            "max_price_usd": req.max_price_usd,
            "max_latency_ms": req.max_latency_ms,
            "verifiability": req.verifiability,
            "optimize": req.optimize,
        },
        "rows": rows,
        "feasible": bool(feasible),
        "cheapest": cheapest["backend"] if cheapest else None,
        "fastest": fastest["backend"] if fastest else None,
        "not_serving": sorted(set(gw.backends) - serving),
        "hint": unknown_model_hint(gw, req.models),
    }


def _ordered(plan: Plan, offers: list[Offer]) -> list[Offer]:
    """Candidates in plan order, then infeasible offers by price."""
    order = {(c.backend, c.model): i for i, c in enumerate(plan.candidates)}
    return sorted(
        offers,
        key=lambda o: (
            order.get((o.backend, o.model), len(order)),
            o.input_price + o.output_price,
            o.backend,
        ),
    )


def _row(gw: Gateway, plan: Plan, offer: Offer, rank: int) -> dict[str, Any]:
    from intentmesh.router import EXPECTED_OUTPUT_FRACTION

    req = plan.request
    latency = gw.health.latency(offer.backend, offer.provider_model, offer.latency_prior_ms)
    rejection = next(
        (r for r in plan.rejections if r.backend == offer.backend and r.model == offer.model), None
    )
    expected_out = int(req.max_tokens * EXPECTED_OUTPUT_FRACTION)
    return {
        "backend": offer.backend,
        "network": offer.network,
        "model": offer.model,
        "provider_model": offer.provider_model,
        "input_price": offer.input_price,
        "output_price": offer.output_price,
        "worst_case_cost_usd": offer.worst_case_cost(req.prompt_tokens_max, req.max_tokens),
        "expected_cost_usd": offer.cost(req.prompt_tokens_expected, expected_out),
        "expected_latency_ms": round(latency.expected_ms, 3),
        "p95_latency_ms": round(latency.p95_ms, 3),
        "verifiability": sorted(offer.verifiability),
        "price_source": offer.price_source,
        "price_age_s": offer.price_age_s,
        "feasible": rejection is None,
        "rank": rank + 1 if rejection is None else None,
        "reason": rejection.reason if rejection else None,
        "message": rejection.message if rejection else None,
    }


def render_quote(data: dict[str, Any]) -> None:
    from rich.text import Text

    out = console()
    table = new_table(
        f"quote for {' or '.join(data['models'])}",
        [
            "backend",
            "network",
            "provider model",
            "$/1M in/out",
            "worst case",
            "expected",
            "latency",
            "verifiability",
            "price",
            "status",
        ],
        right=("$/1M in/out", "worst case", "expected", "latency"),
    )
    for r in data["rows"]:
        style = "bold green" if r["cheapest"] else "bold cyan" if r["fastest"] else None
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    r["backend"],
                    r["network"],
                    r["provider_model"],
                    f"{r['input_price']:g}/{r['output_price']:g}",
                    money(r["worst_case_cost_usd"]),
                    money(r["expected_cost_usd"]),
                    f"{r['expected_latency_ms']:.0f} ms",
                    ",".join(v for v in r["verifiability"] if v != "none") or "none",
                    price_age(r["price_source"], r["price_age_s"]),
                    _status(r),
                )
            ),
            style=style,
        )
    out.print(table)
    for r in data["rows"]:
        if not r["feasible"]:
            out.print(Text(f"✗ {r['message'] or r['reason']}"))
    tokens = data["prompt_tokens"]
    out.print(
        Text(
            f"prompt ≈ {tokens['expected']} tokens (at most {tokens['upper_bound']}), "
            f"max_tokens {data['max_tokens']}; "
            "expected cost assumes half of max_tokens is generated."
        )
    )
    if data["feasible"]:
        cheap = next(r for r in data["rows"] if r["cheapest"])
        fast = next(r for r in data["rows"] if r["fastest"])
        out.print(
            Text(
                f"cheapest: {cheap['backend']} ({money(cheap['expected_cost_usd'])} expected) · "
                f"fastest: {fast['backend']} ({fast['expected_latency_ms']:.0f} ms)"
            )
        )


def _status(row: dict[str, Any]) -> str:
    if not row["feasible"]:
        return f"✗ {row['reason']}"
    marks = [m for m in ("cheapest", "fastest") if row[m]]
    return "✓ " + " ".join(marks) if marks else "✓"
