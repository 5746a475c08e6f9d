"""Reference prices for ``intentmesh compare``: a live public catalog, cached, over a bundled table.

The live catalog is OpenRouter's public, keyless model list (``GET {base}/api/v1/models``: a
``data`` array of models, each with an ``id`` such as ``openai/gpt-5-mini`` and ``pricing.prompt``
/ ``pricing.completion`` in USD per token, as strings). ``intentmesh prices refresh`` (or
``compare --refresh``) fetches it and caches the prices with the fetch time in
``$INTENTMESH_HOME/cache/`` (else the user cache dir). Which catalog ids stand next to an open
model is data: ``data/reference_models.toml``. The bundled, dated table
(``data/reference_prices.toml``) is the offline fallback; every fallback is said in a note.

Parsing and choosing rows are pure functions; :func:`fetch_catalog` and the cache are the I/O.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from intentmesh.cli._common import JsonOpt, VerboseOpt, emit_json, options
from intentmesh.cli._errors import CliError
from intentmesh.cli._reference import ReferencePrice, ReferenceTable, Relation, reference_table

__all__ = [
    "CATALOG_NAME",
    "DEFAULT_BASE_URL",
    "URL_ENV",
    "app",
    "CatalogError",
    "PriceCatalog",
    "References",
    "cache_path",
    "fetch_catalog",
    "load_cached",
    "parse_models",
    "references_for",
    "save_catalog",
]

CATALOG_NAME = "OpenRouter"
DEFAULT_BASE_URL = "https://openrouter.ai"
URL_ENV = "INTENTMESH_PRICES_URL"
CACHE_SCHEMA = "intentmesh.prices.cache.v1"
STALE_DAYS = 30


class CatalogError(Exception):
    """The catalog could not be fetched, or its document is not a usable model list."""


@dataclass(frozen=True, slots=True)
class CatalogPrice:
    """One catalog model: its id, display name and USD per 1M input and output tokens."""

    id: str
    name: str
    input: float
    output: float


@dataclass(frozen=True, slots=True)
class PriceCatalog:
    """The usable entries of one fetch of the catalog."""

    url: str
    fetched_at: str  # ISO 8601, UTC
    prices: Mapping[str, CatalogPrice]
    skipped: int = 0  # entries without a usable price

    def fetched_date(self) -> str:
        return self.fetched_at[:10]

    def age_days(self, now: datetime | None = None) -> int:
        fetched = datetime.fromisoformat(self.fetched_at)
        return ((now or datetime.now(UTC)) - fetched).days

    def page(self, model_id: str) -> str:
        """The model's page on the catalog's site."""
        return f"{self.url.split('/api/', 1)[0]}/{model_id}"


def models_url(base: str | None = None) -> str:
    """``{base}/api/v1/models``; base from the argument, ``$INTENTMESH_PRICES_URL`` or default."""
    root = (base or os.environ.get(URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
    return root.removesuffix("/api/v1/models").removesuffix("/api/v1") + "/api/v1/models"


# -- parsing (pure) ----------------------------------------------------------------------------


def parse_models(doc: Any, url: str, fetched_at: str) -> PriceCatalog:
    """The usable prices of a ``/api/v1/models`` document; entries without one are counted."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise CatalogError("the answer has no 'data' list of models")
    prices: dict[str, CatalogPrice] = {}
    for item in data:
        price = _entry(item)
        if price is not None:
            prices[price.id] = price
    if not prices:
        raise CatalogError(f"none of its {len(data)} entries has a usable price")
    return PriceCatalog(url, fetched_at, prices, skipped=len(data) - len(prices))


def _entry(item: Any) -> CatalogPrice | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        return None
    pricing = item.get("pricing")
    if not isinstance(pricing, dict):
        return None
    prompt, completion = (
        _per_million(pricing.get("prompt")),
        _per_million(pricing.get("completion")),
    )
    if prompt is None or completion is None:
        return None
    name = item.get("name")
    return CatalogPrice(
        item["id"], name if isinstance(name, str) else item["id"], prompt, completion
    )


def _per_million(value: Any) -> float | None:
    """USD per token (a decimal string, as the catalog sends it) as USD per 1M tokens."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        per_token = Decimal(str(value))
    except InvalidOperation:
        return None
    if not per_token.is_finite() or per_token < 0:  # "-1" means "varies" (routers)
        return None
    return float(per_token * 1_000_000)


# -- I/O: fetch and cache ----------------------------------------------------------------------


def fetch_catalog(base: str | None = None, timeout_s: float = 20.0) -> PriceCatalog:
    """GET the catalog now; :class:`CatalogError` says why it could not be used."""
    import httpx

    url = models_url(base)
    try:
        response = httpx.get(url, timeout=timeout_s, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise CatalogError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise CatalogError(f"{url} answered HTTP {response.status_code}")
    try:
        doc = response.json()
    except ValueError:
        raise CatalogError(f"{url} did not answer JSON") from None
    return parse_models(doc, url, _now())


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def cache_path() -> Path:
    """``$INTENTMESH_HOME/cache/reference_prices.json``, else the user cache dir's."""
    home = os.environ.get("INTENTMESH_HOME")
    if home:
        return Path(home).expanduser() / "cache" / "reference_prices.json"
    import platformdirs

    return (
        Path(platformdirs.user_cache_dir("intentmesh", appauthor=False)) / "reference_prices.json"
    )


