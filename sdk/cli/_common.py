"""What every command shares: the global options, building the gateway and intents, output."""

from __future__ import annotations

import json
import sys
import weakref
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._errors import EXIT_USAGE, CliError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from intentmesh import Gateway, Intent
    from intentmesh.config import GatewayConfig

__all__ = [
    "ConfigOpt",
    "JsonOpt",
    "Options",
    "VerboseOpt",
    "emit_json",
    "open_gateway",
    "options",
]

JSON_SCHEMA_VERSION = 1

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $INTENTMESH_CONFIG, ./intentmesh.toml, user config dir).",
        dir_okay=False,
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON (see docs/cli.md).")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show the full trace on errors.")]


@dataclass
class Options:
    """The global options, merged with the same options given after the command name."""

    config: Path | None = None
    json: bool = False
    verbose: bool = False


def options(
    ctx: typer.Context, config: Path | None, json_out: bool, verbose: bool = False
) -> Options:
    """Merge a command's ``--config/--json/--verbose`` with the global ones."""
    root = ctx.find_root().obj
    base = root if isinstance(root, Options) else Options()
    return Options(config or base.config, json_out or base.json, verbose or base.verbose)


def load_configs(opts: Options) -> tuple[GatewayConfig, GatewayConfig]:
    """(the config file as written, the effective config): ``--config`` or the discovered file,
    plus what ``Gateway()`` adds with no config (the embedded local default, networks whose
    key is set). ``--config PATH`` and a discovered file behave the same."""
    from intentmesh._zeroconf import with_zero_config
    from intentmesh.config import discover_config_path, load_config, parse_config

    path = opts.config or discover_config_path()
    written = load_config(path) if path else parse_config("", "<defaults>")
    return written, with_zero_config(written)


# Backends each CLI gateway got from its config file (not added by zero-config).
_WRITTEN: weakref.WeakKeyDictionary[Gateway, frozenset[str]] = weakref.WeakKeyDictionary()


def open_gateway(opts: Options, **kwargs: Any) -> Gateway:
    """The gateway for ``--config`` (or the discovered config), with the zero-config backends."""
    from intentmesh import Gateway

    written, effective = load_configs(opts)
    gateway = Gateway(effective, **kwargs)
    _WRITTEN[gateway] = frozenset(b.name for b in written.backends)
    return gateway


def emit_json(data: Any) -> None:
    """One JSON document on stdout (indented, keys in a stable order)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def emit_json_line(data: Any) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False) -> Console:
    """A rich console bound to the current stdout (or stderr); rich is imported only here."""
    import os

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = 200  # logs and pipes: tables at their natural width, not squeezed into 80
    return out


def new_table(
    title: str,
    columns: list[str],
    right: tuple[str, ...] = (),
    limits: dict[str, int] | None = None,
) -> Table:
    """A compact table (no vertical rules); cells never wrap, ``limits`` caps column widths."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False
    )
    for name in columns:
        table.add_column(
            name,
            justify="right" if name in right else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=(limits or {}).get(name),
        )
    return table


def read_prompt(prompt: str) -> str:
    """The prompt argument; ``-`` reads standard input."""
    if prompt == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise CliError(
                "standard input is empty; pipe a prompt or pass it as an argument", EXIT_USAGE
            )
        return text
    return prompt


# -- intent options ---------------------------------------------------------------------------


class Verifiability(StrEnum):
    none = "none"
    receipt = "receipt"
    spot = "spot"
    attested = "attested"
    consensus = "consensus"
    proof = "proof"


class Optimize(StrEnum):
    cost = "cost"
    latency = "latency"
    balanced = "balanced"


def parse_usd(value: str | None) -> float | None:
    """``0.002``, ``$0.002`` or ``none``; typer reports a bad value as a usage error."""
    if value is None or value.strip().lower() in ("", "none"):
        return None
    try:
        amount = float(value.strip().lstrip("$"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a USD amount such as 0.002") from None
    if amount <= 0:
        raise typer.BadParameter("must be a positive USD amount such as 0.002")
    return amount


def parse_hedge(value: str | None) -> bool | float:
    """``off``, ``auto`` or a delay in milliseconds."""
    if value is None or value.lower() in ("off", "no", "false", "0"):
        return False
    if value.lower() in ("auto", "on", "yes", "true"):
        return True
    try:
        ms = float(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use off, auto or a delay in ms such as 500") from None
    if ms < 0:
        raise typer.BadParameter("the hedge delay must not be negative")
    return ms


ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="Model name or alias; repeat for a preference order. "
        "Default: the only model the config serves.",
        show_default=False,
    ),
]
MaxTokensOpt = Annotated[
    int, typer.Option("--max-tokens", min=1, help="Tokens to generate at most.")
]
TemperatureOpt = Annotated[
    float, typer.Option("--temperature", min=0.0, max=2.0, help="Sampling temperature.")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed.", show_default=False)]
MaxPriceOpt = Annotated[
    str | None,
    typer.Option(
        "--max-price",
        help="Hard cap on this request's worst-case cost in USD (e.g. 0.002).",
        show_default=False,
    ),
]
MaxLatencyOpt = Annotated[
    float | None,
    typer.Option(
        "--max-latency", min=1.0, help="Deadline in ms across all attempts.", show_default=False
    ),
]
VerifiabilityOpt = Annotated[
    Verifiability, typer.Option("--verifiability", help="Evidence the answer must carry.")
]
OptimizeOpt = Annotated[
    Optimize, typer.Option("--optimize", help="What to rank feasible backends by.")
]
NetworkOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--network", help="Allow only these networks or backends (repeatable).", show_default=False
    ),
]
ExcludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude", help="Never use these networks or backends (repeatable).", show_default=False
    ),
]
HedgeOpt = Annotated[
    str | None,
    typer.Option(
        "--hedge", help="off, auto, or a delay in ms before a backup request.", show_default=False
    ),
]
SystemOpt = Annotated[
    str | None,
    typer.Option("--system", help="A system message before the prompt.", show_default=False),
]


