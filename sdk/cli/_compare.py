"""``intentmesh compare``: projected monthly cost per backend against centralized references."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import (
    ConfigOpt,
    JsonOpt,
    VerboseOpt,
    console,
    default_model,
    emit_json,
    money,
    new_table,
    open_gateway,
    options,
    unknown_model_hint,
)
from intentmesh.cli._errors import EXIT_FAILURE, EXIT_NO_ROUTE, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from intentmesh import Gateway


@dataclass(frozen=True)
class Workload:
    """A month of traffic: how many requests, and their average tokens in and out."""

    requests: float
    avg_input_tokens: float
    avg_output_tokens: float
    source: str


def compare(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model name or alias (default: the only served one).",
            show_default=False,
        ),
    ] = None,
    workload: Annotated[
        Path | None,
        typer.Option(
            "--workload",
            "-w",
            dir_okay=False,
            help="Traffic: a JSONL request log or exported receipts, or a JSON/TOML summary "
            "with requests, avg_in, avg_out.",
            show_default=False,
        ),
    ] = None,
    requests: Annotated[
        int | None,
        typer.Option("--requests", min=1, help="Requests per month.", show_default=False),
    ] = None,
    avg_in: Annotated[
        int | None,
        typer.Option(
            "--avg-in", min=0, help="Average input tokens per request.", show_default=False
        ),
    ] = None,
    avg_out: Annotated[
        int | None,
        typer.Option(
            "--avg-out", min=0, help="Average output tokens per request.", show_default=False
        ),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            dir_okay=False,
            help="Also draw the chart to this PNG (needs intentmesh[charts]).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Projected monthly cost of a workload on each backend, next to centralized reference
    prices for the same or an equivalent model, with the savings ratio."""
    opts = options(ctx, config, json_out, verbose)
    load = resolve_workload(workload, requests, avg_in, avg_out)
    with open_gateway(opts) as gw:
        data = compare_data(gw, model or default_model(gw), load)
    if png is not None:
        draw_png(data, png)
        data["png"] = str(png)
    if opts.json:
        emit_json(data)
    else:
        render_compare(data)


def resolve_workload(
    file: Path | None, requests: int | None, avg_in: int | None, avg_out: int | None
) -> Workload:
    """A workload file, with any of the three numbers overridden by options."""
    if file is not None:
        base = read_workload(file)
        return Workload(
            requests if requests is not None else base.requests,
            avg_in if avg_in is not None else base.avg_input_tokens,
            avg_out if avg_out is not None else base.avg_output_tokens,
            base.source,
        )
    missing = [
        n
        for n, v in (("--requests", requests), ("--avg-in", avg_in), ("--avg-out", avg_out))
        if v is None
    ]
    if missing:
        raise CliError(
            "give --workload FILE, or all of --requests, --avg-in, --avg-out "
            f"(missing {', '.join(missing)})",
            EXIT_USAGE,
        )
    assert requests is not None and avg_in is not None and avg_out is not None
    return Workload(requests, avg_in, avg_out, "options")


def read_workload(file: Path) -> Workload:
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise CliError(f"cannot read workload {file}: {exc.strerror}", EXIT_USAGE) from None
    if file.suffix in (".json", ".toml"):
        return _summary(file, text)
    return _log(file, text)


def _summary(file: Path, text: str) -> Workload:
    import tomllib

    try:
        data = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:
        raise CliError(f"{file}: not valid {file.suffix[1:].upper()}: {exc}", EXIT_USAGE) from None
    names = {
        "requests": ("requests", "requests_per_month"),
        "avg_in": ("avg_in", "avg_input_tokens"),
        "avg_out": ("avg_out", "avg_output_tokens"),
    }
    values: dict[str, float] = {}
    for key, spellings in names.items():
        found = next((data[s] for s in spellings if isinstance(data, dict) and s in data), None)
        if not isinstance(found, int | float) or isinstance(found, bool) or found < 0:
            raise CliError(f"{file}: needs a non-negative number {spellings[0]!r}", EXIT_USAGE)
        values[key] = float(found)
    return Workload(values["requests"], values["avg_in"], values["avg_out"], str(file))


