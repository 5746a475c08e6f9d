"""``intentmesh infer`` and ``intentmesh plan``."""

from __future__ import annotations

import json

from intentmesh.testing import Fault


def test_infer_prints_answer_then_summary_on_stderr(cli, config):
    result = cli.run("infer", "Hello mesh", "--config", config)
    assert result.stdout == "echo: Hello mesh\n"
    summary = result.stderr.strip()
    assert summary.startswith("─ chutes (bittensor) · llama-3.1-8b-instruct · $")
    assert " ms · 1 attempt · receipt rcpt_" in summary


def test_infer_json(cli, config):
    data = cli.json("infer", "Hello", "--config", config, "--seed", "7", "--temperature", "0.5")
    assert data["schema"] == "intentmesh.infer.v1"
    assert (
        data["text"] == "echo: Hello"
        and data["backend"] == "chutes"
        and data["network"] == "bittensor"
    )
    assert (
        data["receipt_id"].startswith("rcpt_")
        and data["receipt"]["body"]["id"] == data["receipt_id"]
    )
    assert data["usage"]["total_tokens"] > 0 and data["cost_usd"] > 0
    for key in (
        "model",
        "provider_model",
        "latency_ms",
        "ttft_ms",
        "finish_reason",
        "cached",
        "flags",
        "attempts",
    ):
        assert key in data


def test_infer_stream(cli, config):
    result = cli.run("infer", "one two three", "--config", config, "--stream")
    assert result.stdout == "echo: one two three\n"
    assert "receipt rcpt_" in result.stderr


def test_infer_stream_json_lines(cli, config):
    result = cli.run("infer", "one two three", "--config", config, "--stream", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events[:-1]] == ["chunk"] * (len(events) - 1)
    assert "".join(e["text"] for e in events[:-1]) == "echo: one two three"
    assert events[-1]["type"] == "result" and events[-1]["schema"] == "intentmesh.infer.v1"


def test_infer_fails_over_and_says_so(cli, config, demo_net):
    demo_net.providers["chutes"].always(Fault.status(503))
    data = cli.json("infer", "Hello", "--config", config)
    assert data["backend"] == "akash"
    assert [a["backend"] for a in data["attempts"]][-1] == "akash"
    assert {a["error_kind"] for a in data["attempts"] if a["outcome"] == "error"} == {"unavailable"}
    result = cli.run(
        "infer", "Hello", "--config", config, "--network", "bittensor", "--network", "akash"
    )
    assert "attempts (" in result.stderr and "failed)" in result.stderr


def test_infer_all_backends_failing_exits_1(cli, config, demo_net):
    for provider in demo_net.providers.values():
        provider.always(Fault.status(500))
    result = cli.run("infer", "Hello", "--config", config, code=1)
    assert cli.error_line(result)
    assert result.stdout == ""


def test_infer_no_receipt_at_verifiability_none(cli, config):
    result = cli.run("infer", "Hi", "--config", config, "--verifiability", "none")
    assert "no receipt" in result.stderr


def test_infer_system_message_and_hedge(cli, config):
    data = cli.json("infer", "Hi", "--config", config, "--system", "Be brief.", "--hedge", "auto")
    assert data["text"]
    result = cli.run("infer", "Hi", "--config", config, "--hedge", "soon", code=2)
    assert "--hedge" in cli.error_line(result)


def test_infer_invalid_intent_is_usage_error(cli, config):
    result = cli.run("infer", "   ", "--config", config, code=2)
    assert "prompt" in cli.error_line(result)


def test_infer_unknown_model_suggests(cli, config):
    line = cli.error_line(cli.run("infer", "Hi", "--config", config, "-m", "qwen3-8", code=3))
    assert "did you mean" in line and "qwen3-8b" in line


def test_plan_human(cli, config):
    out = cli.run("plan", "Hi", "--config", config, "--exclude", "akash").stdout
    assert out.index("chutes") < out.index("ionet")
    assert "✗ excluded" in out and "akash: excluded by the intent" in out


def test_plan_json(cli, config):
    data = cli.json("plan", "Hi", "--config", config, "--max-price", "0.00005")
    assert data["schema"] == "intentmesh.plan.v1"
    assert data["feasible"] is True
    assert [c["backend"] for c in data["candidates"]] == ["chutes", "akash"]
    assert data["rejected"]["ionet"]["reason"] == "over_price_cap"
    assert {r["backend"] for r in data["rejections"]} == {"ionet"}
    assert data["hint"] == ""


def test_plan_infeasible_exits_3(cli, config):
    data = cli.json("plan", "Hi", "--config", config, "-m", "qwen3-8b", code=3)
    assert not data["feasible"] and data["candidates"] == []
    assert {r["reason"] for r in data["rejections"]} == {"model_not_served"}
