from __future__ import annotations

import pytest

from intentmesh import Intent, IntentValidationError

BASE = {"model": "llama-3.1-8b-instruct", "prompt": "Hi"}


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"max_price_usd": -1}, "max_price_usd", "greater than 0"),
        ({"max_price_usd": 0}, "max_price_usd", "positive USD amount"),
        ({"max_latency_ms": -5}, "max_latency_ms", "positive number of milliseconds"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"temperature": 3}, "temperature", "0 to 2"),
        ({"verifiability": "sure"}, "verifiability", "none, receipt, attested"),
        ({"optimize": "quality"}, "optimize", "cost, latency, balanced"),
        ({"hedge": -10}, "hedge", "negative"),
        ({"model": ""}, "model", "must not be empty"),
        ({"model": []}, "model", "must not be empty"),
        ({"networks": [""]}, "networks", "must not be empty"),
        ({"colour": "blue"}, "colour", "unknown field"),
    ],
)
def test_bad_field_names_field_and_fix(changes: dict[str, object], field: str, needle: str) -> None:
    with pytest.raises(IntentValidationError) as info:
        Intent(**{**BASE, **changes})
    assert info.value.field == field
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_messages_rejected() -> None:
    with pytest.raises(IntentValidationError, match="messages: must not be empty"):
        Intent(model="m", messages=[])


def test_both_prompt_and_messages_rejected() -> None:
    with pytest.raises(IntentValidationError, match="exactly one of messages= and prompt="):
        Intent(model="m", prompt="a", messages=[{"role": "user", "content": "b"}])


def test_neither_prompt_nor_messages_rejected() -> None:
    with pytest.raises(IntentValidationError, match="exactly one"):
        Intent(model="m")


def test_bad_message_role_names_the_message() -> None:
    with pytest.raises(IntentValidationError) as info:
        Intent(model="m", messages=[{"role": "robot", "content": "x"}])
    assert info.value.field.startswith("messages.0")


def test_blank_prompt_rejected() -> None:
    with pytest.raises(IntentValidationError, match="prompt: must not be empty"):
        Intent(model="m", prompt="   ")


def test_defaults_and_helpers() -> None:
    intent = Intent(**BASE)
    assert intent.verifiability == "receipt"
    assert intent.optimize == "cost"
    assert intent.max_tokens == 256
    assert intent.models == ("llama-3.1-8b-instruct",)
    assert intent.chat_messages() == [{"role": "user", "content": "Hi"}]
    assert not intent.deterministic
    assert Intent(**BASE, seed=1).deterministic


def test_model_list_keeps_preference_order() -> None:
    intent = Intent(model=["a", "b"], prompt="x")
    assert intent.models == ("a", "b")


def test_intent_is_immutable() -> None:
    intent = Intent(**BASE)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        intent.max_tokens = 5  # type: ignore[misc]
