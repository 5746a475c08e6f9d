"""Streamed and unstreamed requests get the same verification, discovery, budgets and receipts.

The server opens streams through the SDK's own :meth:`ResultStream.aopen`, so a level that fails
verification is refused before any content, whether or not the client streams.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fakes import GOLDEN_MRTD, TeeProvider
from server_support import MODEL

from intentmesh import Gateway
from intentmesh.config import parse_config
from intentmesh.server import KeyConfig, ThreadedServer, create_app
from intentmesh.server._budget import SpendBook
from intentmesh.testing import FakeOpenAIProvider, Fault
from intentmesh.testing.networks import ChutesModel, FakeChutes

LEVELS = ["receipt", "attested", "consensus"]
TEAM_KEY = "sk-team-0123456789abcdef"


def tee_entry(name: str, provider: FakeOpenAIProvider, price: float) -> str:
    return f"""
[[backends]]
name = "{name}"
base_url = "{provider.base_url}"
retries = 0
timeout_s = 10
operator = "op-{name}"
verifiability = ["attested", "consensus"]
attestation = {{ kind = "openai", golden = [{{ mrtd = "{GOLDEN_MRTD}" }}] }}
[[backends.models]]
name = "{MODEL}"
id = "fake-llama"
input_price = {price}
output_price = {price * 2}
"""


def config_text(tmp_path: Path, entries: str) -> str:
    receipts = f'[receipts]\nledger = "{tmp_path / "ledger.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    return receipts + "[routing]\nbackoff_s = 0.0\nbackoff_max_s = 0.0\n" + entries


class Served:
    """A gateway server over two TEE providers, with one budgeted key."""

    def __init__(self, gateway: Gateway, budget_usd: float | None = 1.0) -> None:
        self.gateway = gateway
        team = KeyConfig(name="team", key=TEAM_KEY, budget_usd=budget_usd)
        self.app = create_app(gateway, keys=[team])
        self.server = ThreadedServer(self.app).start()
        self.client = httpx.Client(
            base_url=self.server.base_url, headers={"authorization": f"Bearer {TEAM_KEY}"},
            timeout=30,
        )

    def post(self, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
        """Status, headers and the JSON body, or the list of SSE events of a 200 stream."""
        response = self.client.post("/chat/completions", json=body)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            return response.status_code, dict(response.headers), events
        return response.status_code, dict(response.headers), response.json()

    def spent(self) -> float:
        """The key's settled spend (a stream settles just after its last byte is sent)."""
        book = self.app.state.handlers.service.accounts.book
        deadline = time.monotonic() + 60
        while book.balance("team")[2] > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        _budget, spent, reserved = book.balance("team")
        assert reserved == 0
        return float(spent)

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.gateway.close()


@pytest.fixture
def serve_tees(tmp_path: Path) -> Iterator[Callable[[bool], Served]]:
    """``serve_tees(honest)``: honest providers agree and attest to the golden measurement;
    dishonest ones attest to another measurement and give different answers."""
    started: list[Any] = []

    def make(honest: bool) -> Served:
        providers = [
            TeeProvider(
                GOLDEN_MRTD if honest else "99" * 48,
                reply=None if honest else (lambda _p, w=word: w),
            )
            for word in ("four", "five")
        ]
        for p in providers:
            started.append(p.start())
        entries = tee_entry("a", providers[0], 0.1) + tee_entry("b", providers[1], 0.2)
        served = Served(Gateway(parse_config(config_text(tmp_path, entries))))
        started.append(served)
        return served

    yield make
    for thing in reversed(started):
        thing.close() if isinstance(thing, Served) else thing.stop()


def body(level: str, stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "2+2?"}],
        "max_tokens": 16,
        "stream": stream,
        "stream_options": {"include_usage": True},
        "intent": {"verifiability": level},
        **extra,
    }


