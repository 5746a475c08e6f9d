"""An upstream that echoes our secrets back never gets them into errors, attempts, logs or health.

Upstream keys and signer seeds are redacted where upstream errors are translated (gateway keys:
tests/server/test_server_trust.py).
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from intentmesh import AllBackendsFailed, Gateway, MidStreamError
from intentmesh.adapters._http import REDACTED, error_for_status, error_message, redact
from intentmesh.config import parse_config
from intentmesh.testing import FakeOpenAIProvider, Fault

UPSTREAM_KEY = "sk-upstream-0123456789abcdef"
SIGNER_SEED = "ab" * 32
SECRETS = (UPSTREAM_KEY, SIGNER_SEED)
MODEL = "llama-3.1-8b-instruct"


def echo(*extra: str) -> dict[str, Any]:
    """A 401 body quoting the presented key, the way several providers do."""
    said = " ".join((f"Incorrect API key provided: Bearer {UPSTREAM_KEY}.", *extra))
    return {"error": {"message": said, "type": "invalid_request_error", "code": "invalid_api_key"}}


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIProvider]:
    monkeypatch.setenv("ECHO_UPSTREAM_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("ECHO_SIGNER_SEED", SIGNER_SEED)
    with FakeOpenAIProvider(["fake-llama"], api_key=UPSTREAM_KEY) as p:
        yield p


def gateway(tmp_path: Path, provider: FakeOpenAIProvider) -> Gateway:
    text = f"""
[receipts]
ledger = "{tmp_path / "ledger.db"}"
key_env = "ECHO_SIGNER_SEED"
[routing]
backoff_s = 0.0
[[backends]]
name = "echoer"
base_url = "{provider.base_url}"
api_key_env = "ECHO_UPSTREAM_KEY"
retries = 1
[[backends.models]]
name = "{MODEL}"
id = "fake-llama"
input_price = 0.1
output_price = 0.2
"""
    return Gateway(parse_config(text))


def assert_clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, text


def test_echoed_secrets_never_reach_errors_attempts_logs_or_health(
    provider: FakeOpenAIProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider.always(Fault.status(401, echo(f"seed {SIGNER_SEED}")))
    caplog.set_level(logging.DEBUG)
    with gateway(tmp_path, provider) as gw:
        with pytest.raises(AllBackendsFailed) as err:
            gw.infer(model=MODEL, prompt="hi", max_tokens=8)
        exc = err.value
        cause = exc.attempts[0]
        assert REDACTED in str(exc) and "Incorrect API key provided" in str(exc)
        snapshot = json.dumps(gw.health.snapshot())
        assert REDACTED in snapshot
        assert_clean(
            str(exc),
            repr(exc),
            "".join(traceback.format_exception(exc)),
            json.dumps([a.to_dict() for a in exc.attempts]),
            str(cause.error),
            snapshot,
            caplog.text,
        )
    assert provider.calls["/v1/chat/completions"] == 1  # 401 is not retried


def test_secrets_echoed_inside_a_stream_are_redacted(
    provider: FakeOpenAIProvider, tmp_path: Path
) -> None:
    provider.always(Fault.in_stream_error(2, echo()))
    with gateway(tmp_path, provider) as gw:
        with pytest.raises(MidStreamError) as err:
            list(gw.stream(model=MODEL, prompt="hi there friend", max_tokens=8))
        assert_clean(str(err.value), repr(err.value.cause), str(err.value.attempts[0].error))
        assert_clean(json.dumps(gw.health.snapshot()))


def test_translation_redacts_body_message_and_headers(
    provider: FakeOpenAIProvider, tmp_path: Path
) -> None:
    gateway(tmp_path, provider).close()  # the gateway registers the secrets its config names
    body = json.dumps(echo())
    error = error_for_status(401, body, {"www-authenticate": f"Bearer {UPSTREAM_KEY}"}, "b")
    assert_clean(str(error), repr(error), error.body, json.dumps(error.headers))
    assert error.body == body.replace(UPSTREAM_KEY, REDACTED)
    assert error_message({"detail": f"bad key {UPSTREAM_KEY}"}) == f"bad key {REDACTED}"
    escaped = json.dumps({"detail": "k/" + UPSTREAM_KEY})  # JSON-escaped forms too
    assert_clean(redact(escaped))
    assert redact("nothing secret here") == "nothing secret here"
