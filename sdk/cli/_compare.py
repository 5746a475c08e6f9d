"""``intentmesh compare``: projected monthly cost per backend against centralized references."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import (
    ConfigOpt,
    JsonOpt,
    Options,
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
from intentmesh.cli._errors import (
    EXIT_FAILURE,
    EXIT_NO_ROUTE,
    EXIT_USAGE,
    CliError,
    read_failure,
)

if TYPE_CHECKING:
    from rich.table import Table

    from intentmesh import Gateway
    from intentmesh.cli._prices import PriceCatalog, References


@dataclass(frozen=True, slots=True)
class Request:
    """One logged request: its tokens, what was paid for it (receipts only) and its model."""

    input_tokens: float
    output_tokens: float
    paid_usd: float | None = None
    model: str | None = None
    counted: str = "given"  # how the tokens were known: measured, given, tokenizer, estimate
    messages: tuple[dict[str, Any], ...] = ()  # a prompt line's conversation, to count


@dataclass(frozen=True)
class Workload:
    """A month of traffic: how many requests, and their average tokens in and out."""

    requests: float
    avg_input_tokens: float
    avg_output_tokens: float
    source: str
    log: tuple[Request, ...] = ()
    tokenizer: str | None = None  # the file whose tokenizer counted the prompt lines

    @classmethod
    def from_log(cls, log: tuple[Request, ...], source: str) -> Workload:
        n = len(log)
        return cls(
            n,
            sum(r.input_tokens for r in log) / n,
            sum(r.output_tokens for r in log) / n,
            source,
            log,
        )

    def summary(self) -> dict[str, Any]:
        """The ``workload`` object of ``compare --json``."""
        counts: dict[str, int] = {}
        for r in self.log:
            counts[r.counted] = counts.get(r.counted, 0) + 1
        return {
            "requests": self.requests,
            "avg_input_tokens": self.avg_input_tokens,
            "avg_output_tokens": self.avg_output_tokens,
            "source": self.source,
            **({"token_counts": counts} if counts else {}),
            **({"tokenizer": self.tokenizer} if self.tokenizer else {}),
        }


RECEIPTS = "receipts"
STALE_TABLE_DAYS = 180
STALE_CATALOG_DAYS = 30


def compare(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model name or alias (default: the receipts' model, else the only served one).",
            show_default=False,
        ),
    ] = None,
    workload: Annotated[
        Path | None,
        typer.Option(
            "--workload",
            "-w",
            dir_okay=False,
            help="Traffic: 'receipts' (this config's receipt ledger), a JSONL request log or "
            "exported receipts, or a JSON/TOML summary with requests, avg_in, avg_out.",
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
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh",
            help="Fetch current reference prices from the public catalog first (and cache them).",
        ),
    ] = False,
    prices_url: Annotated[
        str | None,
        typer.Option(
            "--prices-url",
            help="Catalog base URL for --refresh [default: $INTENTMESH_PRICES_URL, "
            "else https://openrouter.ai].",
            show_default=False,
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
    from intentmesh.cli._prices import current_catalog

    opts = options(ctx, config, json_out, verbose)
    if png is not None:
        charts_available()
    base = _base_workload(opts, workload, requests, avg_in, avg_out)
    catalog, notes = current_catalog(refresh, prices_url)
    with open_gateway(opts) as gw:
        name = model or _log_model(base) or default_model(gw)
        narrowed = counted(for_model(base, gw, name), gw.catalog.resolve(name))
        load = with_overrides(narrowed, requests, avg_in, avg_out)
        data = compare_data(gw, name, load, catalog, notes)
    if png is not None:
        draw_png(data, png)
        data["png"] = str(png)
    if opts.json:
        emit_json(data)
    else:
        render_compare(data)


def _base_workload(
    opts: Options, file: Path | None, requests: int | None, avg_in: int | None, avg_out: int | None
) -> Workload | None:
    if file is not None:
        if str(file) == RECEIPTS and not file.exists():
            return read_ledger(opts)
        return read_workload(file)
    missing = [
        n
        for n, v in (("--requests", requests), ("--avg-in", avg_in), ("--avg-out", avg_out))
        if v is None
    ]
    if missing:
        raise CliError(
            "give --workload FILE (or --workload receipts), or all of --requests, --avg-in, "
            f"--avg-out (missing {', '.join(missing)})",
            EXIT_USAGE,
        )
    return None


def with_overrides(
    base: Workload | None, requests: int | None, avg_in: int | None, avg_out: int | None
) -> Workload:
    if base is None:
        assert requests is not None and avg_in is not None and avg_out is not None
        return Workload(requests, avg_in, avg_out, "options")
    return Workload(
        requests if requests is not None else base.requests,
        avg_in if avg_in is not None else base.avg_input_tokens,
        avg_out if avg_out is not None else base.avg_output_tokens,
        base.source,
        base.log,
        base.tokenizer,
    )


def _log_model(load: Workload | None) -> str | None:
    """The model of a log whose lines all name the same one (receipts do)."""
    models = {r.model for r in (load.log if load else ())}
    return models.pop() if len(models) == 1 and None not in models else None


def for_model(load: Workload | None, gw: Gateway, model: str) -> Workload | None:
    """A log narrowed to the lines of ``model`` (lines that name no model always count)."""
    if load is None or not any(r.model for r in load.log):
        return load
    canonical = gw.catalog.resolve(model)
    kept = tuple(r for r in load.log if r.model is None or gw.catalog.resolve(r.model) == canonical)
    if not kept:
        found = sorted({r.model for r in load.log if r.model})
        raise CliError(
            f"{load.source} has no requests for {model} (it has {', '.join(found)}); pass --model",
            EXIT_USAGE,
        )
    return Workload.from_log(kept, load.source) if len(kept) < len(load.log) else load


def read_ledger(opts: Options) -> Workload:
    """Every receipt in the config's ledger (``--workload receipts``)."""
    from intentmesh.cli._receipts import ledger_path
    from intentmesh.receipts import Ledger

    path = ledger_path(opts, None)
    if isinstance(path, Path) and not path.exists():  # a postgresql:// URL is not a file
        raise CliError(
            f"--workload receipts: no receipt ledger at {path}; it is created by the first "
            "`intentmesh infer`, or pass an export with --workload FILE",
            EXIT_USAGE,
        )
    with Ledger(path) as book:
        lines = [r.to_dict() for r in book]
    log = tuple(r for r in (_request(line) for line in lines) if r is not None)
    if not log:
        raise CliError(f"--workload receipts: the ledger {path} has no receipts yet", EXIT_USAGE)
    return Workload.from_log(log, str(path))


