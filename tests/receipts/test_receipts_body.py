"""The receipt body's digests: what they cover, however they were worked out."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from intentmesh import Gateway, Intent
from intentmesh.config import parse_config
from intentmesh.errors import ReceiptError
from intentmesh.receipts import RequestDigests, digest
from intentmesh.testing import FakeOpenAIProvider

INTENTS = [
    {"model": "m", "prompt": "hello"},
    {
        "model": ["m", "n"],
        "messages": [
            {"role": "system", "content": "Réponds en français, s'il te plaît \U0001f600"},
            {"role": "user", "content": [{"type": "text", "text": 'a "quoted" \\ line\n'}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "x": 1.5}]},
        ],
        "max_tokens": 1_000_000,
        "temperature": 0.7,
        "seed": 2**40,
        "stop": ["\n\n", "é"],
    },
    {"model": "m", "prompt": "x", "temperature": 2.0, "seed": -1, "stop": []},
]


def request_dict(intent: Intent, provider_model: str) -> dict[str, Any]:
    """The request a receipt's ``request_digest`` covers (docs/receipts.md)."""
    return {
        "model": provider_model,
        "messages": intent.chat_messages(),
        "max_tokens": intent.max_tokens,
        "temperature": intent.temperature,
        "seed": intent.seed,
        "stop": intent.stop,
    }


@pytest.mark.parametrize("fields", INTENTS)
@pytest.mark.parametrize("provider_model", ["fake-llama", "org/modèle-7b", ""])
def test_request_digests_are_the_digests_of_the_documented_objects(
    fields: dict[str, Any], provider_model: str
) -> None:
    intent = Intent(**fields)
    digests = RequestDigests(intent)
    digests.compute()
    assert digests.request_digest(provider_model) == digest(request_dict(intent, provider_model))
    assert digests.intent_digest() == digest(intent.model_dump(mode="json", exclude_none=True))
    fresh = RequestDigests(intent)  # the getters work without compute() first
    assert fresh.request_digest(provider_model) == digests.request_digest(provider_model)


def test_a_lone_surrogate_is_a_receipt_error_from_the_getters_not_from_compute() -> None:
    digests = RequestDigests(Intent(model="m", prompt="bad \ud800 text"))
    digests.compute()  # run by the event loop ahead of time: must not raise there
    with pytest.raises(ReceiptError, match="lone surrogate"):
        digests.request_digest("fake-llama")
    with pytest.raises(ReceiptError, match="lone surrogate"):
        digests.intent_digest()


def test_a_gateway_receipt_covers_the_request_actually_sent(tmp_path: Path) -> None:
    with FakeOpenAIProvider(["fake-llama"]) as fake:
        config = parse_config(
            f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "k.pem"}"\n'
            f'[[backends]]\nname = "fake"\nbase_url = "{fake.base_url}"\n'
            '[[backends.models]]\nname = "m"\nid = "fake-llama"\n'
        )
        gw = Gateway(config)
        intent = Intent(**{**INTENTS[1], "model": "m"})

        async def main() -> Any:
            try:
                return await gw.ainfer(intent)
            finally:
                await gw.aclose()

        result = asyncio.run(main())
        gw.close()
    assert result.receipt is not None
    body = result.receipt.body
    assert body["request_digest"] == digest(request_dict(intent, "fake-llama"))
    assert body["intent_digest"] == digest(intent.model_dump(mode="json", exclude_none=True))


def test_timestamps_are_utc_milliseconds_even_when_seconds_alternate() -> None:
    from datetime import UTC, datetime

    from intentmesh.receipts._receipt import _timestamp

    moments = [0, 999_999_999, 1_000_000_000, 1_764_547_199_999_999_999, 1_764_547_200_123_000_000]
    for ns in moments + moments[::-1]:  # the per-second cache is left behind and come back to
        seconds, ms = divmod(ns // 1_000_000, 1000)
        when = datetime.fromtimestamp(seconds, tz=UTC)
        assert _timestamp(ns) == when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms:03d}Z"


@pytest.mark.parametrize(
    "names",
    [
        ["a", "ida", "i", "prev", "prev_hash_x", "sequel", "timestamps", "z"],
        ["é", "\uff61", "\U0001f600", "e\u0301", "timestamp\u00e9", "_", "Z"],  # UTF-16 order
    ],
)
def test_stored_bodies_are_canonical_json_whatever_the_field_names(
    tmp_path: Path, names: list[str]
) -> None:
    """The row builder slots the chain fields (id, prev_hash, seq, timestamp) between the
    caller's; the text it signs must be exactly canonical_json of the body it stands for."""
    from intentmesh.receipts import Ledger, SigningKey, canonical_json

    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        for i in range(3):
            receipt = ledger.append({n: [i, n] for n in names}, key)
            row = ledger._store.get(receipt.id)
            assert row is not None
            assert row.body.encode() == canonical_json(receipt.body)
        assert ledger.verify()
