"""``intentmesh receipts list|show|verify|export|key``: the signed ledger from a terminal."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from intentmesh.cli._common import (
    ConfigOpt,
    JsonOpt,
    Options,
    VerboseOpt,
    console,
    emit_json,
    money,
    new_table,
    options,
)
from intentmesh.cli._errors import EXIT_USAGE, EXIT_VERIFY, CliError, read_failure

if TYPE_CHECKING:
    from intentmesh.config import GatewayConfig
    from intentmesh.receipts import Ledger, Receipt

app = typer.Typer(
    help="List, show, verify and export signed receipts.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        help="Ledger file or postgresql:// URL (default: [receipts] ledger in the config, "
        "else $INTENTMESH_HOME/receipts.sqlite3).",
        show_default=False,
    ),
]


def _config(opts: Options) -> GatewayConfig:
    from intentmesh.config import discover_config_path, load_config, parse_config

    path = opts.config or discover_config_path()
    return load_config(path) if path else parse_config("", "<defaults>")


def ledger_path(opts: Options, given: str | None) -> Path | str:
    """``--ledger``, else the config's ``[receipts] ledger``, else the default location; a
    ``postgresql://`` URL stays a URL."""
    from intentmesh.receipts import default_ledger_path

    chosen = given if given is not None else _config(opts).receipts.ledger
    if not chosen:
        return default_ledger_path()
    return chosen if chosen.startswith(_PG) else Path(chosen).expanduser()


_PG = ("postgresql://", "postgres://")


def _open(opts: Options, given: str | None, must_exist: bool = True) -> Ledger | None:
    from intentmesh.receipts import Ledger

    path = ledger_path(opts, given)
    if isinstance(path, Path) and not path.exists():
        if must_exist:
            raise CliError(f"no receipt ledger at {path} (it is created by the first receipt)")
        return None
    return Ledger(path)


def summary(r: Receipt) -> dict[str, Any]:
    """One receipt as a ``receipts list`` row."""
    body = r.body
    return {
        "id": r.id,
        "seq": r.seq,
        "timestamp": r.timestamp,
        "backend": body.get("backend"),
        "network": body.get("network"),
        "model": body.get("model"),
        "provider_model": body.get("provider_model"),
        "cost_usd": body.get("cost_usd"),
        "latency_ms": body.get("latency_ms"),
        "usage": body.get("usage"),
        "verifiability": body.get("verifiability"),
        "attempts": len(body.get("attempts") or []),
        "hash": r.hash,
    }


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Show the newest N (0: all).")
    ] = 20,
    ledger: LedgerOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List receipts, oldest first (the newest N)."""
    opts = options(ctx, config, json_out, verbose)
    path = ledger_path(opts, ledger)
    book = _open(opts, ledger, must_exist=False)
    rows: list[dict[str, Any]] = []
    total = 0
    if book is not None:
        with book:
            rows = [summary(r) for r in book]
            total = len(rows)
    if limit:
        rows = rows[-limit:]
    data = {
        "schema": "intentmesh.receipts.list.v1",
        "ledger": book.path if book is not None else str(path),
        "total": total,
        "receipts": rows,
    }
    if opts.json:
        emit_json(data)
        return
    _render_list(data)


def _render_list(data: dict[str, Any]) -> None:
    from rich.text import Text

    out = console()
    if not data["receipts"]:
        out.print(Text(f"no receipts in {data['ledger']}"))
        return
    table = new_table(
        f"receipts ({data['total']} in {data['ledger']})",
        [
            "seq",
            "id",
            "time (UTC)",
            "backend",
            "network",
            "model",
            "tokens",
            "cost",
            "latency",
            "tries",
        ],
        right=("seq", "tokens", "cost", "latency", "tries"),
    )
    for r in data["receipts"]:
        usage = r["usage"] or {}
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    r["seq"],
                    r["id"],
                    str(r["timestamp"]).replace("T", " ").rstrip("Z"),
                    r["backend"],
                    r["network"],
                    r["model"],
                    usage.get("total_tokens", "-"),
                    money(r["cost_usd"]),
                    f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-",
                    r["attempts"],
                )
            )
        )
    out.print(table)


ReceiptArg = Annotated[str, typer.Argument(help="Receipt id, its seq number, or 'last'.")]


@app.command("show")
def show(
    ctx: typer.Context,
    receipt_id: ReceiptArg = "last",
    ledger: LedgerOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show one receipt in full, and whether its signature verifies."""
    from intentmesh.receipts import verify_receipt

    opts = options(ctx, config, json_out, verbose)
    book = _open(opts, ledger)
    assert book is not None
    with book:
        found = _find(book, receipt_id)
    valid = verify_receipt(found, found.public_key)
    data = {
        "schema": "intentmesh.receipts.show.v1",
        "receipt": found.to_dict(),
        "signature_valid": valid,
    }
    if opts.json:
        emit_json(data)
    else:
        _render_show(found, valid)
    if not valid:
        raise CliError(f"receipt {found.id}: the signature or hash does not verify", EXIT_VERIFY)