def read_workload(file: Path) -> Workload:
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise read_failure(file, exc, "--workload ") from None
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
    log: list[Request] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            request = _request(json.loads(line))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CliError(
                f"{file}:{number}: not a request or receipt line ({exc})", EXIT_USAGE
            ) from None
        if request is not None:
            log.append(request)
    if not log:
        raise CliError(f"{file}: no requests in the file", EXIT_USAGE)
    return Workload.from_log(tuple(log), str(file))


def _request(item: dict[str, Any]) -> Request | None:
    """One JSONL line: measured usage (receipts), explicit counts, or a prompt to count.

    Receipt lines that are not requests (ledger checkpoints, key rotations) give None.
    """
    body = item.get("body")
    if isinstance(body, dict):
        if "usage" not in body:
            return None
        usage, paid = body["usage"], body.get("cost_usd")
        return Request(
            float(usage["prompt_tokens"]),
            float(usage["completion_tokens"]),
            float(paid) if isinstance(paid, int | float) else None,
            body.get("model"),
            "measured",
        )
    if isinstance(item.get("usage"), dict):
        usage = item["usage"]
        return Request(
            float(usage["prompt_tokens"]), float(usage["completion_tokens"]), counted="measured"
        )
    if "input_tokens" in item:
        return Request(float(item["input_tokens"]), float(item["output_tokens"]))
    return _prompt_request(item)


def _prompt_request(item: dict[str, Any]) -> Request:
    from intentmesh.router import EXPECTED_OUTPUT_FRACTION, estimate_prompt_tokens

    messages = item.get("messages") or [{"role": "user", "content": item["prompt"]}]
    _, expected = estimate_prompt_tokens(messages)
    output = float(item.get("max_tokens", 256)) * EXPECTED_OUTPUT_FRACTION
    return Request(float(expected), output, counted="estimate", messages=tuple(messages))


