"""``intentmesh receipts prove | verify-proof | rotate-key | keys``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from intentmesh.cli import app
from intentmesh.receipts import Ledger, SigningKey


def run(*args: str | Path, code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    return result.stdout


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "intentmesh.toml"
    path.write_text(
        f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "key.pem"}"\n'
    )
    key = SigningKey.load_or_create(tmp_path / "key.pem")
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for i in range(5):
            ledger.append({"i": i}, key)
    return path


def test_prove_and_verify_proof(config: Path, tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        rid = list(ledger)[2].id
    out = tmp_path / "proof.json"
    run("receipts", "prove", rid, "--config", config, "-o", out)
    assert json.loads(out.read_text())["receipt"]["body"]["id"] == rid
    key = SigningKey.load(tmp_path / "key.pem").public_key_hex()
    assert "ok:" in run("receipts", "verify-proof", out, "--public-key", key)
    data = json.loads(run("receipts", "verify-proof", out, "--json"))
    assert data["ok"] and data["batch"] == 1
    bad = json.loads(out.read_text())
    bad["receipt"]["body"]["i"] = 99
    out.write_text(json.dumps(bad))
    run("receipts", "verify-proof", out, code=4)
    other = SigningKey.generate().public_key_hex()
    run("receipts", "prove", "rcpt_nope", "--config", config, code=1)
    out.write_text(json.dumps({**bad, "receipt": json.loads(json.dumps(bad["receipt"]))}))
    run("receipts", "verify-proof", out, "--public-key", other, code=4)


def test_rotate_key_keeps_the_ledger_verifiable(config: Path, tmp_path: Path) -> None:
    first = SigningKey.load(tmp_path / "key.pem")
    assert "new key_id" in run("receipts", "rotate-key", "--config", config)
    second = SigningKey.load(tmp_path / "key.pem")
    assert second.key_id != first.key_id
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        ledger.append({"after": True}, second)
    history = json.loads(run("receipts", "keys", "--config", config))
    ids = [k["key_id"] for k in history["keys"]]
    assert ids == [first.key_id, second.key_id]
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        assert ledger.verify({k["key_id"]: k["public_key"] for k in history["keys"]})