def _find(book: Ledger, wanted: str) -> Receipt:
    if wanted == "last":
        last = book.last()
        if last is None:
            raise CliError(f"the ledger {book.path} is empty", EXIT_USAGE)
        return last
    if wanted.isdigit():
        match = next((r for r in book if r.seq == int(wanted)), None)
    else:
        match = book.get(wanted)
    if match is None:
        raise CliError(
            f"no receipt {wanted!r} in {book.path} (see `intentmesh receipts list`)", EXIT_USAGE
        )
    return match


def _render_show(r: Receipt, valid: bool) -> None:
    import json

    from rich.text import Text

    out = console()
    body = dict(r.body)
    attempts = body.pop("attempts", []) or []
    out.print(Text(f"receipt {r.id} (seq {r.seq}, {r.timestamp})", style="bold"))
    for key in sorted(body):
        value = body[key]
        shown = (
            json.dumps(value, separators=(", ", ": "))
            if isinstance(value, dict | list)
            else str(value)
        )
        out.print(Text(f"  {key:<16} {shown}"))
    out.print(Text(f"  attempts ({len(attempts)}):"))
    for a in attempts:
        err = f" {a.get('error_kind')}" if a.get("error_kind") else ""
        out.print(
            Text(f"    {a.get('backend')}: {a.get('outcome')}{err} {a.get('latency_ms', 0):.0f} ms")
        )
    out.print(Text(f"  {'signature':<16} {r.signature}"))
    out.print(Text(f"  {'hash':<16} {r.hash}"))
    out.print(
        Text(
            "signature valid" if valid else "SIGNATURE INVALID",
            style="green" if valid else "bold red",
        )
    )


