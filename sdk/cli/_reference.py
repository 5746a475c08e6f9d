"""The shipped, dated table of centralized reference prices (``data/reference_prices.toml``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Literal

__all__ = ["ReferencePrice", "ReferenceTable", "reference_table"]

Relation = Literal["same", "equivalent"]


@dataclass(frozen=True, slots=True)
class ReferencePrice:
    """One centralized offer: provider, its model id, USD per 1M input and output tokens."""

    provider: str
    model: str
    input: float
    output: float
    same_as: str | None = None
    equivalent_for: tuple[str, ...] = ()

    def monthly(self, requests: float, avg_in: float, avg_out: float) -> float:
        return requests * (avg_in * self.input + avg_out * self.output) / 1e6


@dataclass(frozen=True, slots=True)
class ReferenceTable:
    as_of: str
    currency: str
    unit: str
    sources: tuple[dict[str, str], ...]
    prices: tuple[ReferencePrice, ...]

    def for_model(self, canonical: str) -> list[tuple[ReferencePrice, Relation]]:
        """Same-weights offers first, then closed yardsticks, each by price."""
        same = [p for p in self.prices if p.same_as == canonical]
        equivalent = [p for p in self.prices if canonical in p.equivalent_for]
        key = lambda p: (p.input + p.output, p.provider)  # noqa: E731
        return [(p, "same") for p in sorted(same, key=key)] + [
            (p, "equivalent") for p in sorted(equivalent, key=key)
        ]

    def age_days(self, today: date | None = None) -> int:
        """Days since ``as_of``."""
        return ((today or date.today()) - date.fromisoformat(self.as_of)).days

    def source_url(self, provider: str) -> str:
        return next((s["url"] for s in self.sources if s.get("provider") == provider), "")


def parse_reference(text: str) -> ReferenceTable:
    data = tomllib.loads(text)
    prices = tuple(
        ReferencePrice(
            provider=p["provider"],
            model=p["model"],
            input=float(p["input"]),
            output=float(p["output"]),
            same_as=p.get("same_as"),
            equivalent_for=tuple(p.get("equivalent_for", ())),
        )
        for p in data.get("prices", [])
    )
    return ReferenceTable(
        as_of=str(data["as_of"]),
        currency=data.get("currency", "USD"),
        unit=data.get("unit", "per 1M tokens"),
        sources=tuple(dict(s) for s in data.get("sources", [])),
        prices=prices,
    )


@cache
def reference_table() -> ReferenceTable:
    """The table shipped with intentmesh."""
    text = resources.files("intentmesh").joinpath("data/reference_prices.toml").read_text("utf-8")
    return parse_reference(text)
