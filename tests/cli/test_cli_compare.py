"""``intentmesh compare`` and the shipped reference price table."""

from __future__ import annotations

import json
import re

import pytest

from intentmesh._catalog import default_catalog
from intentmesh.cli._common import money
from intentmesh.cli._reference import reference_table


def test_reference_table_is_dated_and_sourced():
    table = reference_table()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.as_of)
    providers = {s["provider"] for s in table.sources}
    assert all(s["url"].startswith("https://") for s in table.sources)
    catalog = default_catalog()
    for price in table.prices:
        assert price.provider in providers, price
        assert price.input >= 0 and price.output >= 0
        assert (price.same_as is None) != (not price.equivalent_for), price
        for name in (price.same_as, *price.equivalent_for):
            assert name is None or catalog.canonical(name) == name, name


def test_compare_with_options(cli, config):
    data = cli.json(
        "compare",
        "--config",
        config,
        "--requests",
        "1000000",
        "--avg-in",
        "500",
        "--avg-out",
        "200",
    )
    assert data["schema"] == "intentmesh.compare.v1"
    assert data["model"] == "llama-3.1-8b-instruct"
    assert data["workload"] == {
        "requests": 1000000,
        "avg_input_tokens": 500,
        "avg_output_tokens": 200,
        "source": "options",
    }
    assert data["reference"]["as_of"] == reference_table().as_of and data["reference"]["sources"]
    assert data["reference"]["age_days"] == reference_table().age_days()
    backends = [r for r in data["rows"] if r["kind"] == "backend"]
    refs = [r for r in data["rows"] if r["kind"] == "reference"]
    assert [r["name"] for r in backends] == ["chutes", "akash", "ionet"]
    assert backends[0]["monthly_cost_usd"] == pytest.approx(1e6 * (500 * 0.02 + 200 * 0.05) / 1e6)
    assert {r["relation"] for r in refs} == {"same", "equivalent"}
    assert data["cheapest_backend"] == "chutes"
    base = data["baseline"]
    assert base["relation"] == "same"
    assert backends[0]["savings_ratio"] == pytest.approx(
        base["monthly_cost_usd"] / backends[0]["monthly_cost_usd"], rel=0.01
    )
    for r in refs:
        assert r["savings_ratio"] == pytest.approx(
            r["monthly_cost_usd"] / backends[0]["monthly_cost_usd"], rel=0.01
        )
        assert r["source"].startswith("https://")
    assert data["png"] is None


def test_compare_human_has_table_and_bars(cli, config):
    out = cli.run(
        "compare", "--config", config, "--requests", "1000", "--avg-in", "100", "--avg-out", "50"
    ).stdout
    assert "mesh" in out and "same" in out and "equivalent" in out
    assert "█" in out and "◆ chutes" in out and "×" in out
    assert f"as of {reference_table().as_of}" in out
    if reference_table().age_days() > 180:
        assert "days old: run `intentmesh compare --refresh`" in out


def test_compare_workload_jsonl(cli, config, tmp_path):
    log = tmp_path / "traffic.jsonl"
    lines = [
        {"prompt": "x" * 400, "max_tokens": 100},
        {"input_tokens": 300, "output_tokens": 80},
        {"usage": {"prompt_tokens": 200, "completion_tokens": 40}},
        {"body": {"usage": {"prompt_tokens": 100, "completion_tokens": 20}}},
    ]
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    data = cli.json("compare", "--config", config, "--workload", log)
    load = data["workload"]
    assert load["requests"] == 4 and load["source"] == str(log)
    assert load["avg_output_tokens"] == pytest.approx((50 + 80 + 40 + 20) / 4)
    scaled = cli.json("compare", "--config", config, "--workload", log, "--requests", "40")
    assert scaled["rows"][0]["monthly_cost_usd"] == pytest.approx(
        10 * data["rows"][0]["monthly_cost_usd"]
    )


