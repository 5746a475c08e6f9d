"""``intentmesh demo``: routing, failover and receipts on three loopback providers, offline."""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import JsonOpt, VerboseOpt, console, emit_json, options

if TYPE_CHECKING:
    from intentmesh import Gateway, InferenceResult, Intent
    from intentmesh.receipts import LedgerReport
    from intentmesh.router import Plan
    from intentmesh.testing import DemoNetwork

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        help="Keep the demo's config, ledger and signing key here (default: a temp dir).",
        file_okay=False,
        show_default=False,
    ),
]
KeepOpt = Annotated[
    bool,
    typer.Option(
        "--keep-running", help="Keep the demo providers up (until Ctrl-C) to try other commands."
    ),
]
PromptOpt = Annotated[str, typer.Option("--prompt", help="What to ask.")]


def demo(
    ctx: typer.Context,
    prompt: PromptOpt = "Say hello from the mesh.",
    home: HomeOpt = None,
    keep_running: KeepOpt = False,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Start three fake providers on 127.0.0.1, then show routing, a failover (the cheapest
    provider starts failing) and verified receipts. No config, keys or network needed."""
    from intentmesh.testing import DemoNetwork

    opts = options(ctx, None, json_out, verbose)
    with _home(home) as where, DemoNetwork(latency_scale=0.25) as net:
        config = _write_config(net, where)
        say = None if opts.json else _Printer()
        data = _run(net, config, prompt, say, kept=home is not None)
        data["home"] = str(where) if home else None
        if opts.json:
            emit_json(data)
        if keep_running:
            _wait(config)


@contextlib.contextmanager
def _home(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="intentmesh-demo-") as tmp:
        yield Path(tmp)


def _write_config(net: DemoNetwork, home: Path) -> Path:
    receipts = (
        "\n[receipts]\n"
        f"ledger = {_toml_str(home / 'receipts.sqlite3')}\n"
        f"key = {_toml_str(home / 'signing_key.pem')}\n"
    )
    path = home / "intentmesh.toml"
    path.write_text(net.config_toml() + receipts, encoding="utf-8")
    return path


def _toml_str(path: Path) -> str:
    import json

    return json.dumps(str(path))


class _Printer:
    """The human narration of the demo."""

    def __init__(self) -> None:
        self.out = console()

    def step(self, title: str) -> None:
        from rich.text import Text

        self.out.print(Text(f"\n{title}", style="bold"))

    def line(self, text: str) -> None:
        from rich.text import Text

        self.out.print(Text(text))


def next_steps(config: Path, kept: bool) -> str:
    """Hints that run as printed: on the demo's config when it is kept, else on the user's own."""
    import shlex

    if kept:
        cfg = shlex.quote(str(config))
        return (
            f"Next, on the demo's config and ledger: `intentmesh quote 'Hello' --config {cfg}`, "
            f"`intentmesh receipts list --config {cfg}`; then `intentmesh config init` writes "
            "your own config (see docs/cli.md)."
        )
    return (
        "Next: `intentmesh quote 'Hello'` (the embedded local model, if installed), "
        "`intentmesh config init` (your own backends), `intentmesh receipts list`; "
        "`intentmesh demo --home DIR` keeps the demo's config and ledger (see docs/cli.md)."
    )


def _run(
    net: DemoNetwork, config: Path, prompt: str, say: _Printer | None, kept: bool = False
) -> dict[str, Any]:
    from intentmesh import Gateway, Intent
    from intentmesh.cli._infer import render_plan
    from intentmesh.testing import Fault

    model = "llama-3.1-8b-instruct"
    started = time.perf_counter()
    with Gateway(config) as gw:
        if say:
            say.line(
                f"demo network: {', '.join(f'{n} ({b.network})' for n, b in net.backends.items())}"
            )
            say.line(f"config: {config}")
            say.step(f"1. routing: the plan for {model!r}, cheapest first")
        intent = Intent(model=model, prompt=prompt, max_tokens=64, max_price_usd=0.001)
        the_plan = gw.plan(intent)
        if say:
            render_plan(the_plan)
            say.step("2. a real call: served by the cheapest feasible backend")
        first = _call(gw, intent, say)
        cheapest = the_plan.candidates[0].backend
        net.providers[cheapest].always(Fault.status(503))
        if say:
            say.step(f"3. failover: {cheapest} now answers 503 to every request")
        second = _call(gw, intent, say)
        net.providers[cheapest].clear_faults()
        report = gw.verify_ledger()
        if say:
            say.step("4. receipts: every call is signed and chained")
            say.line(str(report))
            say.line(f"\ndone in {time.perf_counter() - started:.1f} s. {next_steps(config, kept)}")
        return _data(the_plan, first, second, report, config)


def _call(gw: Gateway, intent: Intent, say: _Printer | None) -> InferenceResult:
    from intentmesh.cli._infer import summary_line

    result = gw.infer(intent)
    if say:
        say.line(result.text)
        for a in result.attempts:
            err = f" {a.error_kind} ({a.status_code})" if a.error_kind else ""
            say.line(f"  attempt {a.backend}: {a.outcome}{err}, {a.latency_ms:.0f} ms")
        say.line(summary_line(result))
    return result


def _data(
    the_plan: Plan,
    first: InferenceResult,
    second: InferenceResult,
    report: LedgerReport,
    config: Path,
) -> dict[str, Any]:
    from intentmesh.cli._infer import plan_data, result_data

    return {
        "schema": "intentmesh.demo.v1",
        "config": str(config),
        "plan": plan_data(the_plan),
        "calls": [result_data(first), result_data(second)],
        "failover": {
            "failed_backend": the_plan.candidates[0].backend,
            "served_by": second.backend,
            "attempts": len(second.attempts),
        },
        "ledger": {"ok": report.ok, "count": report.count, "problem": report.problem},
    }


def _wait(config: Path) -> None:
    sys.stderr.write(
        f"demo providers are running. In another terminal:\n"
        f"  export INTENTMESH_CONFIG={config}\n"
        "  intentmesh quote 'Hello' && intentmesh infer --stream 'Hello'\n"
        "  intentmesh receipts list\n"
        f"press Ctrl-C to stop.\n"
    )
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)