@app.command("verify")
def verify(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Verify an exported JSONL file instead of the ledger.",
            show_default=False,
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="Trust only this key: a PEM file, or 64 hex digits (see `receipts key`).",
            show_default=False,
        ),
    ] = None,
    ledger: LedgerOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check every signature and the hash chain; exit 4 naming the first bad receipt."""
    opts = options(ctx, config, json_out, verbose)
    keys = _trusted(public_key) if public_key else None
    if file is not None:
        source, report = str(file), _verify_file(file, keys)
    else:
        book = _open(opts, ledger)
        assert book is not None
        with book:
            source, found = book.path, book.verify(keys)
        report = {
            "ok": found.ok,
            "count": found.count,
            "first_bad_id": found.first_bad_id,
            "first_bad_seq": found.first_bad_seq,
            "problem": found.problem,
        }
    data = {"schema": "intentmesh.receipts.verify.v1", "source": source, **report}
    if opts.json:
        emit_json(data)
    elif report["ok"]:
        sys.stdout.write(f"ok: {report['count']} receipts verified in {source}\n")
    if not report["ok"]:
        seq, rid = report["first_bad_seq"], report["first_bad_id"]
        if seq is not None:
            where = f"seq {seq} ({rid})" if rid else f"seq {seq}"
        else:
            where = f"receipt {rid}" if rid else f"the receipt after the first {report['count']}"
        raise CliError(
            f"verification failed in {source} at {where}: {report['problem']} "
            f"({report['count']} receipts before it verified)",
            EXIT_VERIFY,
        )


def _trusted(value: str) -> dict[str, object]:
    from intentmesh.receipts import load_public_key
    from intentmesh.receipts import public_key_id as key_id

    path = Path(value).expanduser()
    raw: object = path.read_text("utf-8") if path.is_file() else value
    try:
        key = load_public_key(raw)
    except Exception as exc:
        raise CliError(f"--public-key: {exc}", EXIT_USAGE) from None
    return {key_id(key): key}


def _verify_file(file: Path, keys: dict[str, object] | None) -> dict[str, Any]:
    from intentmesh.errors import ReceiptError
    from intentmesh.receipts import Ledger

    try:
        handle = file.open(encoding="utf-8")
    except OSError as exc:
        raise read_failure(file, exc, "--file ") from None
    with handle, Ledger(":memory:") as scratch:
        try:
            count = scratch.import_jsonl(handle, keys)
        except ReceiptError as exc:
            handle.seek(0)
            seq, before, rid = _locate_bad(handle, exc)
            return {
                "ok": False,
                "count": before,
                "first_bad_id": rid,
                "first_bad_seq": seq,
                "problem": str(exc),
            }
    return {
        "ok": True,
        "count": count,
        "first_bad_id": None,
        "first_bad_seq": None,
        "problem": None,
    }


def _locate_bad(lines: Iterable[str], exc: Exception) -> tuple[int | None, int, str | None]:
    """``(seq, receipts before it, id)`` of the receipt an export failed at.

    Receipts are checked in file order and the first problem stops the check, so every receipt
    line before the bad one verified. The bad one is found by its id, else by the line number
    the error names (a line that is not a readable receipt has no seq or id).
    """
    rid = getattr(exc, "receipt_id", None)
    found = re.match(r"line (\d+):", str(exc))
    bad_line = int(found.group(1)) if found else None
    before = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        data = _json_object(line)
        body = data.get("body") if data is not None and "checkpoint" not in data else None
        body = body if isinstance(body, dict) else {}
        if number == bad_line or (rid is not None and body.get("id") == rid):
            seq = body.get("seq")
            return (seq if isinstance(seq, int) else None), before, body.get("id") or rid
        before += 1 if data is not None and "checkpoint" not in data else 0
    return None, before, rid


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


@app.command("export")
def export(
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here instead of standard output.", show_default=False
        ),
    ] = None,
    ledger: LedgerOpt = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Export every receipt as JSON lines (re-verifiable with `receipts verify --file`)."""
    opts = options(ctx, config, json_out, verbose)
    book = _open(opts, ledger)
    assert book is not None
    with book:
        if output is None:
            count = book.export_jsonl(sys.stdout)
            return
        count = book.export_jsonl(output)
    if opts.json:
        emit_json(
            {"schema": "intentmesh.receipts.export.v1", "output": str(output), "count": count}
        )
    else:
        sys.stderr.write(f"exported {count} receipts to {output}\n")