def test_compare_workload_summary_files(cli, config, tmp_path):
    summary = tmp_path / "w.toml"
    summary.write_text("requests = 5000\navg_in = 800\navg_out = 300\n")
    assert cli.json("compare", "--config", config, "-w", summary)["workload"]["requests"] == 5000
    as_json = tmp_path / "w.json"
    as_json.write_text(
        json.dumps({"requests_per_month": 10, "avg_input_tokens": 1, "avg_output_tokens": 2})
    )
    assert (
        cli.json("compare", "--config", config, "-w", as_json)["workload"]["avg_output_tokens"] == 2
    )


def test_compare_bad_input(cli, config, tmp_path):
    line = cli.error_line(cli.run("compare", "--config", config, "--requests", "10", code=2))
    assert "--avg-in" in line and "--avg-out" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\nnot json\n')
    assert f"{bad}:2" in cli.error_line(cli.run("compare", "--config", config, "-w", bad, code=2))
    missing = tmp_path / "w.toml"
    missing.write_text("requests = 5\n")
    assert "avg_in" in cli.error_line(cli.run("compare", "--config", config, "-w", missing, code=2))
    assert "nope.jsonl: no such file" in cli.error_line(
        cli.run("compare", "--config", config, "-w", tmp_path / "nope.jsonl", code=2)
    )


def test_compare_unknown_model(cli, config):
    line = cli.error_line(
        cli.run(
            "compare",
            "--config",
            config,
            "-m",
            "deepsek-r1",
            "--requests",
            "1",
            "--avg-in",
            "1",
            "--avg-out",
            "1",
            code=3,
        )
    )
    assert "deepseek-r1" in line


