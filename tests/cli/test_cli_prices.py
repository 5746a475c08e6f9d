"""Live reference prices: the public catalog (a loopback fake in its real shape), its cache, the
mapping file, and every way a fetch or a cache can fail without breaking ``compare``."""

from __future__ import annotations

import json
import os
import tomllib
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from intentmesh._catalog import default_catalog
from intentmesh.cli._prices import (
    CatalogError,
    cache_path,
    load_cached,
    models_url,
    parse_models,
    references_for,
    save_catalog,
)
from intentmesh.cli._reference import reference_table
from intentmesh.testing import FakeModelCatalog, catalog_model, refused_url

LOAD = ("--requests", "1000000", "--avg-in", "500", "--avg-out", "200")


@pytest.fixture
def catalog():
    with FakeModelCatalog() as fake:
        yield fake


def refs(data, relation=None):
    return [
        r for r in data["rows"] if r["kind"] == "reference" and relation in (None, r["relation"])
    ]


def test_parse_real_shape_per_token_strings_to_per_million():
    doc = {
        "data": [
            catalog_model("meta-llama/llama-3.1-8b-instruct", 0.02, 0.03),
            {
                **catalog_model("openrouter/auto", 0, 0),
                "pricing": {"prompt": "-1", "completion": "-1"},
            },
            {"id": "x/no-pricing", "name": "no pricing"},
            {"id": "x/bad", "pricing": {"prompt": "abc", "completion": "0.000001"}},
            "not an object",
        ]
    }
    assert doc["data"][0]["pricing"]["prompt"] == "0.00000002"
    cat = parse_models(doc, "http://x/api/v1/models", "2026-11-30T10:00:00+00:00")
    assert list(cat.prices) == ["meta-llama/llama-3.1-8b-instruct"]
    price = cat.prices["meta-llama/llama-3.1-8b-instruct"]
    assert (price.input, price.output) == (pytest.approx(0.02), pytest.approx(0.03))
    assert cat.skipped == 4
    assert (
        cat.page("meta-llama/llama-3.1-8b-instruct") == "http://x/meta-llama/llama-3.1-8b-instruct"
    )


@pytest.mark.parametrize(
    "base", ["http://h:1", "http://h:1/", "http://h:1/api/v1", "http://h:1/api/v1/models"]
)
def test_models_url_takes_the_site_or_the_api_base(base):
    assert models_url(base) == "http://h:1/api/v1/models"


@pytest.mark.parametrize(
    "doc", [[], {"models": []}, {"data": {}}, {"data": []}, {"data": [{"id": "a/b"}]}]
)
def test_parse_rejects_documents_without_usable_prices(doc):
    with pytest.raises(CatalogError):
        parse_models(doc, "u", "2026-11-30T10:00:00+00:00")


def test_mapping_names_catalog_models_and_each_open_model_once():
    text = resources.files("intentmesh").joinpath("data/reference_models.toml").read_text()
    data = tomllib.loads(text)
    catalog = default_catalog()
    seen: list[str] = []
    for tier in data["tiers"]:
        seen += tier["open"]
        assert all("/" in i for i in tier["closed"]), tier
    for name in [*data["same"], *seen]:
        assert catalog.canonical(name) == name, name
    assert len(seen) == len(set(seen))
    assert all("/" in i for ids in data["same"].values() for i in ids)


def test_refresh_caches_and_compare_uses_the_catalog(cli, config, catalog):
    out = cli.run("prices", "refresh", "--url", catalog.url).stdout
    assert f"from {catalog.url}/api/v1/models" in out and str(cache_path()) in out
    assert cache_path().is_file()
    assert cache_path().is_relative_to(Path(os.environ["INTENTMESH_HOME"]))
    data = cli.json("compare", "--config", config, *LOAD)
    ref = data["reference"]
    assert ref["catalog"]["url"] == f"{catalog.url}/api/v1/models"
    assert ref["origin"] == "catalog" and ref["notes"] == []
    assert ref["as_of"] == datetime.now(UTC).date().isoformat()
    same = refs(data, "same")
    assert [(r["name"], r["model"]) for r in same] == [
        ("openrouter", "meta-llama/llama-3.1-8b-instruct")
    ]
    assert same[0]["input_price"] == pytest.approx(0.02)
    assert same[0]["monthly_cost_usd"] == pytest.approx(1e6 * (500 * 0.02 + 200 * 0.03) / 1e6)
    assert same[0]["source"] == f"{catalog.url}/meta-llama/llama-3.1-8b-instruct"
    equivalent = {(r["name"], r["model"]) for r in refs(data, "equivalent")}
    assert equivalent == {
        ("openai", "gpt-5-nano"),
        ("anthropic", "claude-haiku-4.5"),
        ("google", "gemini-2.5-flash-lite"),
    }  # gpt-4.1-nano is mapped but not in this catalog: skipped
    assert data["baseline"]["model"] == "meta-llama/llama-3.1-8b-instruct"
    text = cli.run("compare", "--config", config, *LOAD).stdout
    assert "OpenRouter catalog" in text and f"fetched {ref['catalog']['fetched_at'][:10]}" in text
    assert "bundled table" not in text
    assert catalog.requests == 1  # compare itself never fetches without --refresh


def test_compare_refresh_fetches_now(cli, config, catalog, monkeypatch):
    monkeypatch.setenv("INTENTMESH_PRICES_URL", catalog.url)
    data = cli.json("compare", "--config", config, "--refresh", *LOAD)
    assert catalog.requests == 1 and data["reference"]["origin"] == "catalog"
    assert load_cached() is not None


