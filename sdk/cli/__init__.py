"""The ``intentmesh`` command line: one Typer sub-app per area, composed here.

Command modules keep heavy imports (rich, matplotlib, the gateway) inside their functions, and
``local`` is mounted lazily, so that ``intentmesh --help`` stays fast. Exit codes are listed in
:mod:`intentmesh.cli._errors` and ``docs/cli.md``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from intentmesh.cli import (
    _backends,
    _compare,
    _config,
    _demo,
    _infer,
    _models,
    _quote,
    _receipts,
    _serve,
)
from intentmesh.cli._common import ConfigOpt, JsonOpt, Options, VerboseOpt
from intentmesh.cli._errors import CliError, report, usage_line, wants_verbose

__all__ = ["app", "generate_sdl", "main"]


def __getattr__(name: str) -> Any:
    # The Akash SDL template of ``intentmesh akash sdl``, imported only when asked for.
    if name == "generate_sdl":
        from intentmesh.cli._akash import generate_sdl

        return generate_sdl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Sub-apps of other packages, imported only when their command runs: name -> (target, help).
LAZY_APPS: dict[str, tuple[str, str]] = {
    "local": (
        "intentmesh.local_backend.cli:app",
        "Run a model on this machine as an intentmesh backend.",
    ),
    "akash": ("intentmesh.cli._akash:app", "Deploy models on Akash (self-hosted vLLM)."),
    "prices": (
        "intentmesh.cli._prices:app",
        "Fetch and show the reference prices `compare` uses.",
    ),
}


class _LazyPlaceholder(typer.core.TyperCommand):
    """Stands in for a lazily imported sub-app in help listings."""


class IntentmeshGroup(TyperGroup):
    """The root group: lazy sub-apps, and the one boundary where errors become exit codes."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in LAZY_APPS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is None and cmd_name in LAZY_APPS:
            return _LazyPlaceholder(name=cmd_name, help=LAZY_APPS[cmd_name][1], callback=None)
        return found

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        if isinstance(cmd, _LazyPlaceholder) and name is not None:
            cmd = _load_lazy(name)
            self.commands[name] = cmd
        return name, cmd, rest

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise CliError("interrupted", 130) from None

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except typer.TyperException as exc:  # click's usage errors: one line, not a box
            ctx = getattr(exc, "ctx", None)
            sys.stderr.write(
                usage_line(exc.format_message(), ctx.command_path if ctx else "intentmesh")
            )
            code = int(getattr(exc, "exit_code", 2))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - the one translation boundary
            code = report(exc, wants_verbose(argv))
        if standalone_mode:
            sys.exit(code)
        return code


def _load_lazy(name: str) -> Any:
    target, _ = LAZY_APPS[name]
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(
            f"`intentmesh {name}` is not available in this installation ({exc}); "
            "install the extra it needs, e.g. pip install 'intentmesh[local]'"
        ) from None
    sub = getattr(module, attr)
    command = typer.main.get_command(sub) if isinstance(sub, typer.Typer) else sub
    command.name = name
    return command


app = typer.Typer(
    name="intentmesh",
    cls=IntentmeshGroup,
    help="Route LLM inference by intent: quote, compare, plan, infer, and check receipts.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"intentmesh {version('intentmesh')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Route LLM inference by intent: quote, compare, plan, infer, and check receipts.

    Start with `intentmesh demo`: three local fake providers, a real routed call, a failover
    and a verified receipt, in a few seconds and with no network.
    """
    ctx.obj = Options(Path(config) if config else None, json_out, verbose)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


app.command("quote")(_quote.quote)
app.command("compare")(_compare.compare)
app.command("infer")(_infer.infer)
app.command("plan")(_infer.plan)
app.command("backends")(_backends.backends)
app.command("models")(_models.models)
app.add_typer(_receipts.app, name="receipts")
app.add_typer(_config.app, name="config")
app.command("demo")(_demo.demo)
app.command("serve")(_serve.serve)


def main() -> None:
    """Console-script entry point."""
    app()