def _log(file: Path, text: str) -> Workload:
    count, total_in, total_out = 0, 0.0, 0.0
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            tokens_in, tokens_out = _tokens(json.loads(line))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CliError(
                f"{file}:{number}: not a request or receipt line ({exc})", EXIT_USAGE
            ) from None
        count += 1
        total_in += tokens_in
        total_out += tokens_out
    if not count:
        raise CliError(f"{file}: no requests in the file", EXIT_USAGE)
    return Workload(count, total_in / count, total_out / count, str(file))


def _tokens(item: dict[str, Any]) -> tuple[float, float]:
    """(input, output) tokens of one JSONL line: measured usage, explicit counts, or an estimate."""
    from intentmesh.router import EXPECTED_OUTPUT_FRACTION, estimate_prompt_tokens

    usage = item.get("usage") or (item.get("body") or {}).get("usage")
    if isinstance(usage, dict):
        return float(usage["prompt_tokens"]), float(usage["completion_tokens"])
    if "input_tokens" in item:
        return float(item["input_tokens"]), float(item["output_tokens"])
    messages = item.get("messages") or [{"role": "user", "content": item["prompt"]}]
    _, expected = estimate_prompt_tokens(messages)
    return float(expected), float(item.get("max_tokens", 256)) * EXPECTED_OUTPUT_FRACTION


def compare_data(gw: Gateway, model: str, load: Workload) -> dict[str, Any]:
    """The ``compare --json`` document (schema ``intentmesh.compare.v1``)."""
    from intentmesh.cli._reference import reference_table

    canonical = gw.catalog.resolve(model)
    offers = sorted(
        (o for o in gw.offers if o.model == canonical),
        key=lambda o: (o.input_price + o.output_price, o.backend),
    )
    if not offers:
        hint = unknown_model_hint(gw, (model,)) or "no configured backend serves it"
        raise CliError(f"cannot compare {model!r}: {hint}", EXIT_NO_ROUTE)
    table = reference_table()
    n, a_in, a_out = load.requests, load.avg_input_tokens, load.avg_output_tokens
    rows: list[dict[str, Any]] = [
        {
            "kind": "backend",
            "name": o.backend,
            "network": o.network,
            "provider": None,
            "model": o.provider_model,
            "relation": None,
            "input_price": o.input_price,
            "output_price": o.output_price,
            "monthly_cost_usd": n * (a_in * o.input_price + a_out * o.output_price) / 1e6,
        }
        for o in offers
    ]
    refs = table.for_model(canonical)
    rows += [
        {
            "kind": "reference",
            "name": p.provider,
            "network": None,
            "provider": p.provider,
            "model": p.model,
            "relation": relation,
            "input_price": p.input,
            "output_price": p.output,
            "monthly_cost_usd": p.monthly(n, a_in, a_out),
            "source": table.source_url(p.provider),
        }
        for p, relation in refs
    ]
    baseline = _baseline(rows)
    cheapest = min((r for r in rows if r["kind"] == "backend"), key=lambda r: r["monthly_cost_usd"])
    for r in rows:
        if r["kind"] == "backend":
            r["savings_ratio"] = (
                _ratio(baseline["monthly_cost_usd"], r["monthly_cost_usd"]) if baseline else None
            )
        else:
            r["savings_ratio"] = _ratio(r["monthly_cost_usd"], cheapest["monthly_cost_usd"])
    return {
        "schema": "intentmesh.compare.v1",
        "model": canonical,
        "workload": asdict(load),
        "reference": {
            "as_of": table.as_of,
            "age_days": table.age_days(),
            "currency": table.currency,
            "unit": table.unit,
            "sources": list(table.sources),
        },
        "rows": rows,
        "cheapest_backend": cheapest["name"],
        "baseline": {k: baseline[k] for k in ("name", "model", "relation", "monthly_cost_usd")}
        if baseline
        else None,
        "png": None,
    }