def test_compare_png_is_a_real_image(cli, config, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    png = tmp_path / "cost.png"
    data = cli.json(
        "compare",
        "--config",
        config,
        "--requests",
        "1000000",
        "--avg-in",
        "500",
        "--avg-out",
        "200",
        "--png",
        png,
    )
    assert data["png"] == str(png)
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    height, width = image.shape[:2]
    assert width >= 800 and height >= 300


def test_compare_png_without_matplotlib(cli, config, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = cli.run(
        "compare",
        "--config",
        config,
        "--requests",
        "1",
        "--avg-in",
        "1",
        "--avg-out",
        "1",
        "--png",
        tmp_path / "x.png",
        code=1,
    )
    assert "intentmesh[charts]" in cli.error_line(result)


def _bodies(ledger):
    from intentmesh.receipts import Ledger

    with Ledger(ledger) as book:
        return [r.body for r in book if "usage" in r.body]


def test_compare_receipts_what_you_paid_vs_the_same_tokens(cli, config, tmp_path):
    for prompt in ("Hello there", "Summarize the plot of Hamlet. " * 30, "Hi"):
        cli.run("infer", prompt, "--config", config, "--max-tokens", "60")
    data = cli.json("compare", "--config", config, "--workload", "receipts")
    bodies = _bodies(tmp_path / "receipts.sqlite3")
    assert len(bodies) == 3 and data["workload"]["requests"] == 3
    assert data["workload"]["token_counts"] == {"measured": 3}
    t = data["traffic"]
    assert t["requests"] == 3 and t["source"] == str(tmp_path / "receipts.sqlite3")
    assert t["paid_usd"] == pytest.approx(sum(b["cost_usd"] for b in bodies))
    assert t["input_tokens"] == sum(b["usage"]["prompt_tokens"] for b in bodies)
    for row in data["rows"]:
        expected = (
            sum(
                b["usage"]["prompt_tokens"] * row["input_price"]
                + b["usage"]["completion_tokens"] * row["output_price"]
                for b in bodies
            )
            / 1e6
        )
        assert row["traffic_cost_usd"] == pytest.approx(expected)
        assert row["traffic_vs_paid"] == pytest.approx(expected / t["paid_usd"], abs=0.01)
    served = {b["backend"] for b in bodies}
    assert served == {"chutes"}  # the cheapest; its row is exactly what was paid
    chutes = next(r for r in data["rows"] if r["name"] == "chutes")
    assert chutes["traffic_cost_usd"] == pytest.approx(t["paid_usd"])
    export = tmp_path / "receipts.jsonl"
    cli.run("receipts", "export", "-o", export, "--config", config)
    from_file = cli.json("compare", "--config", config, "-w", export)
    assert from_file["traffic"] == {**t, "source": str(export)}
    out = cli.run("compare", "--config", config, "-w", "receipts").stdout
    assert "your traffic: 3 requests" in out and f"you paid {money(t['paid_usd'])}" in out
    assert "same tokens would cost" in out


def test_compare_receipts_of_several_models_keep_the_compared_one(cli, config, tmp_path):
    def line(model, tokens_in, cost):
        usage = {
            "prompt_tokens": tokens_in,
            "completion_tokens": 10,
            "total_tokens": tokens_in + 10,
        }
        body = {"model": model, "usage": usage, "cost_usd": cost, "backend": "chutes"}
        return json.dumps({"body": body, "signature": "s", "hash": "h"})

    log = tmp_path / "mixed.jsonl"
    checkpoint = json.dumps(
        {"body": {"type": "intentmesh.checkpoint"}, "signature": "", "hash": ""}
    )
    lines = [line("llama-3.1-8b", 100, 0.001), line("qwen3-32b", 5000, 0.5), checkpoint]
    log.write_text("\n".join([*lines, line("llama-3.1-8b-instruct", 300, 0.002)]) + "\n")
    data = cli.json("compare", "--config", config, "-w", log)
    assert data["workload"]["requests"] == 2 and data["workload"]["avg_input_tokens"] == 200
    assert data["traffic"]["paid_usd"] == pytest.approx(0.003)
    only_other = tmp_path / "other.jsonl"
    only_other.write_text(line("qwen3-32b", 10, 0.1) + "\n")
    line_ = cli.error_line(
        cli.run("compare", "--config", config, "-w", only_other, "-m", "llama-3.1-8b", code=2)
    )
    assert "has no requests for llama-3.1-8b (it has qwen3-32b)" in line_


def test_compare_receipts_without_a_ledger(cli, config):
    line = cli.error_line(cli.run("compare", "--config", config, "-w", "receipts", code=2))
    assert "no receipt ledger at" in line and "intentmesh infer" in line


def test_compare_png_with_receipts_has_the_paid_panel(cli, config, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    cli.run("infer", "Hello", "--config", config, "--max-tokens", "20")
    plain, paid = tmp_path / "plain.png", tmp_path / "paid.png"
    cli.run("compare", "--config", config, "--requests", "10", "--avg-in", "1", "--avg-out", "1",
            "--png", plain)  # fmt: skip
    cli.run("compare", "--config", config, "-w", "receipts", "--png", paid)
    assert matplotlib.image.imread(paid).shape[0] > matplotlib.image.imread(plain).shape[0] * 1.5


def test_compare_chart_keeps_every_label_whole_and_prints_tiny_values(cli, config):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from intentmesh.cli._compare import _label, chart_figure

    data = cli.json("compare", "--config", config, "--requests", "1000", "--avg-in", "500",
                    "--avg-out", "200")  # fmt: skip
    data["rows"][0]["monthly_cost_usd"] = 0.0  # a free backend: a bar of no width
    fig = chart_figure(data)
    try:
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert sorted(labels) == sorted(_label(r) for r in data["rows"])
        assert max(len(label) for label in labels) > 44  # long names are no longer cut
        width = fig.bbox.width
        for tick in ax.get_yticklabels():
            box = tick.get_window_extent(renderer)
            assert box.x0 >= 0 and box.x1 <= width, tick.get_text()
        values = [t.get_text() for t in ax.texts]
        assert sorted(values) == sorted(money(r["monthly_cost_usd"]) for r in data["rows"])
        assert "$0" in values
        for text in ax.texts:
            assert text.get_window_extent(renderer).x1 <= width, text.get_text()
    finally:
        plt.close(fig)
