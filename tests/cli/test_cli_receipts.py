"""``intentmesh receipts list|show|verify|export|key``."""

from __future__ import annotations

import json
import sqlite3

import pytest


@pytest.fixture
def ledger(cli, config, tmp_path):
    """Three receipts in the config's ledger."""
    for prompt in ("one", "two", "three"):
        cli.run("infer", prompt, "--config", config)
    return tmp_path / "receipts.sqlite3"


def test_list(cli, config, ledger):
    data = cli.json("receipts", "list", "--config", config)
    assert data["schema"] == "intentmesh.receipts.list.v1"
    assert data["ledger"] == str(ledger) and data["total"] == 3
    assert [r["seq"] for r in data["receipts"]] == [1, 2, 3]
    first = data["receipts"][0]
    assert first["id"].startswith("rcpt_") and first["backend"] == "chutes"
    assert set(first) == {
        "id",
        "seq",
        "timestamp",
        "backend",
        "network",
        "model",
        "provider_model",
        "cost_usd",
        "latency_ms",
        "usage",
        "verifiability",
        "attempts",
        "hash",
    }
    assert [
        r["seq"] for r in cli.json("receipts", "list", "--config", config, "-n", "2")["receipts"]
    ] == [2, 3]
    out = cli.run("receipts", "list", "--ledger", ledger).stdout
    assert "chutes" in out and "rcpt_" in out


def test_list_empty(cli, tmp_path):
    assert cli.json("receipts", "list", "--ledger", tmp_path / "none.sqlite3")["receipts"] == []
    assert (
        "no receipts" in cli.run("receipts", "list", "--ledger", tmp_path / "none.sqlite3").stdout
    )
    assert not (tmp_path / "none.sqlite3").exists()


def test_show(cli, config, ledger):
    last = cli.json("receipts", "show", "--config", config)
    assert last["schema"] == "intentmesh.receipts.show.v1" and last["signature_valid"] is True
    body = last["receipt"]["body"]
    assert body["seq"] == 3 and set(last["receipt"]) == {"body", "signature", "hash"}
    by_id = cli.json("receipts", "show", body["id"], "--config", config)
    assert by_id["receipt"] == last["receipt"]
    assert cli.json("receipts", "show", "1", "--config", config)["receipt"]["body"]["seq"] == 1
    out = cli.run("receipts", "show", "last", "--config", config).stdout
    assert f"receipt {body['id']}" in out and "signature valid" in out and "attempts (1)" in out


def test_show_unknown(cli, config, ledger):
    line = cli.error_line(cli.run("receipts", "show", "rcpt_NOPE", "--config", config, code=2))
    assert "rcpt_NOPE" in line and "receipts list" in line


def test_missing_ledger_is_an_error(cli, tmp_path):
    line = cli.error_line(cli.run("receipts", "verify", "--ledger", tmp_path / "x.sqlite3", code=1))
    assert "no receipt ledger" in line


def test_verify_ok(cli, config, ledger):
    assert cli.run("receipts", "verify", "--config", config).stdout.startswith(
        "ok: 3 receipts verified"
    )
    data = cli.json("receipts", "verify", "--ledger", ledger)
    assert data == {
        "schema": "intentmesh.receipts.verify.v1",
        "source": str(ledger),
        "ok": True,
        "count": 3,
        "first_bad_id": None,
        "first_bad_seq": None,
        "problem": None,
    }


def _tamper(ledger, seq):
    conn = sqlite3.connect(ledger)
    conn.execute("DROP TRIGGER receipts_no_update")
    body = json.loads(conn.execute("SELECT body FROM receipts WHERE seq = ?", (seq,)).fetchone()[0])
    body["cost_usd"] = 0.0
    conn.execute("UPDATE receipts SET body = ? WHERE seq = ?", (json.dumps(body), seq))
    conn.commit()
    conn.close()


def test_verify_detects_tampering_with_exit_4(cli, config, ledger):
    _tamper(ledger, 2)
    result = cli.run("receipts", "verify", "--config", config, code=4)
    line = cli.error_line(result)
    assert "seq 2" in line and "1 receipts before it verified" in line
    data = cli.json("receipts", "verify", "--config", config, code=4)
    assert data["ok"] is False and data["first_bad_seq"] == 2 and data["count"] == 1
    assert cli.json("receipts", "show", "2", "--config", config, code=4)["signature_valid"] is False


def test_export_and_verify_file(cli, config, ledger, tmp_path):
    out = cli.run("receipts", "export", "--config", config).stdout
    assert len(out.splitlines()) == 3 and json.loads(out.splitlines()[0])["body"]["seq"] == 1
    dump = tmp_path / "dump.jsonl"
    result = cli.run("receipts", "export", "--config", config, "-o", dump)
    assert "exported 3 receipts" in result.stderr
    assert cli.json("receipts", "export", "--config", config, "-o", dump)["count"] == 3
    assert cli.json("receipts", "verify", "--file", dump)["count"] == 3
    lines = dump.read_text().splitlines()
    dump.write_text("\n".join([lines[0], lines[2]]) + "\n")  # a receipt removed
    data = cli.json("receipts", "verify", "--file", dump, code=4)
    assert data["ok"] is False and "line 2" in data["problem"]


def test_verify_file_names_the_position_of_a_tampered_receipt(cli, config, ledger, tmp_path):
    dump = tmp_path / "dump.jsonl"
    cli.run("receipts", "export", "--config", config, "-o", dump)
    lines = dump.read_text().splitlines()
    tampered = json.loads(lines[1])
    tampered["body"]["cost_usd"] = 0.0
    dump.write_text("\n".join([lines[0], json.dumps(tampered), lines[2]]) + "\n")
    line = cli.error_line(cli.run("receipts", "verify", "--file", dump, code=4))
    assert f"at seq 2 ({tampered['body']['id']})" in line, line
    assert "(1 receipts before it verified)" in line and "None" not in line
    data = cli.json("receipts", "verify", "--file", dump, code=4)
    assert (data["first_bad_seq"], data["count"]) == (2, 1)
    assert data["first_bad_id"] == tampered["body"]["id"]
    dump.write_text("\n".join([lines[0], lines[1], "not json"]) + "\n")  # unreadable line 3
    line = cli.error_line(cli.run("receipts", "verify", "--file", dump, code=4))
    assert "line 3" in line and "(2 receipts before it verified)" in line and "None" not in line


def test_key_and_trusted_verification(cli, config, ledger, tmp_path):
    key = cli.json("receipts", "key", "--config", config)
    assert key["schema"] == "intentmesh.receipts.key.v1" and len(key["public_key_hex"]) == 64
    assert "BEGIN PUBLIC KEY" in cli.run("receipts", "key", "--config", config).stdout
    assert cli.json(
        "receipts", "verify", "--config", config, "--public-key", key["public_key_hex"]
    )["ok"]
    pem = tmp_path / "pub.pem"
    pem.write_text(key["public_key_pem"])
    assert cli.json("receipts", "verify", "--config", config, "--public-key", pem)["ok"]
    other = "11" * 32
    data = cli.json("receipts", "verify", "--config", config, "--public-key", other, code=4)
    assert "not in public_keys" in data["problem"]
    assert "--public-key" in cli.error_line(
        cli.run("receipts", "verify", "--config", config, "--public-key", "zz", code=2)
    )


def test_key_missing(cli, tmp_path):
    assert "no signing key" in cli.error_line(cli.run("receipts", "key", code=1))