def test_compare_without_a_cache_uses_the_dated_bundled_table(cli, config):
    data = cli.json("compare", "--config", config, *LOAD)
    ref = data["reference"]
    assert ref["catalog"] is None and ref["origin"] == "bundled"
    assert ref["as_of"] == reference_table().as_of
    assert all(r["origin"] == "bundled" for r in refs(data))
    text = cli.run("compare", "--config", config, *LOAD).stdout
    assert f"bundled table as of {reference_table().as_of}" in text
    if reference_table().age_days() > 180:
        assert "intentmesh compare --refresh" in text


@pytest.mark.parametrize(
    "body,status",
    [
        (b"<html>busy</html>", 200),
        (b'{"data": 5}', 200),
        (b'{"data": [{"id": "a/b", "pricing": {"prompt": "x"}}]}', 200),
        (None, 503),
    ],
)
def test_a_bad_catalog_never_breaks_compare(cli, config, catalog, body, status):
    catalog.body, catalog.status = body, status
    data = cli.json("compare", "--config", config, "--refresh", "--prices-url", catalog.url, *LOAD)
    notes = data["reference"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("could not refresh reference prices")
    assert notes[0].endswith(f"using the bundled table as of {reference_table().as_of}")
    assert data["reference"]["origin"] == "bundled" and refs(data)
    assert not cache_path().exists()
    text = cli.run("compare", "--config", config, "--refresh", "--prices-url", catalog.url, *LOAD)
    assert "note: could not refresh reference prices" in text.stdout


def test_a_failed_refresh_keeps_the_cached_catalog(cli, config, catalog):
    cli.run("prices", "refresh", "--url", catalog.url)
    data = cli.json(
        "compare", "--config", config, "--refresh", "--prices-url", refused_url(), *LOAD
    )
    assert "cannot reach" in data["reference"]["notes"][0]
    assert "using the cached catalog fetched" in data["reference"]["notes"][0]
    assert data["reference"]["origin"] == "catalog"


def test_a_partial_catalog_falls_back_per_relation(cli, config):
    only_closed = [catalog_model("openai/gpt-5-nano", 0.05, 0.4)]
    with FakeModelCatalog(only_closed) as fake:
        data = cli.json("compare", "--config", config, "--refresh", "--prices-url", fake.url, *LOAD)
    ref = data["reference"]
    assert ref["origin"] == "catalog+bundled"
    assert "no same-weights entry for llama-3.1-8b-instruct" in ref["notes"][0]
    assert {r["origin"] for r in refs(data, "same")} == {"bundled"}
    assert [(r["name"], r["origin"]) for r in refs(data, "equivalent")] == [("openai", "catalog")]
    text = cli.run("compare", "--config", config, *LOAD).stdout
    assert "OpenRouter catalog" in text and "bundled table as of" in text


NAIVE = (
    '{"schema": "intentmesh.prices.cache.v1", "url": "u", "fetched_at": "2026-11-30T10:00:00", '
    '"prices": {}}'
)


@pytest.mark.parametrize(
    "content", ["{not json", '{"schema": "other"}', '{"schema": 1}', "[]", NAIVE]
)
def test_a_corrupt_cache_falls_back_and_says_so(cli, config, content):
    cache_path().parent.mkdir(parents=True)
    cache_path().write_text(content)
    data = cli.json("compare", "--config", config, *LOAD)
    assert data["reference"]["origin"] == "bundled"
    assert "intentmesh prices refresh" in data["reference"]["notes"][0]


def test_an_old_catalog_says_its_age(cli, config):
    old = (datetime.now(UTC) - timedelta(days=45)).replace(microsecond=0).isoformat()
    cat = parse_models(
        {"data": [catalog_model("meta-llama/llama-3.1-8b-instruct", 1, 2)]}, "u", old
    )
    save_catalog(cat)
    text = cli.run("compare", "--config", config, *LOAD).stdout
    assert f"fetched {old[:10]}" in text and "45 days old" in text


def test_references_for_a_model_the_mapping_lacks():
    cat = parse_models({"data": [catalog_model("x/y", 1, 1)]}, "u", "2026-11-30T10:00:00+00:00")
    got = references_for("deepseek-v3", cat)
    assert got.rows and {r.origin for r in got.rows} == {"bundled"}
    assert len(got.notes) == 2


def test_prices_refresh_failure_is_one_line(cli, catalog):
    catalog.status = 503
    line = cli.error_line(cli.run("prices", "refresh", "--url", catalog.url, code=1))
    assert "HTTP 503" in line and not cache_path().exists()


def test_prices_show_and_refresh_json(cli, catalog):
    shown = cli.json("prices", "show")
    assert shown["schema"] == "intentmesh.prices.show.v1" and shown["catalog"] is None
    assert shown["bundled_as_of"] == reference_table().as_of
    doc = cli.json("prices", "refresh", "--url", catalog.url)
    assert doc["schema"] == "intentmesh.prices.refresh.v1"
    assert doc["models"] == len(catalog.models) - 1  # the "-1" router has no usable price
    assert "openai/gpt-4.1-nano" in doc["mapped_missing"]
    assert json.loads(cache_path().read_text())["url"] == doc["url"]
    shown = cli.json("prices", "show")
    assert shown["catalog"]["fetched_at"] == doc["fetched_at"]
    assert "OpenRouter catalog fetched" in cli.run("prices", "show").stdout
