"""Fixtures for fleet mode: a Redis key prefix per test (deleted after), a PostgreSQL schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fleet_support import POSTGRES_URL, REDIS_URL, unavailable

from intentmesh.testing import FakeOpenAIProvider


@pytest.fixture
def redis_client() -> Iterator[object]:
    try:
        import redis
    except ImportError:
        unavailable("the redis client is not installed (pip install 'intentmesh[redis]')")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        unavailable(f"no Redis at {REDIS_URL}: {exc}")
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: object) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test."""
    name = f"imtest-{uuid.uuid4().hex[:12]}"
    yield name
    keys = list(redis_client.scan_iter(match=f"{name}:*", count=500))  # type: ignore[attr-defined]
    if keys:
        redis_client.delete(*keys)  # type: ignore[attr-defined]


@pytest.fixture
def provider() -> Iterator[FakeOpenAIProvider]:
    with FakeOpenAIProvider(["fake-llama"], record=False) as made:
        yield made


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema (dropped after the test)."""
    try:
        import psycopg
    except ImportError:
        unavailable("psycopg is not installed (pip install 'intentmesh[postgres]')")
    schema = f"imtest_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        unavailable(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    admin.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{joiner}options={quote(f'-csearch_path={schema}')}"
    admin.execute(f"DROP SCHEMA {schema} CASCADE")
    admin.close()
