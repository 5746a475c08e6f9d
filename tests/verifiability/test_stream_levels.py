"""``ResultStream.aopen``: one way to open a stream, for every verifiability level.

It warms prices, plans and waits for the first chunk (or, for the buffered levels, the
verified answer), raising exactly what ``ainfer`` raises before any content is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from verif_support import MODEL, MRTD, FakeTeeProvider, backend_toml, make_gateway

from intentmesh import AllBackendsFailed, Gateway, Intent
from intentmesh.config import parse_config
from intentmesh.testing.networks import ChutesModel, FakeChutes

ATTESTED = Intent(model=MODEL, prompt="one two three", max_tokens=8, verifiability="attested")


def tee_entry(name: str, p: FakeTeeProvider, price: float) -> str:
    att = f'attestation = {{ kind = "chutes", chute_id = "{p.chute_id}", max_age_s = 60'
    att += f', golden = [{{ mrtd = "{MRTD}" }}] }}'
    return backend_toml(name, p.base_url, price=price, levels=("attested",), extra=att)


async def test_aopen_names_the_backend_before_any_chunk(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    bad = start(FakeTeeProvider(mode="bad_measurement"))
    good = start(FakeTeeProvider())
    gw = make_gateway(tmp_path, [tee_entry("bad", bad, 0.1), tee_entry("good", good, 0.5)])
    try:
        stream = await gw.astream(ATTESTED).aopen()
        assert (stream.backend, stream.network, stream.model) == ("good", "good", MODEL)
        assert stream.spent_usd() > 0  # the refused answer was billed
        text = "".join([c.text async for c in stream])
        assert stream.result is not None and text == stream.result.text
        assert stream.result.receipt is not None
        assert stream.result.receipt.body["verification"]["checks"]["measurement"] == "ok"
        assert stream.spent_usd() == pytest.approx(stream.result.cost_usd)
    finally:
        await gw.aclose()
        gw.close()


@pytest.mark.parametrize("streamed", [False, True])
def test_a_failed_check_reaches_the_caller_through_the_attempts(
    start: Callable[..., Any], tmp_path: Path, streamed: bool
) -> None:
    bad = start(FakeTeeProvider(mode="bad_measurement"))
    with make_gateway(tmp_path, [tee_entry("bad", bad, 0.1)]) as gw:
        with pytest.raises(AllBackendsFailed) as err:
            if streamed:
                list(gw.stream(ATTESTED))
            else:
                gw.infer(ATTESTED)
        assert len(gw.ledger) == 0
        if streamed:  # opening again, or iterating, raises the same error: never an empty stream
            stream = gw.stream(ATTESTED)
            with pytest.raises(AllBackendsFailed) as again:
                stream.open()
            with pytest.raises(AllBackendsFailed) as iterated:
                list(stream)
            assert again.value is iterated.value and stream.result is None
    attempt = err.value.attempts[0]
    assert attempt.error_kind == "attestation_failed"
    assert attempt.extra["check"] == "measurement"
    assert "failed check: measurement" in (attempt.error or "")
    assert "failed check: measurement" in str(err.value)


async def test_first_stream_from_a_discovery_only_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeChutes([ChutesModel("unsloth/Llama-3.1-8B-Instruct")]) as chutes:
        monkeypatch.setenv("STREAM_CHUTES_KEY", chutes.key or "")
        text = (
            f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
            f'[[backends]]\nname = "chutes"\ntype = "chutes"\nbase_url = "{chutes.base_url}"\n'
            'api_key_env = "STREAM_CHUTES_KEY"\n'
        )
        gw = Gateway(parse_config(text))
        try:
            stream = await gw.astream(model=MODEL, prompt="hi", max_tokens=8).aopen()
            assert stream.backend == "chutes" and stream.model == MODEL
            assert "".join([c.text async for c in stream])
        finally:
            await gw.aclose()
            gw.close()