def counted(load: Workload | None, canonical: str) -> Workload | None:
    """Prompt lines recounted with the model's own tokenizer when it is on this machine."""
    from intentmesh.cli._tokencount import counter_for

    if load is None or not any(r.messages for r in load.log):
        return load
    counter = counter_for(canonical)
    if counter is None:
        return load
    log = tuple(
        replace(r, input_tokens=float(counter.count(r.messages)), counted="tokenizer")
        if r.messages
        else r
        for r in load.log
    )
    return replace(Workload.from_log(log, load.source), tokenizer=counter.source)


def compare_data(
    gw: Gateway,
    model: str,
    load: Workload,
    catalog: PriceCatalog | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """The ``compare --json`` document (schema ``intentmesh.compare.v1``)."""
    from intentmesh.cli._prices import references_for

    canonical = gw.catalog.resolve(model)
    offers = sorted(
        (o for o in gw.offers if o.model == canonical),
        key=lambda o: (o.input_price + o.output_price, o.backend),
    )
    if not offers:
        hint = unknown_model_hint(gw, (model,)) or "no configured backend serves it"
        raise CliError(f"cannot compare {model!r}: {hint}", EXIT_NO_ROUTE)
    refs = references_for(canonical, catalog, notes=notes)
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
    rows += [
        {
            "kind": "reference",
            "name": r.price.provider,
            "network": None,
            "provider": r.price.provider,
            "model": r.price.model,
            "relation": r.relation,
            "input_price": r.price.input,
            "output_price": r.price.output,
            "monthly_cost_usd": r.price.monthly(n, a_in, a_out),
            "source": r.source,
            "as_of": r.as_of,
            "origin": r.origin,
        }
        for r in refs.rows
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
        "workload": load.summary(),
        "reference": reference_info(refs),
        "rows": rows,
        "cheapest_backend": cheapest["name"],
        "baseline": {k: baseline[k] for k in ("name", "model", "relation", "monthly_cost_usd")}
        if baseline
        else None,
        "traffic": traffic(load, rows),
        "png": None,
    }


def reference_info(refs: References) -> dict[str, Any]:
    """Where the reference prices come from: the catalog (and its fetch time) or the table."""
    from intentmesh.cli._prices import CATALOG_NAME

    table, catalog = refs.bundled, refs.catalog
    live = catalog is not None and any(r.origin == "catalog" for r in refs.rows)
    bundled = not live or any(r.origin == "bundled" for r in refs.rows)
    sources: list[dict[str, str]] = []
    if live and catalog is not None:
        sources.append({"provider": "openrouter", "name": f"{CATALOG_NAME} models API",
                        "url": catalog.url})  # fmt: skip
    if bundled:
        used = {r.price.provider for r in refs.rows if r.origin == "bundled"}
        sources += [s for s in table.sources if s.get("provider") in used or not refs.rows]
    return {
        "as_of": catalog.fetched_date() if live and catalog else table.as_of,
        "age_days": catalog.age_days() if live and catalog else table.age_days(),
        "currency": table.currency,
        "unit": table.unit,
        "sources": sources,
        "catalog": {
            "name": CATALOG_NAME,
            "url": catalog.url,
            "fetched_at": catalog.fetched_at,
            "age_days": catalog.age_days(),
        }
        if catalog is not None
        else None,
        "origin": "+".join(n for n, used in (("catalog", live), ("bundled", bundled)) if used),
        "bundled_as_of": table.as_of,
        "bundled_age_days": table.age_days(),
        "notes": list(refs.notes),
    }


def traffic(load: Workload, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the logged requests cost (receipts' ``cost_usd``) and what the same tokens, request
    by request, would have cost on each row; None without receipts."""
    paid = [r for r in load.log if r.paid_usd is not None]
    if not paid:
        return None
    total = sum(r.paid_usd or 0.0 for r in paid)
    out = {
        "requests": len(paid),
        "input_tokens": sum(r.input_tokens for r in paid),
        "output_tokens": sum(r.output_tokens for r in paid),
        "paid_usd": total,
        "source": load.source,
    }
    for row in rows:
        cost = (
            sum(
                r.input_tokens * row["input_price"] + r.output_tokens * row["output_price"]
                for r in paid
            )
            / 1e6
        )
        row["traffic_cost_usd"] = cost
        row["traffic_vs_paid"] = round(cost / total, 2) if total > 0 else None
    return out


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
    count_line = token_count_line(data)
    if count_line:
        out.print(Text(count_line))
    for line in reference_lines(data["reference"]):
        out.print(Text(line))
    if data.get("traffic"):
        out.print(traffic_table(data))
    if data["png"]:
        out.print(Text(f"chart written to {data['png']}"))


def token_count_line(data: dict[str, Any]) -> str | None:
    """How the prompt lines' tokens were counted: the model's tokenizer, or the estimate."""
    counts = data["workload"].get("token_counts", {})
    if counts.get("tokenizer"):
        return (
            f"input tokens of {counts['tokenizer']} prompt line(s): counted with "
            f"{data['model']}'s own tokenizer and chat template ({data['workload']['tokenizer']})"
        )
    if counts.get("estimate"):
        return (
            f"input tokens of {counts['estimate']} prompt line(s): estimated (4 characters per "
            f"token plus template overhead); no tokenizer for {data['model']} on this machine"
        )
    return None


def reference_lines(ref: dict[str, Any]) -> list[str]:
    """Where the reference prices come from, how old they are, and every fallback."""
    catalog = ref.get("catalog")
    lines = [f"note: {n}" for n in ref.get("notes", ())]
    if catalog is not None and "catalog" in ref["origin"]:
        stale = (
            f", {catalog['age_days']} days old: run `intentmesh prices refresh`"
            if catalog["age_days"] > STALE_CATALOG_DAYS
            else ""
        )
        lines.append(
            f"reference prices: {catalog['name']} catalog ({catalog['url']}), fetched "
            f"{_utc(catalog['fetched_at'])}{stale}"
        )
    if "bundled" in ref["origin"]:
        age = ref["bundled_age_days"]
        stale = (
            f", {age} days old: run `intentmesh compare --refresh` for current prices"
            if age > STALE_TABLE_DAYS
            else ""
        )
        lines.append(
            f"reference list prices: bundled table as of {ref['bundled_as_of']}{stale} "
            "(sources in docs/cli.md)"
        )
    return lines


def _utc(iso: str) -> str:
    """``2026-11-30T16:56:23+00:00`` as ``2026-11-30 16:56 UTC``."""
    return f"{iso[:10]} {iso[11:16]} UTC"


def traffic_table(data: dict[str, Any]) -> Table:
    """What the receipts' requests cost, and what the same tokens would have cost per row."""
    from rich.text import Text

    t = data["traffic"]
    table = new_table(
        f"your traffic: {t['requests']:,} requests from {t['source']}, "
        f"{t['input_tokens']:,.0f} in / {t['output_tokens']:,.0f} out tokens; "
        f"you paid {money(t['paid_usd'])}",
        ["", "backend / reference", "model", "same tokens would cost", "vs paid"],
        right=("same tokens would cost", "vs paid"),
    )
    for r in data["rows"]:
        ratio = r.get("traffic_vs_paid")
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    "mesh" if r["kind"] == "backend" else r["relation"],
                    r["name"],
                    r["model"],
                    money(r["traffic_cost_usd"]),
                    "-" if ratio is None else f"{ratio:.1f}×",
                )
            )
        )
    return table