def save_catalog(catalog: PriceCatalog, path: Path | None = None) -> Path:
    """Write the catalog's prices and fetch time to the cache (atomically)."""
    target = path or cache_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "schema": CACHE_SCHEMA,
        "catalog": CATALOG_NAME,
        "url": catalog.url,
        "fetched_at": catalog.fetched_at,
        "skipped": catalog.skipped,
        "prices": {
            p.id: {"name": p.name, "input": p.input, "output": p.output}
            for p in catalog.prices.values()
        },
    }
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(target)
    return target


def load_cached(path: Path | None = None) -> PriceCatalog | None:
    """The cached catalog, None when there is none; :class:`CatalogError` when it is unusable."""
    source = path or cache_path()
    try:
        doc = json.loads(source.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CatalogError(f"the cached catalog {source} is unreadable ({exc})") from None
    try:
        fetched = datetime.fromisoformat(doc["fetched_at"])
        if doc["schema"] != CACHE_SCHEMA or fetched.tzinfo is None:
            raise ValueError("not a cache of this version")
        fetched_at = fetched.isoformat()
        prices = {
            k: CatalogPrice(k, str(v["name"]), float(v["input"]), float(v["output"]))
            for k, v in doc["prices"].items()
        }
        return PriceCatalog(str(doc["url"]), fetched_at, prices, int(doc.get("skipped", 0)))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CatalogError(f"the cached catalog {source} is not in the expected shape") from None


# -- which rows (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReferenceMap:
    """Catalog ids for each canonical model: same weights, and closed equivalents."""

    same: Mapping[str, tuple[str, ...]]
    equivalent: Mapping[str, tuple[str, ...]]

    def ids(self, canonical: str, relation: Relation) -> tuple[str, ...]:
        table = self.same if relation == "same" else self.equivalent
        return table.get(canonical, ())


def parse_reference_map(text: str) -> ReferenceMap:
    data = tomllib.loads(text)
    same = {k: tuple(v) for k, v in data.get("same", {}).items()}
    equivalent: dict[str, tuple[str, ...]] = {}
    for tier in data.get("tiers", []):
        for model in tier["open"]:
            equivalent[model] = tuple(tier["closed"])
    return ReferenceMap(same, equivalent)


@cache
def reference_map() -> ReferenceMap:
    """The mapping shipped in ``data/reference_models.toml``."""
    text = resources.files("intentmesh").joinpath("data/reference_models.toml").read_text("utf-8")
    return parse_reference_map(text)


@dataclass
class Reference:
    """One reference row: a price, how it relates to the model, where the number comes from."""

    price: ReferencePrice
    relation: Relation
    source: str
    as_of: str
    origin: str  # "catalog" | "bundled"


@dataclass
class References:
    """The reference rows for one model, and where they came from."""

    rows: list[Reference]
    catalog: PriceCatalog | None
    bundled: ReferenceTable
    notes: list[str] = field(default_factory=list)


def references_for(
    canonical: str,
    catalog: PriceCatalog | None,
    bundled: ReferenceTable | None = None,
    mapping: ReferenceMap | None = None,
    notes: list[str] | None = None,
) -> References:
    """Catalog rows where the catalog has them; bundled rows (with a note) where it does not."""
    table = bundled or reference_table()
    ids = mapping or reference_map()
    out = References([], catalog, table, list(notes or ()))
    old = {
        rel: [p for p, r in table.for_model(canonical) if r == rel]
        for rel in ("same", "equivalent")
    }
    for relation in ("same", "equivalent"):
        live = _catalog_rows(catalog, ids.ids(canonical, relation), relation) if catalog else []
        if live or catalog is None:
            out.rows += live
        elif old[relation]:
            out.notes.append(_partial_note(catalog, canonical, relation, table.as_of))
        if not live:
            out.rows += [_bundled_row(p, relation, table) for p in old[relation]]
    return out


def _catalog_rows(
    catalog: PriceCatalog, ids: tuple[str, ...], relation: Relation
) -> list[Reference]:
    rows = []
    for model_id in ids:
        found = catalog.prices.get(model_id)
        if found is None:
            continue
        provider, _, model = model_id.partition("/")
        name = "openrouter" if relation == "same" else provider
        price = ReferencePrice(
            name, model_id if relation == "same" else model, found.input, found.output
        )
        rows.append(
            Reference(price, relation, catalog.page(model_id), catalog.fetched_date(), "catalog")
        )
    rows.sort(key=lambda r: (r.price.input + r.price.output, r.price.provider))
    return rows


def _bundled_row(price: ReferencePrice, relation: Relation, table: ReferenceTable) -> Reference:
    return Reference(price, relation, table.source_url(price.provider), table.as_of, "bundled")


def _partial_note(catalog: PriceCatalog, canonical: str, relation: Relation, as_of: str) -> str:
    what = "same-weights" if relation == "same" else "closed-equivalent"
    return (
        f"the {CATALOG_NAME} catalog lists no {what} entry for {canonical}; "
        f"those rows come from the bundled table as of {as_of}"
    )


def current_catalog(
    refresh: bool, base: str | None = None
) -> tuple[PriceCatalog | None, list[str]]:
    """The catalog ``compare`` should use (fetched now with ``refresh``, else the cache), and
    a note for every fallback. Never raises: a failure means the bundled table, said so."""
    notes: list[str] = []
    if refresh:
        try:
            fresh = fetch_catalog(base)
        except CatalogError as exc:
            notes.append(f"could not refresh reference prices: {exc}")
        else:
            try:
                save_catalog(fresh)
            except OSError as exc:
                notes.append(f"could not cache the catalog: {exc.strerror or exc}")
            return fresh, notes
    try:
        cached = load_cached()
    except CatalogError as exc:
        notes.append(f"{exc}; run `intentmesh prices refresh`")
        cached = None
    if notes:
        where = (
            f"the cached catalog fetched {cached.fetched_at}"
            if cached
            else f"the bundled table as of {reference_table().as_of}"
        )
        notes[-1] += f"; using {where}"
    return cached, notes


# -- `intentmesh prices refresh|show` ----------------------------------------------------------


app = typer.Typer(
    help="Fetch and show the reference prices `compare` uses.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help=f"Catalog base URL [default: ${URL_ENV}, else {DEFAULT_BASE_URL}].",
        show_default=False,
    ),
]


