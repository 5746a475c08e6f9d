"""The examples in docs/receipts.md run, and the standalone verifier agrees with ours."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from intentmesh.receipts import Ledger, SigningKey

DOC = Path(__file__).resolve().parents[2] / "docs" / "receipts.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_quickstart_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INTENTMESH_HOME", str(tmp_path))
    exec(python_blocks()[0], {"__name__": "doc"})
    assert (tmp_path / "receipts.sqlite3").exists() and (tmp_path / "signing_key.pem").exists()


def test_standalone_verifier(tmp_path: Path) -> None:
    script = next(b for b in python_blocks() if "def verify_chain" in b)
    ns: dict[str, Any] = {"__name__": "doc"}
    exec(script, ns)
    key = SigningKey.generate()
    export = tmp_path / "receipts.jsonl"
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for i in range(5):
            ledger.append(
                {
                    "cost_usd": 4.263e-05 * i,
                    "latency_ms": 1e-7 + i,
                    "é\U0001f600": [i, 2.0],
                    "usage": {"total_tokens": 2**60},
                },
                key,
            )
        ledger.export_jsonl(export)
    chain = [json.loads(line) for line in export.read_text().splitlines()]
    assert ns["verify_chain"](chain, key.public_key_hex()) is None
    chain[2]["body"]["cost_usd"] = 1
    assert not ns["verify"](chain[2], key.public_key_hex())
    assert ns["verify_chain"](chain[:2] + chain[3:], key.public_key_hex()) is not None

    path = tmp_path / "verify_receipts.py"
    path.write_text(script)
    ok = subprocess.run(
        [sys.executable, str(path), str(export), key.public_key_hex()],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok: 5 receipts"), ok.stderr


def test_inclusion_proof_example_runs() -> None:
    block = next(b for b in python_blocks() if "verify_inclusion(text" in b)
    exec(block, {"__name__": "doc"})