@dataclass
class IntentArgs:
    """The intent options of quote, plan and infer, before the model default is known."""

    prompt: str
    models: list[str] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    max_price: str | None = None
    max_latency: float | None = None
    verifiability: Verifiability = Verifiability.receipt
    optimize: Optimize = Optimize.cost
    networks: list[str] | None = None
    exclude: list[str] | None = None
    hedge: str | None = None
    system: str | None = None

    def build(self, gateway: Gateway) -> Intent:
        from intentmesh import Intent

        text = read_prompt(self.prompt)
        conversation: dict[str, Any] = {"prompt": text}
        if self.system:
            conversation = {
                "messages": [
                    {"role": "system", "content": self.system},
                    {"role": "user", "content": text},
                ]
            }
        models = self.models or [default_model(gateway)]
        return Intent(
            model=models[0] if len(models) == 1 else models,
            **conversation,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
            max_price_usd=_usd_option(self.max_price),
            max_latency_ms=self.max_latency,
            verifiability=self.verifiability.value,
            optimize=self.optimize.value,
            networks=self.networks or None,
            exclude=self.exclude or None,
            hedge=_hedge_option(self.hedge),
        )


def _usd_option(value: str | None) -> float | None:
    try:
        return parse_usd(value)
    except typer.BadParameter as exc:
        raise CliError(f"--max-price: {exc.message}", EXIT_USAGE) from None


def _hedge_option(value: str | None) -> bool | float:
    try:
        return parse_hedge(value)
    except typer.BadParameter as exc:
        raise CliError(f"--hedge: {exc.message}", EXIT_USAGE) from None


def served_models(gateway: Gateway) -> list[str]:
    """Canonical models the configured backends serve, sorted."""
    return sorted({offer.model for offer in gateway.offers})


def default_model(gateway: Gateway) -> str:
    """The model when ``--model`` is left out: the one model the config file's backends serve;
    with none, the one model the zero-config backends (the embedded local default) serve."""
    written = _WRITTEN.get(gateway)
    served = sorted({o.model for o in gateway.offers if written is None or o.backend in written})
    if not served:
        served = served_models(gateway)
    if len(served) == 1:
        return served[0]
    if not served:
        raise CliError(
            "no model given and no backend is configured; pass --model, and run "
            "`intentmesh config init` or try `intentmesh demo`",
            EXIT_USAGE,
        )
    raise CliError(f"pass --model (this config serves {', '.join(served)})", EXIT_USAGE)


def unknown_model_hint(gateway: Gateway, models: tuple[str, ...]) -> str:
    """``unknown model 'x'; did you mean ...`` for a model neither served nor in the catalog."""
    served = set(served_models(gateway))
    for model in models:
        if model in served or gateway.catalog.canonical(model) is not None:
            continue
        close = gateway.catalog.suggest(model, served)
        guess = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown model {model!r}{guess}"
    return ""


def money(amount: float | None) -> str:
    """USD for people, three significant digits below $1: ``$0.0000416``, ``$12.50``, ``$1,234``."""
    import math

    if amount is None:
        return "-"
    if amount == 0:
        return "$0"
    if amount >= 1000:
        return f"${amount:,.0f}"
    if amount >= 1:
        return f"${amount:,.2f}"
    digits = min(12, 2 - math.floor(math.log10(amount)))
    return "$" + f"{amount:.{digits}f}".rstrip("0").rstrip(".")


def price_age(source: str, age_s: float | None) -> str:
    """``configured``, ``live 3m``, ``stale 2d``."""
    if age_s is None:
        return source
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if age_s >= size:
            return f"{source} {age_s / size:.0f}{unit}"
    return f"{source} {age_s:.0f}s"
