"""``docs/cli.md`` stays in step with the CLI (regenerate it with tests/cli/make_cli_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import intentmesh.cli
from intentmesh.cli._reference import reference_table

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cli.md"


def test_every_command_has_a_captured_session():
    text = DOC.read_text()
    for command in ("demo", "--help", "config init", "config check", "config show", "models",
                    "backends", "backends --probe", "quote", "plan", "infer", "infer --stream",
                    "compare", "receipts list", "receipts show", "receipts verify",
                    "receipts export", "receipts key", "prices show", "prices refresh",
                    "compare --workload receipts", "compare --refresh"):  # fmt: skip
        assert f"$ intentmesh {command}" in text, command


def test_every_json_schema_is_documented():
    sources = "".join(p.read_text() for p in Path(intentmesh.cli.__file__).parent.glob("*.py"))
    schemas = set(re.findall(r'"(intentmesh\.[a-z.]+\.v\d+)"', sources))
    assert len(schemas) >= 14
    text = DOC.read_text()
    for schema in schemas:
        assert f"`{schema}`" in text, schema


def test_exit_codes_and_reference_date_are_documented():
    text = DOC.read_text()
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 130 |"):
        assert code in text
    table = reference_table()
    assert f"**{table.as_of}**" in text
    assert f"bundled table as of {table.as_of}" in text  # the staleness line names its date
    assert "reference prices: OpenRouter catalog (" in text and ", fetched " in text
    for source in table.sources:
        assert source["url"] in text
