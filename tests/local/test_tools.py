"""The tool/structured-output mapping of the local server, as pure data (no model)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from intentmesh.local_backend._protocol import LocalApiError
from intentmesh.local_backend._tools import (
    ToolPlan,
    apply_tool_output,
    check_text_only,
    plan_tools,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}  # fmt: skip
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}


def body(**fields: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "hi"}], **fields}


def schema_of(wire: dict[str, Any]) -> dict[str, Any]:
    rf = wire["response_format"]
    assert rf["type"] == "json_schema"
    result: dict[str, Any] = rf["json_schema"]["schema"]
    return result


def test_without_tools_nothing_is_constrained() -> None:
    wire = body(parallel_tool_calls=False)
    plan = plan_tools(wire)
    assert plan == ToolPlan({}) and "response_format" not in wire
    assert "parallel_tool_calls" not in wire
    message = {"role": "assistant", "content": '{"tool_call": {"name": "x"}}'}
    assert apply_tool_output(message, plan) is None and message["content"].startswith("{")


def test_required_forces_a_call_to_one_of_the_tools() -> None:
    wire = body(tools=[WEATHER, ADD], tool_choice="required")
    plan = plan_tools(wire)
    assert plan.forced and set(plan.tools) == {"get_weather", "add"}
    assert "tools" not in wire and "tool_choice" not in wire
    schema = schema_of(wire)
    assert schema["required"] == ["tool_call"]
    names = [c["properties"]["name"]["const"] for c in schema["properties"]["tool_call"]["anyOf"]]
    assert names == ["get_weather", "add"]
    system = wire["messages"][0]
    assert system["role"] == "system" and "get_weather" in system["content"]


def test_a_named_tool_is_the_only_one_allowed() -> None:
    wire = body(tools=[WEATHER, ADD], tool_choice={"type": "function", "function": {"name": "add"}})
    plan_tools(wire)
    call = schema_of(wire)["properties"]["tool_call"]
    assert call["properties"]["name"] == {"const": "add"}
    assert call["properties"]["arguments"]["properties"]["a"] == {"type": "integer"}


def test_auto_allows_a_call_or_a_text_answer() -> None:
    wire = body(tools=[WEATHER])
    plan = plan_tools(wire)
    assert not plan.forced
    kinds = [set(option["required"]) for option in schema_of(wire)["anyOf"]]
    assert kinds == [{"tool_call"}, {"response"}]
    message = {"role": "assistant", "content": json.dumps({"response": "Hello!"})}
    assert apply_tool_output(message, plan) is None
    assert message["content"] == "Hello!"


def test_the_constrained_json_becomes_openai_tool_calls() -> None:
    plan = plan_tools(body(tools=[WEATHER], tool_choice="required"))
    text = json.dumps({"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}})
    message: dict[str, Any] = {"role": "assistant", "content": text}
    assert apply_tool_output(message, plan) == "tool_calls"
    assert message["content"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


def test_an_answer_cut_short_stays_text() -> None:
    plan = plan_tools(body(tools=[WEATHER], tool_choice="required"))
    message = {"role": "assistant", "content": '{"tool_call": {"name": "get_wea'}
    assert apply_tool_output(message, plan) is None
    assert message["content"] == '{"tool_call": {"name": "get_wea'


def test_none_answers_in_text_and_the_history_becomes_text() -> None:
    wire = body(tools=[WEATHER], tool_choice="none", messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "sunny"}]},
    ])  # fmt: skip
    assert plan_tools(wire) == ToolPlan({})
    assert "response_format" not in wire
    assistant, result = wire["messages"][1], wire["messages"][2]
    assert json.loads(assistant["content"]) == {
        "tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}
    }
    assert result == {"role": "user", "content": "Result of call_1: sunny"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
         "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools"),
        ({"tool_choice": {"type": "function", "function": {"name": "x"}}}, "tools"),
        ({"tools": [WEATHER], "response_format": {"type": "json_object"}}, "response_format"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(LocalApiError) as caught:
        plan_tools(body(**fields))
    assert (caught.value.status, caught.value.param) == (400, param)


def test_image_and_audio_parts_are_refused_by_position() -> None:
    check_text_only([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    for kind in ("image_url", "input_audio"):
        messages = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": kind}]},
        ]
        with pytest.raises(LocalApiError) as caught:
            check_text_only(messages)
        assert caught.value.param == "messages[1].content[1]"
        assert "text only" in caught.value.message