def _baseline(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest same-weights reference, else the cheapest equivalent one."""
    for relation in ("same", "equivalent"):
        refs = [r for r in rows if r["relation"] == relation]
        if refs:
            return min(refs, key=lambda r: r["monthly_cost_usd"])
    return None


def _ratio(reference: float, ours: float) -> float | None:
    return round(reference / ours, 2) if ours > 0 else None


def render_compare(data: dict[str, Any]) -> None:
    from rich.text import Text

    out = console()
    load = data["workload"]
    table = new_table(
        f"{data['model']}: {load['requests']:,.0f} requests/month × "
        f"{load['avg_input_tokens']:,.0f} in / {load['avg_output_tokens']:,.0f} out tokens",
        ["", "backend / reference", "model", "$/1M in/out", "per month", "savings"],
        right=("$/1M in/out", "per month", "savings"),
    )
    for r in data["rows"]:
        kind = "mesh" if r["kind"] == "backend" else r["relation"]
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    kind,
                    r["name"],
                    r["model"],
                    f"{r['input_price']:g}/{r['output_price']:g}",
                    money(r["monthly_cost_usd"]),
                    _savings(r),
                )
            ),
            style="bold green" if r["name"] == data["cheapest_backend"] else None,
        )
    out.print(table)
    out.print(Text(bar_chart(data)))
    base = data["baseline"]
    if base:
        out.print(
            Text(
                f"savings: how many times cheaper than {base['name']} {base['model']} (mesh rows), "
                f"or how many times dearer than {data['cheapest_backend']} (reference rows)."
            )
        )
    ref = data["reference"]
    stale = f", {ref['age_days']} days old: re-check the sources" if ref["age_days"] > 180 else ""
    out.print(Text(f"reference list prices as of {ref['as_of']}{stale} (sources in docs/cli.md)"))
    if data["png"]:
        out.print(Text(f"chart written to {data['png']}"))


def _savings(row: dict[str, Any]) -> str:
    ratio = row["savings_ratio"]
    if ratio is None:
        return "free" if row["kind"] == "backend" and row["monthly_cost_usd"] == 0 else "-"
    return f"{ratio:.1f}×"


def bar_chart(data: dict[str, Any], width: int = 40) -> str:
    """Monthly cost as text bars, cheapest first."""
    rows = sorted(data["rows"], key=lambda r: r["monthly_cost_usd"])
    top = max((r["monthly_cost_usd"] for r in rows), default=0.0) or 1.0
    label_width = min(48, max(len(_label(r)) for r in rows))
    lines = []
    for r in rows:
        cells = r["monthly_cost_usd"] / top * width
        bar = "█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else "")
        mark = "◆" if r["kind"] == "backend" else " "
        lines.append(
            f"{mark} {_label(r)[:label_width]:<{label_width}} "
            f"{bar or '▏'} {money(r['monthly_cost_usd'])}"
        )
    return "\n".join(lines) + "\n◆ = backend in this mesh"


def _label(row: dict[str, Any]) -> str:
    return str(row["name"]) if row["kind"] == "backend" else f"{row['name']} {row['model']}"


def draw_png(data: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of monthly cost (matplotlib, Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError(
            "--png needs matplotlib: pip install 'intentmesh[charts]'", EXIT_FAILURE
        ) from None
    rows = sorted(data["rows"], key=lambda r: r["monthly_cost_usd"], reverse=True)
    colors = {"backend": "#2a9d8f", "same": "#e76f51", "equivalent": "#8d99ae"}
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.45 * len(rows)), dpi=120)
    try:
        bars = ax.barh(
            [_label(r)[:44] for r in rows],
            [r["monthly_cost_usd"] for r in rows],
            color=[colors["backend" if r["kind"] == "backend" else r["relation"]] for r in rows],
        )
        ax.bar_label(
            bars, labels=[money(r["monthly_cost_usd"]) for r in rows], padding=3, fontsize=8
        )
        load = data["workload"]
        ax.set_title(
            f"{data['model']}: projected monthly cost\n{load['requests']:,.0f} requests × "
            f"{load['avg_input_tokens']:,.0f} input / "
            f"{load['avg_output_tokens']:,.0f} output tokens",
            fontsize=10,
        )
        ax.set_xlabel(f"USD per month (reference list prices as of {data['reference']['as_of']})")
        ax.margins(x=0.18)
        from matplotlib.patches import Patch

        legend = [
            Patch(color=colors["backend"], label="this mesh"),
            Patch(color=colors["same"], label="same model, centralized"),
            Patch(color=colors["equivalent"], label="closed equivalent"),
        ]
        ax.legend(handles=legend, loc="upper right", fontsize=8)
        fig.tight_layout()
        try:
            fig.savefig(path, format="png")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror}", EXIT_FAILURE) from None
    finally:
        plt.close(fig)
