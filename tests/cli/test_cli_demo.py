"""``intentmesh demo``: works with no config, no key and no network, in a few seconds."""

from __future__ import annotations

import time


def test_demo_shows_routing_failover_and_receipts(cli, tmp_path):
    started = time.perf_counter()
    out = cli.run("demo").stdout
    assert time.perf_counter() - started < 10
    assert "1. routing" in out and "2. a real call" in out and "3. failover" in out
    assert "attempt chutes: error unavailable (503)" in out and "─ akash (akash)" in out
    assert "ledger ok: 2 receipts verified" in out
    assert not (tmp_path / "home").exists()  # nothing written outside the temp dir


def test_demo_json(cli):
    data = cli.json("demo")
    assert data["schema"] == "intentmesh.demo.v1" and data["home"] is None
    assert [c["backend"] for c in data["calls"]] == ["chutes", "akash"]
    assert data["failover"] == {"failed_backend": "chutes", "served_by": "akash", "attempts": 2}
    assert data["ledger"] == {"ok": True, "count": 2, "problem": None}
    assert [c["backend"] for c in data["plan"]["candidates"]] == ["chutes", "akash", "ionet"]
    assert all(c["receipt_id"].startswith("rcpt_") for c in data["calls"])


def test_demo_home_keeps_config_ledger_and_key(cli, tmp_path):
    home = tmp_path / "demo"
    data = cli.json("demo", "--home", home, "--prompt", "Hi there")
    assert data["home"] == str(home) and data["calls"][0]["text"] == "echo: Hi there"
    assert {p.name for p in home.iterdir()} >= {
        "intentmesh.toml",
        "receipts.sqlite3",
        "signing_key.pem",
    }
    assert cli.json("receipts", "verify", "--config", home / "intentmesh.toml")["count"] == 2
