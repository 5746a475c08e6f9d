"""The model catalog: canonical names, aliases, and resolution with close-match suggestions."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

__all__ = ["Catalog", "CatalogModel", "default_catalog"]


@dataclass(frozen=True, slots=True)
class CatalogModel:
    """One model known by a canonical name and any number of aliases."""

    name: str
    family: str = ""
    context_length: int | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


class Catalog:
    """Maps any alias (case-insensitive) to its canonical model name."""

    def __init__(self, models: Iterable[CatalogModel]) -> None:
        self.models: dict[str, CatalogModel] = {}
        self._alias: dict[str, str] = {}
        for model in models:
            self.add(model)

    def add(self, model: CatalogModel) -> None:
        self.models[model.name] = model
        for alias in (model.name, *model.aliases):
            self._alias[alias.lower()] = model.name

    def canonical(self, name: str) -> str | None:
        """The canonical name for ``name``, or None when the catalog does not know it."""
        return self._alias.get(name.strip().lower())

    def resolve(self, name: str) -> str:
        """The canonical name, or the name itself (stripped) for models outside the catalog."""
        return self.canonical(name) or name.strip()

    def suggest(self, name: str, extra: Iterable[str] = (), n: int = 3) -> list[str]:
        """Close matches among canonical names, aliases and ``extra`` names."""
        pool = set(self.models) | set(extra)
        lowered = {p.lower(): p for p in pool} | {a: self._alias[a] for a in self._alias}
        hits = difflib.get_close_matches(name.lower(), list(lowered), n=n * 2, cutoff=0.6)
        out: list[str] = []
        for hit in hits:
            canonical = lowered[hit]
            if canonical not in out:
                out.append(canonical)
        return out[:n]


def _load(text: str) -> Catalog:
    data = tomllib.loads(text)
    return Catalog(
        CatalogModel(
            name=entry["name"],
            family=entry.get("family", ""),
            context_length=entry.get("context_length"),
            aliases=tuple(entry.get("aliases", ())),
        )
        for entry in data.get("models", [])
    )


@cache
def default_catalog() -> Catalog:
    """The catalog shipped with intentmesh (``intentmesh/data/catalog.toml``)."""
    text = resources.files("intentmesh").joinpath("data/catalog.toml").read_text("utf-8")
    return _load(text)
