"""``intentmesh quote``."""

from __future__ import annotations

import json

ROW_KEYS = {
    "backend",
    "network",
    "model",
    "provider_model",
    "input_price",
    "output_price",
    "worst_case_cost_usd",
    "expected_cost_usd",
    "expected_latency_ms",
    "p95_latency_ms",
    "verifiability",
    "price_source",
    "price_age_s",
    "feasible",
    "rank",
    "reason",
    "message",
    "cheapest",
    "fastest",
}


def test_quote_table_marks_cheapest_and_fastest(cli, config):
    out = cli.run("quote", "Hello", "--config", config).stdout
    for name in ("chutes", "akash", "ionet", "bittensor", "unsloth/Llama-3.1-8B-Instruct"):
        assert name in out
    assert "✓ cheapest" in out and "✓ fastest" in out
    assert "cheapest: chutes" in out and "fastest: ionet" in out


def test_quote_json_schema(cli, config):
    data = cli.json("quote", "Hello", "--config", config, "--max-tokens", "100")
    assert data["schema"] == "intentmesh.quote.v1"
    assert data["models"] == ["llama-3.1-8b-instruct"]
    assert data["max_tokens"] == 100
    assert set(data["prompt_tokens"]) == {"upper_bound", "expected"}
    assert set(data["limits"]) == {"max_price_usd", "max_latency_ms", "verifiability", "optimize"}
    assert data["feasible"] and data["cheapest"] == "chutes" and data["fastest"] == "ionet"
    assert [r["backend"] for r in data["rows"]] == ["chutes", "akash", "ionet"]
    for row in data["rows"]:
        assert set(row) == ROW_KEYS
        assert row["worst_case_cost_usd"] >= row["expected_cost_usd"] > 0
        assert row["price_source"] == "configured"
    assert [r["rank"] for r in data["rows"]] == [1, 2, 3]


def test_quote_price_cap_rejects_with_reasons(cli, config):
    data = cli.json("quote", "Hello", "--config", config, "--max-price", "$0.00005")
    ionet = next(r for r in data["rows"] if r["backend"] == "ionet")
    assert not ionet["feasible"] and ionet["reason"] == "over_price_cap"
    assert "exceeds cap" in ionet["message"]
    assert data["limits"]["max_price_usd"] == 0.00005


def test_quote_nothing_feasible_exits_3_but_prints_the_table(cli, config):
    result = cli.run("quote", "Hello", "--config", config, "--max-latency", "1", code=3)
    assert "over_latency_target" in result.stdout
    assert "no backend is feasible" in cli.error_line(result)


def test_quote_verifiability_and_optimize(cli, config):
    data = cli.json("quote", "Hi", "--config", config, "--verifiability", "attested", code=3)
    assert {r["reason"] for r in data["rows"]} == {"verifiability_unsupported"}
    data = cli.json("quote", "Hi", "--config", config, "--optimize", "latency")
    assert data["rows"][0]["backend"] == "ionet"


def test_quote_network_and_exclude(cli, config):
    data = cli.json("quote", "Hi", "--config", config, "--network", "akash")
    assert [r["backend"] for r in data["rows"] if r["feasible"]] == ["akash"]
    data = cli.json("quote", "Hi", "--config", config, "--exclude", "chutes", "--exclude", "ionet")
    assert data["cheapest"] == "akash"


def test_quote_unknown_model_suggests(cli, config):
    result = cli.run("quote", "Hi", "--config", config, "-m", "lama-3.1-8b", code=3)
    line = cli.error_line(result)
    assert "unknown model 'lama-3.1-8b'" in line and "llama-3.1-8b-instruct" in line


def test_quote_alias_resolves(cli, config):
    data = cli.json("quote", "Hi", "--config", config, "-m", "meta-llama/Llama-3.1-8B-Instruct")
    assert data["models"] == ["llama-3.1-8b-instruct"]


def test_quote_bad_price_is_usage_error(cli, config):
    result = cli.run("quote", "Hi", "--config", config, "--max-price", "cheap", code=2)
    assert "--max-price" in cli.error_line(result)


def test_quote_without_config_explains(cli):
    line = cli.error_line(cli.run("quote", "Hi", code=2))
    assert "config init" in line and "demo" in line
    line = cli.error_line(cli.run("quote", "Hi", "-m", "llama-3.1-8b-instruct", code=3))
    assert "no configured backend serves it" in line


def test_quote_reads_stdin(cli, config):
    result = cli.run("quote", "-", "--config", config, "--json", input="a long prompt " * 50)
    assert json.loads(result.stdout)["prompt_tokens"]["expected"] > 100
    assert "standard input is empty" in cli.error_line(
        cli.run("quote", "-", "--config", config, input="", code=2)
    )