def _savings(row: dict[str, Any]) -> str:
    ratio = row["savings_ratio"]
    if ratio is None:
        return "free" if row["kind"] == "backend" and row["monthly_cost_usd"] == 0 else "-"
    return f"{ratio:.1f}×"


def bar_chart(data: dict[str, Any], width: int = 40) -> str:
    """Monthly cost as text bars, cheapest first."""
    rows = sorted(data["rows"], key=lambda r: r["monthly_cost_usd"])
    top = max((r["monthly_cost_usd"] for r in rows), default=0.0) or 1.0
    label_width = min(64, max(len(_label(r)) for r in rows))
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


def charts_available() -> None:
    """Fail early, before any work, when ``--png`` cannot be drawn."""
    import importlib.util

    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise CliError(
            "--png needs matplotlib, which is not installed: pip install 'intentmesh[charts]'",
            EXIT_FAILURE,
        )


COLORS = {"backend": "#2a9d8f", "same": "#e76f51", "equivalent": "#8d99ae", "paid": "#264653"}


def draw_png(data: dict[str, Any], path: Path) -> None:
    """Write :func:`chart_figure` to ``path``."""
    import matplotlib.pyplot as plt

    fig = chart_figure(data)
    try:
        fig.savefig(path, format="png")
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}", EXIT_FAILURE) from None
    finally:
        plt.close(fig)


