"""Gateway API keys: 401s, per-key models and networks, and USD budgets that are never exceeded."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from server_support import MODEL, ServeFactory

from intentmesh.server import KeyConfig, SpendBook, ThreadedServer
from intentmesh.testing import DemoNetwork

MESSAGES: list[Any] = [{"role": "user", "content": "hello"}]


@pytest.fixture
def keyed(serve: ServeFactory, monkeypatch: pytest.MonkeyPatch) -> ThreadedServer:
    monkeypatch.setenv("KEY_OPEN", "sk-open")
    monkeypatch.setenv("KEY_AKASH", "sk-akash")
    keys = [
        KeyConfig(name="open", key_env="KEY_OPEN"),
        KeyConfig(name="akash-only", key_env="KEY_AKASH", networks=["akash"], models=[MODEL]),
        KeyConfig(name="hashed", key_sha256=hashlib.sha256(b"sk-hashed").hexdigest(), models=["x"]),
    ]
    return serve(keys=keys)


@pytest.fixture
def make_client(keyed: ThreadedServer) -> Iterator[Any]:
    made: list[openai.OpenAI] = []

    def build(key: str) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=keyed.base_url, api_key=key, max_retries=0))
        return made[-1]

    yield build
    for c in made:
        c.close()


def test_missing_key_is_401(keyed: ThreadedServer) -> None:
    response = httpx.post(keyed.base_url + "/chat/completions", json={"model": MODEL})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_wrong_key_is_authentication_error(make_client: Any) -> None:
    with pytest.raises(openai.AuthenticationError):
        make_client("sk-wrong").chat.completions.create(model=MODEL, messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        make_client("sk-wrong").models.list()


def test_env_and_hashed_keys_authenticate(make_client: Any) -> None:
    res = make_client("sk-open").chat.completions.create(model=MODEL, messages=MESSAGES)
    assert res.choices[0].message.content == "echo: hello"
    assert [m.id for m in make_client("sk-hashed").models.list().data] == []


def test_key_networks_apply_and_are_enforced(make_client: Any) -> None:
    api = make_client("sk-akash")
    res = api.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert (res.model_extra or {})["intentmesh"]["backend"] == "akash"
    with pytest.raises(openai.PermissionDeniedError) as info:
        api.chat.completions.create(
            model=MODEL, messages=MESSAGES, extra_body={"intent": {"networks": ["ionet"]}}
        )
    assert info.value.param == "intent.networks"


def test_key_models_are_enforced(make_client: Any) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        make_client("sk-hashed").chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.code == "model_not_allowed"


def test_health_and_metrics_need_no_key(keyed: ThreadedServer) -> None:
    assert httpx.get(keyed.url + "/health").json()["status"] == "ok"
    assert "intentmesh_requests_total" in httpx.get(keyed.url + "/metrics").text


# -- budgets ---------------------------------------------------------------------------------


def _fill(demo: DemoNetwork) -> None:
    """Make every answer use all of max_tokens, so real costs equal worst cases."""
    for provider in demo.providers.values():
        provider.fill = True


def test_budget_stops_requests_once_spent(
    serve: ServeFactory, demo: DemoNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(demo)
    monkeypatch.setenv("KEY_B", "sk-b")
    book = SpendBook()
    server = serve(keys=[KeyConfig(name="b", key_env="KEY_B", budget_usd=2e-5)], book=book)
    spent: list[float] = []
    with openai.OpenAI(base_url=server.base_url, api_key="sk-b", max_retries=0) as api:
        for _ in range(10):
            try:
                res = api.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=100)
            except openai.APIStatusError as exc:
                assert exc.status_code == 402
                assert exc.code == "budget_exhausted"
                assert "budget left" in exc.message
                break
            spent.append((res.model_extra or {})["intentmesh"]["cost_usd"])
        else:
            pytest.fail("the budget never ran out")
    assert 2 <= len(spent) <= 4
    budget, booked, reserved = book.balance("b")
    assert sum(spent) <= budget
    assert booked == pytest.approx(sum(spent))
    assert reserved == 0


async def test_budget_is_never_exceeded_under_concurrency(
    serve: ServeFactory, demo: DemoNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(demo)
    monkeypatch.setenv("KEY_C", "sk-c")
    book = SpendBook()
    budget = 5e-5
    server = serve(keys=[KeyConfig(name="c", key_env="KEY_C", budget_usd=budget)], book=book)

    async def one(api: openai.AsyncOpenAI, i: int) -> float | int:
        try:
            stream = await api.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"request {i}"}],
                max_tokens=100,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
        except openai.APIStatusError as exc:
            return exc.status_code
        return float((chunks[-1].model_extra or {})["intentmesh"]["cost_usd"])

    async with openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-c", max_retries=0) as api:
        outcomes = await asyncio.gather(*(one(api, i) for i in range(40)))
    costs = [o for o in outcomes if isinstance(o, float)]
    assert set(outcomes) - set(costs) == {402}
    assert costs, "some requests fit in the budget"
    assert sum(costs) <= budget
    _, booked, reserved = book.balance("c")
    assert booked == pytest.approx(sum(costs))
    assert reserved == 0


def test_budgets_persist_in_a_file(tmp_path: Any) -> None:
    path = str(tmp_path / "budgets.db")
    book = SpendBook(path)
    book.open_account("k", 1.0)
    assert book.try_reserve("k", 0.6)
    assert not SpendBook(path).try_reserve("k", 0.6)  # another worker sees the reservation
    book.settle("k", 0.6, 0.25)
    again = SpendBook(path)
    again.open_account("k", 1.0)
    assert again.balance("k") == (1.0, 0.25, 0.0)