@app.command("refresh")
def refresh(
    ctx: typer.Context, url: UrlOpt = None, json_out: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Fetch the public model catalog now and cache its prices for `compare`."""
    _refresh(options(ctx, None, json_out, verbose).json, url)


@app.command("show")
def show(ctx: typer.Context, json_out: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Which reference prices `compare` uses now: the cached catalog or the bundled table."""
    _show(options(ctx, None, json_out, verbose).json)


def _refresh(as_json: bool, url: str | None) -> None:
    try:
        catalog = fetch_catalog(url)
    except CatalogError as exc:
        raise CliError(f"cannot refresh reference prices: {exc}") from None
    try:
        path = save_catalog(catalog)
    except OSError as exc:
        raise CliError(f"cannot write {cache_path()}: {exc.strerror or exc}") from None
    wanted = sorted(mapped_ids())
    missing = [i for i in wanted if i not in catalog.prices]
    doc = {
        "schema": "intentmesh.prices.refresh.v1",
        "url": catalog.url,
        "fetched_at": catalog.fetched_at,
        "models": len(catalog.prices),
        "skipped": catalog.skipped,
        "cache": str(path),
        "mapped": len(wanted) - len(missing),
        "mapped_missing": missing,
    }
    if as_json:
        emit_json(doc)
        return
    sys.stdout.write(
        f"fetched {doc['models']} priced models from {catalog.url} at {catalog.fetched_at} "
        f"({catalog.skipped} without a usable price)\ncached in {path}\n"
        f"reference ids found: {doc['mapped']} of {len(wanted)}"
        + (f"; not in the catalog: {', '.join(missing)}" if missing else "")
        + "\n"
    )


def mapped_ids() -> set[str]:
    ids = reference_map()
    return {i for table in (ids.same, ids.equivalent) for v in table.values() for i in v}


def _show(as_json: bool) -> None:
    catalog, notes = current_catalog(False)
    table = reference_table()
    doc: dict[str, Any] = {
        "schema": "intentmesh.prices.show.v1",
        "cache": str(cache_path()),
        "catalog": {
            "name": CATALOG_NAME,
            "url": catalog.url,
            "fetched_at": catalog.fetched_at,
            "age_days": catalog.age_days(),
            "models": len(catalog.prices),
        }
        if catalog
        else None,
        "bundled_as_of": table.as_of,
        "bundled_age_days": table.age_days(),
        "notes": notes,
    }
    if as_json:
        emit_json(doc)
        return
    lines = [f"note: {n}" for n in notes]
    if catalog:
        lines.append(
            f"compare uses the {CATALOG_NAME} catalog fetched {catalog.fetched_at} "
            f"({catalog.age_days()} days old, {len(catalog.prices)} priced models), "
            f"cached in {cache_path()}; the bundled table (as of {table.as_of}) fills gaps"
        )
    else:
        lines.append(
            f"compare uses the bundled table as of {table.as_of} ({table.age_days()} days old); "
            "run `intentmesh prices refresh` for current prices"
        )
    sys.stdout.write("\n".join(lines) + "\n")