def chart_figure(data: dict[str, Any]) -> Any:
    """Horizontal bars of monthly cost, and with receipts a second panel: what was paid vs what
    the same tokens would have cost (matplotlib, Agg backend; the caller closes it)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError(
            "--png needs matplotlib, which is not installed: pip install 'intentmesh[charts]'",
            EXIT_FAILURE,
        ) from None
    rows = sorted(data["rows"], key=lambda r: r["monthly_cost_usd"], reverse=True)
    panels = [("monthly_cost_usd", rows)]
    if data.get("traffic"):
        panels.append(("traffic_cost_usd", [_paid_row(data), *rows]))
    heights = [len(p[1]) for p in panels]
    fig, axes = plt.subplots(
        len(panels), 1, squeeze=False, figsize=(11, 1.4 + 0.42 * sum(heights) + 1.0 * len(panels)),
        dpi=120, gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    for ax, (field, panel_rows) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, panel_rows, field)
    _titles(axes[:, 0], data)
    fig.tight_layout()
    return fig


def _paid_row(data: dict[str, Any]) -> dict[str, Any]:
    paid = data["traffic"]["paid_usd"]
    return {"kind": "paid", "name": "you paid", "model": "", "traffic_cost_usd": paid}


def _bars(ax: Any, rows: list[dict[str, Any]], field: str) -> None:
    """One panel: full labels, every bar's value printed (a tiny bar's just past its end)."""
    values = [r[field] for r in rows]
    colors = [COLORS[r["kind"] if r["kind"] != "reference" else r["relation"]] for r in rows]
    labels = ["you paid (receipts)" if r["kind"] == "paid" else _label(r) for r in rows]
    bars = ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels=labels, fontsize=8)
    top = max(values, default=0.0) or 1.0
    for bar, value in zip(bars, values, strict=True):
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, money(value),
                va="center", ha="left", fontsize=8)  # fmt: skip
    ax.set_xlim(0, top * 1.22)
    ax.invert_yaxis()


def _titles(axes: Any, data: dict[str, Any]) -> None:
    from matplotlib.patches import Patch

    load, ref = data["workload"], data["reference"]
    axes[0].set_title(
        f"{data['model']}: projected monthly cost\n{load['requests']:,.0f} requests × "
        f"{load['avg_input_tokens']:,.0f} input / {load['avg_output_tokens']:,.0f} output tokens",
        fontsize=10,
    )
    axes[-1].set_xlabel(f"USD ({_price_source(ref)})", fontsize=8)
    axes[0].set_xlabel("USD per month", fontsize=8) if len(axes) > 1 else None
    legend = [
        Patch(color=COLORS["backend"], label="this mesh"),
        Patch(color=COLORS["same"], label="same model, centralized"),
        Patch(color=COLORS["equivalent"], label="closed equivalent"),
    ]
    axes[0].legend(handles=legend, loc="lower right", fontsize=8)
    if len(axes) > 1:
        t = data["traffic"]
        axes[1].set_title(
            f"your traffic: {t['requests']:,} requests, {t['input_tokens']:,.0f} in / "
            f"{t['output_tokens']:,.0f} out tokens: paid vs the same tokens elsewhere",
            fontsize=10,
        )


def _price_source(ref: dict[str, Any]) -> str:
    catalog = ref.get("catalog")
    parts = []
    if catalog is not None and "catalog" in ref["origin"]:
        parts.append(f"reference prices: {catalog['name']} catalog, fetched {ref['as_of']}")
    if "bundled" in ref["origin"]:
        parts.append(f"bundled list prices as of {ref['bundled_as_of']}")
    return "; ".join(parts)
