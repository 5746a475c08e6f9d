"""Per-key USD budgets: the embedded (SQLite) :class:`SpendBook`, kept importable from here.

The store itself lives in :mod:`intentmesh.fleet` so that the SDK's named limits use it
without importing the server; the fleet (Redis) store is :mod:`intentmesh.fleet._redis`.
"""

from __future__ import annotations

from intentmesh.fleet import SpendBook

__all__ = ["SpendBook"]