@app.command("key")
def key(
    ctx: typer.Context,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print the public half of the signing key (give it to whoever verifies your receipts)."""
    import os

    from intentmesh.receipts import SigningKey, default_key_path

    opts = options(ctx, config, json_out, verbose)
    cfg = _config(opts).receipts
    if cfg.key_env and os.environ.get(cfg.key_env):
        signing, where = SigningKey.from_env(cfg.key_env), f"${cfg.key_env}"
    else:
        path = Path(cfg.key).expanduser() if cfg.key else default_key_path()
        if not path.exists():
            raise CliError(f"no signing key at {path} yet (it is created with the first receipt)")
        signing, where = SigningKey.load(path), str(path)
    data = {
        "schema": "intentmesh.receipts.key.v1",
        "source": where,
        "key_id": signing.key_id,
        "public_key_hex": signing.public_key_hex(),
        "public_key_pem": signing.public_key_pem(),
    }
    if opts.json:
        emit_json(data)
    else:
        sys.stdout.write(f"key_id {signing.key_id} ({where})\n{signing.public_key_pem()}")


def _signing_key_or_none(opts: Options) -> Any:
    """The gateway's signing key when it exists (to seal a receipt's batch), else None."""
    import os

    from intentmesh.receipts import SigningKey, default_key_path

    cfg = _config(opts).receipts
    if cfg.key_env and os.environ.get(cfg.key_env):
        return SigningKey.from_env(cfg.key_env)
    path = Path(cfg.key).expanduser() if cfg.key else default_key_path()
    return SigningKey.load(path) if path.exists() else None


@app.command("prove")
def prove(
    ctx: typer.Context,
    receipt_id: Annotated[str, typer.Argument(help="Receipt id (rcpt_...).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the proof here (default: stdout).")
    ] = None,
    ledger: LedgerOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Print a Merkle inclusion proof of one receipt (JSON), checkable without the ledger."""
    from intentmesh.errors import ReceiptError

    opts = options(ctx, config, False, verbose)
    book = _open(opts, ledger)
    assert book is not None
    with book:
        try:
            proof = book.prove(receipt_id, _signing_key_or_none(opts))
        except ReceiptError as exc:
            raise CliError(str(exc)) from None
    text = proof.to_json() + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote the inclusion proof of {receipt_id} to {output}\n")


@app.command("verify-proof")
def verify_proof(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A proof from `receipts prove` ('-': stdin).")],
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="Trust only this key: a PEM file, or 64 hex digits."),
    ] = None,
    config: ConfigOpt = None,
    json_out: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check an inclusion proof: the receipt's signature, its Merkle path and the signed root."""
    from intentmesh.receipts import InclusionProof, inclusion_problem

    opts = options(ctx, config, json_out, verbose)
    text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    problem = inclusion_problem(text, _trusted(public_key) if public_key else None)
    data: dict[str, Any] = {"schema": "intentmesh.receipts.verify_proof.v1", "ok": problem is None}
    if problem is None:
        proof = InclusionProof.from_json(text)
        cp = proof.checkpoint
        data.update(receipt=proof.receipt.id, batch=cp.batch, root=cp.root, path=len(proof.path))
    else:
        data["problem"] = problem
    if opts.json:
        emit_json(data)
    elif problem is None:
        sys.stdout.write(
            f"ok: {data['receipt']} is in batch {data['batch']} (root {data['root']}), "
            f"{data['path']} hashes\n"
        )
    if problem is not None:
        raise CliError(f"inclusion proof does not hold: {problem}", EXIT_VERIFY)


@app.command("rotate-key")
def rotate_key(
    ctx: typer.Context,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Replace the signing key with a new one endorsed by the old; old receipts stay verifiable
    through the key history (`receipts keys`)."""
    from intentmesh.receipts import default_key_path
    from intentmesh.receipts import rotate_key as rotate

    opts = options(ctx, config, False, verbose)
    cfg = _config(opts).receipts
    if cfg.key_env:
        raise CliError(f"the key comes from ${cfg.key_env}; rotate it where it is kept", EXIT_USAGE)
    path = Path(cfg.key).expanduser() if cfg.key else default_key_path()
    new, history = rotate(path, path.with_name("key_history.jsonl"))
    sys.stdout.write(f"new key_id {new.key_id}; {len(history.records)} keys in the history\n")


@app.command("keys")
def keys(
    ctx: typer.Context,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Print the key history (every public key, each endorsed by the one before) as JSON."""
    from intentmesh.receipts import KeyHistory, default_key_path

    opts = options(ctx, config, True, verbose)
    cfg = _config(opts).receipts
    path = Path(cfg.key).expanduser() if cfg.key else default_key_path()
    history = KeyHistory.load(path.with_name("key_history.jsonl"))
    problem = history.problem()
    sys.stdout.write(history.to_json() + "\n")
    if problem is not None:
        raise CliError(f"key history is broken: {problem}", EXIT_VERIFY)