def answer(stream: bool, payload: Any) -> tuple[str, dict[str, Any]]:
    """The text and the ``intentmesh`` object of a 200 answer, streamed or not."""
    if not stream:
        return payload["choices"][0]["message"]["content"], payload["intentmesh"]
    assert payload[-1] == "[DONE]"
    chunks = [json.loads(e) for e in payload[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return text, chunks[-1]["intentmesh"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("level", LEVELS)
def test_every_level_answers_alike_streamed_or_not(
    serve_tees: Callable[[bool], Served], level: str, stream: bool
) -> None:
    served = serve_tees(True)
    status, headers, payload = served.post(body(level, stream))
    assert status == 200, payload
    text, info = answer(stream, payload)
    assert text == "echo: 2+2?"
    assert headers["x-intentmesh-backend"] == info["backend"] == "a"
    receipt = served.gateway.ledger.get(info["receipt_id"])
    assert receipt is not None and receipt.body["verifiability"] == level
    block = receipt.body.get("verification")
    if level == "receipt":
        assert block is None
    else:
        assert block is not None and block["level"] == level
    if level == "consensus":
        assert {m["backend"] for m in block["members"]} == {"a", "b"}
    assert info["cost_usd"] > 0
    assert served.spent() == pytest.approx(info["cost_usd"])  # the key's budget is charged alike


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("level", "named"), [("attested", "failed check: measurement"), ("consensus", "consensus")]
)
def test_failed_verification_is_refused_before_any_content(
    serve_tees: Callable[[bool], Served], level: str, named: str, stream: bool
) -> None:
    served = serve_tees(False)
    status, headers, payload = served.post(body(level, stream))
    assert status == 502, payload
    assert not headers.get("content-type", "").startswith("text/event-stream")
    error = payload["error"]
    assert error["type"] == "upstream_error" and error["code"] == "verification_failed"
    assert named in error["message"]
    assert set(payload) == {"error"}  # no choices, no content
    if level == "attested":
        assert "four" not in json.dumps(payload)
    assert len(served.gateway.ledger) == 0  # no receipt claims a level that was not shown
    assert served.spent() > 0  # the refused answers were billed upstream, streamed or not


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_verified_preset_against_a_bad_measurement(
    serve_tees: Callable[[bool], Served], stream: bool
) -> None:
    served = serve_tees(False)
    status, _headers, payload = served.post(
        {**body("attested", stream), "model": f"{MODEL}:verified", "intent": {}}
    )
    assert status == 502, payload
    assert payload["error"]["code"] == "verification_failed"
    assert "measurement" in payload["error"]["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_first_request_to_a_discovery_only_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """A backend with no models in its config (what zero-config makes) is served from its
    live listing on the very first request, streamed or not."""
    with FakeChutes([ChutesModel("unsloth/Llama-3.1-8B-Instruct")]) as chutes:
        monkeypatch.setenv("TEST_CHUTES_KEY", chutes.key or "")
        entry = (
            f'[[backends]]\nname = "chutes"\ntype = "chutes"\nbase_url = "{chutes.base_url}"\n'
            'api_key_env = "TEST_CHUTES_KEY"\nretries = 0\n'
        )
        # No key budget: reserving one plans, and planning would warm the prices itself.
        served = Served(Gateway(parse_config(config_text(tmp_path, entry))), budget_usd=None)
        try:
            status, headers, payload = served.post(body("receipt", stream))
        finally:
            served.close()
    assert status == 200, payload
    text, info = answer(stream, payload)
    assert text and info["backend"] == "chutes" and headers["x-intentmesh-backend"] == "chutes"
    assert info["model"] == MODEL and info["cost_usd"] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_answers_carry_the_model_that_answered(tmp_path: Path, stream: bool) -> None:
    with FakeOpenAIProvider(["fake-llama"]) as first, FakeOpenAIProvider(["fake-qwen"]) as second:
        first.always(Fault.status(503))
        entries = "".join(
            f'[[backends]]\nname = "{name}"\nbase_url = "{p.base_url}"\nretries = 0\n'
            f'[[backends.models]]\nname = "{model}"\nid = "{pid}"\n'
            "input_price = 0.1\noutput_price = 0.2\n"
            for name, p, model, pid in (
                ("first", first, MODEL, "fake-llama"),
                ("second", second, "qwen3-32b", "fake-qwen"),
            )
        )
        served = Served(Gateway(parse_config(config_text(tmp_path, entries))))
        try:
            request = body("receipt", stream)
            request["intent"]["model"] = [MODEL, "qwen3-32b"]
            status, _headers, payload = served.post(request)
        finally:
            served.close()
    assert status == 200, payload
    if stream:
        chunks = [json.loads(e) for e in payload[:-1]]
        assert {c["model"] for c in chunks} == {"qwen3-32b"}
    else:
        assert payload["model"] == "qwen3-32b"
    assert answer(stream, payload)[1]["backend"] == "second"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_secrets_echoed_by_an_upstream_stay_out_of_answers_and_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    upstream_key = "sk-upstream-aaaabbbbccccdddd"
    monkeypatch.setenv("TRUST_UPSTREAM_KEY", upstream_key)
    with FakeOpenAIProvider(["fake-llama"], api_key=upstream_key) as provider:
        said = f"Incorrect API key provided: {upstream_key}; your gateway sent {TEAM_KEY}"
        provider.always(Fault.status(401, {"error": {"message": said, "type": "auth"}}))
        entry = (
            f'[[backends]]\nname = "echoer"\nbase_url = "{provider.base_url}"\n'
            'api_key_env = "TRUST_UPSTREAM_KEY"\nretries = 0\n'
            f'[[backends.models]]\nname = "{MODEL}"\nid = "fake-llama"\n'
        )
        served = Served(Gateway(parse_config(config_text(tmp_path, entry))))
        try:
            status, _headers, payload = served.post(body("receipt", stream))
            health = served.client.get(served.server.url + "/health").text
        finally:
            served.close()
    answer_text = json.dumps(payload)
    assert status == 502 and "Incorrect API key provided: [REDACTED]" in answer_text, payload
    assert "[REDACTED]" in health
    for text in (answer_text, health):
        assert upstream_key not in text and TEAM_KEY not in text, text


def test_budget_db_opens_while_another_worker_holds_its_lock(tmp_path: Path) -> None:
    """Workers started together race to switch the shared budget file to WAL; SQLite answers
    "database is locked" at once there, so opening retries within the busy timeout."""
    path = tmp_path / "budgets.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO other VALUES (1)")
    opened: list[SpendBook] = []
    errors: list[BaseException] = []

    def open_book() -> None:
        try:
            opened.append(SpendBook(str(path)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    worker = threading.Thread(target=open_book)
    worker.start()
    worker.join(1.0)  # it used to fail here at once
    holder.execute("COMMIT")
    holder.close()
    worker.join(120)
    assert errors == [] and len(opened) == 1
    opened[0].open_account("team", 1.0)
    assert opened[0].balance("team") == (1.0, 0.0, 0.0)
    opened[0].close()
