"""``intentmesh backends [--probe]``: configured backends, health, prices, and a live probe."""

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
    price_age,
)

if TYPE_CHECKING:
    from intentmesh import Gateway
    from intentmesh.adapters.base import Backend

ProbeOpt = Annotated[
    bool, typer.Option("--probe", help="Measure each backend now (GET /models), with progress.")
]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Probe timeout in seconds per backend.")
]


def backends(
    ctx: typer.Context,
    probe: ProbeOpt = False,
    timeout: TimeoutOpt = 10.0,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List configured backends: network, endpoint, models, circuit state, observed latency and
    price freshness. With --probe, contact each one and measure it."""
    opts = options(ctx, config, json_out, verbose)
    gw = open_gateway(opts)
    try:
        probes = _run_probes(gw, timeout, show_progress=not opts.json) if probe else {}
        data = backends_data(gw, probes, probed=probe)
    finally:
        gw.close()
    if opts.json:
        emit_json(data)
    else:
        render_backends(data)


def backends_data(gw: Gateway, probes: dict[str, dict[str, Any]], probed: bool) -> dict[str, Any]:
    """The ``backends --json`` document (schema ``intentmesh.backends.v1``)."""
    snapshot = gw.health.snapshot()
    rows = []
    for entry in gw.config.backends:
        offers = [o for o in gw.offers if o.backend == entry.name]
        health = snapshot.get(entry.name, {})
        breaker = gw.health.breaker(entry.name).snapshot() if entry.enabled else None
        rows.append(
            {
                "name": entry.name,
                "type": entry.type,
                "network": entry.label,
                "base_url": entry.base_url,
                "enabled": entry.enabled,
                "api_key_env": entry.api_key_env,
                "api_key_set": bool(entry.api_key()) if entry.api_key_env else None,
                "models": [
                    {
                        "model": o.model,
                        "provider_model": o.provider_model,
                        "input_price": o.input_price,
                        "output_price": o.output_price,
                        "price_source": o.price_source,
                        "price_age_s": o.price_age_s,
                        "latency_prior_ms": o.latency_prior_ms,
                    }
                    for o in offers
                ],
                "circuit": breaker,
                "observed_latency": health.get("latency", {}),
                "probe": probes.get(entry.name),
            }
        )
    return {
        "schema": "intentmesh.backends.v1",
        "config": gw.config.source,
        "probed": probed,
        "backends": rows,
    }


def _run_probes(gw: Gateway, timeout: float, show_progress: bool) -> dict[str, dict[str, Any]]:
    import asyncio

    async def run_all() -> dict[str, dict[str, Any]]:
        names = list(gw.backends)
        results: dict[str, dict[str, Any]] = {}
        with _progress(show_progress, len(names)) as advance:

            async def one(name: str) -> None:
                results[name] = await _probe(gw, gw.backends[name], timeout)
                advance(name)

            try:
                await asyncio.gather(*(one(n) for n in names))
            finally:
                await gw.aclose()
        return results

    return asyncio.run(run_all())


async def _probe(gw: Gateway, backend: Backend, limit_s: float) -> dict[str, Any]:
    """The gateway's own probe, which also feeds its breakers and latency priors."""
    return await gw.aprobe_backend(backend.name, limit_s)


class _progress:
    """A transient rich progress bar on stderr (or nothing), as ``with ... as advance``."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Any:
        if self.enabled:
            from rich.progress import Progress

            self._progress = Progress(console=console(stderr=True), transient=True)
            self._progress.start()
            self._task = self._progress.add_task("probing backends", total=self.total)
        return self.advance

    def advance(self, name: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=f"probed {name}")

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def render_backends(data: dict[str, Any]) -> None:
    from rich.text import Text

    out = console()
    if not data["backends"]:
        out.print(
            Text("no backends configured; run `intentmesh config init`, or try `intentmesh demo`")
        )
        return
    columns = ["backend", "network", "endpoint", "models", "key", "circuit", "latency", "prices"]
    if data["probed"]:
        columns.append("probe")
    title = f"backends ({data['config'] or 'no config file'})"
    table = new_table(title, columns, limits={"probe": 48})
    for b in data["backends"]:
        cells = [
            b["name"] + ("" if b["enabled"] else " (disabled)"),
            b["network"],
            b["base_url"] or "-",
            ", ".join(m["model"] for m in b["models"]) or "-",
            _key_cell(b),
            _circuit_cell(b["circuit"]),
            _latency_cell(b),
            ", ".join(sorted({price_age(m["price_source"], m["price_age_s"]) for m in b["models"]}))
            or "-",
        ]
        if data["probed"]:
            cells.append(_probe_cell(b["probe"]))
        table.add_row(*(Text(c) for c in cells))
    out.print(table)


def _key_cell(b: dict[str, Any]) -> str:
    if not b["api_key_env"]:
        return "none"
    return f"{b['api_key_env']} ({'set' if b['api_key_set'] else 'NOT SET'})"


def _circuit_cell(circuit: dict[str, Any] | None) -> str:
    if circuit is None:
        return "-"
    state = str(circuit["state"])
    return state if state == "closed" else f"{state} (retry in {circuit['retry_in_s']:.0f} s)"


def _latency_cell(b: dict[str, Any]) -> str:
    observed = b["observed_latency"]
    if observed:
        first = next(iter(observed.values()))
        return f"{first['ewma_ms']:.0f} ms (p95 {first['p95_ms']:.0f})"
    if b["probe"] and b["probe"].get("latency_ms") is not None:
        return f"{b['probe']['latency_ms']:.0f} ms (probe)"
    priors = {m["latency_prior_ms"] for m in b["models"]}
    return f"{min(priors):.0f} ms (prior)" if priors else "-"


def _probe_cell(probe: dict[str, Any] | None) -> str:
    if not probe:
        return "-"
    if probe["ok"] is None:
        return str(probe["error"])
    if not probe["ok"]:
        return f"✗ {probe.get('error_kind')}: {probe['error']}"
    missing = probe["missing_models"]
    return "✓ ok" + (f" (missing: {', '.join(missing)})" if missing else "")
