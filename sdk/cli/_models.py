"""``intentmesh models``: the catalog, its aliases, and which backends serve each model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import (
    ConfigOpt,
    JsonOpt,
    VerboseOpt,
    console,
    emit_json,
    new_table,
    open_gateway,
    options,
)

if TYPE_CHECKING:
    from intentmesh import Gateway

QueryArg = Annotated[
    str | None,
    typer.Argument(
        help="Show only models whose name or alias contains this text.", show_default=False
    ),
]
ServedOpt = Annotated[
    bool, typer.Option("--served", help="Only models a configured backend serves.")
]


def models(
    ctx: typer.Context,
    query: QueryArg = None,
    served: ServedOpt = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List catalog models with their aliases and the backends that serve each one."""
    opts = options(ctx, config, json_out, verbose)
    with open_gateway(opts) as gw:
        data = models_data(gw, query, served)
    if opts.json:
        emit_json(data)
    else:
        render_models(data)


def models_data(gw: Gateway, query: str | None = None, served_only: bool = False) -> dict[str, Any]:
    """The ``models --json`` document (schema ``intentmesh.models.v1``)."""
    serving: dict[str, list[dict[str, Any]]] = {}
    for o in gw.offers:
        serving.setdefault(o.model, []).append(
            {
                "backend": o.backend,
                "network": o.network,
                "provider_model": o.provider_model,
                "input_price": o.input_price,
                "output_price": o.output_price,
            }
        )
    names = list(gw.catalog.models) + sorted(set(serving) - set(gw.catalog.models))
    rows = []
    for name in names:
        entry = gw.catalog.models.get(name)
        aliases = list(entry.aliases) if entry else []
        if query and not any(query.lower() in n.lower() for n in (name, *aliases)):
            continue
        if served_only and name not in serving:
            continue
        rows.append(
            {
                "name": name,
                "family": entry.family if entry else "",
                "context_length": entry.context_length if entry else None,
                "aliases": aliases,
                "in_catalog": entry is not None,
                "backends": serving.get(name, []),
            }
        )
    return {"schema": "intentmesh.models.v1", "models": rows}


def render_models(data: dict[str, Any]) -> None:
    from rich.text import Text

    out = console()
    table = new_table(
        "models",
        ["model", "family", "context", "served by", "aliases"],
        limits={"served by": 40, "aliases": 60},
    )
    for m in data["models"]:
        context = f"{m['context_length'] // 1024}k" if m["context_length"] else "-"
        backends = ", ".join(f"{b['backend']} ({b['network']})" for b in m["backends"]) or "-"
        aliases = ", ".join(m["aliases"][:2]) + (
            f" +{len(m['aliases']) - 2}" if len(m["aliases"]) > 2 else ""
        )
        table.add_row(
            *(Text(c) for c in (m["name"], m["family"] or "-", context, backends, aliases or "-"))
        )
    if data["models"]:
        out.print(table)
    else:
        out.print(Text("no model matches"))
