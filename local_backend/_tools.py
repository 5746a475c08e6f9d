"""Tools, ``tool_choice`` and structured output on any chat template, through JSON-schema grammars.

Small GGUF models mostly have chat templates that know nothing of tools, and llama.cpp then
drops them. So the local server does it the same way for every model: the tools are described in
a system message, and the answer is constrained (``response_format`` JSON schema, which llama.cpp
turns into a grammar) to ``{"tool_call": {"name": ..., "arguments": {...}}}`` — or, when the
model may choose (``"auto"``), to that or ``{"response": "..."}``. The JSON that comes back is
turned into OpenAI ``tool_calls``. ``"required"`` or a named tool therefore always gives a
well-formed call to a declared tool with arguments that match its schema.

Pure data mapping, no I/O.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from intentmesh.local_backend._protocol import LocalApiError

__all__ = ["ToolPlan", "apply_tool_output", "check_text_only", "plan_tools"]

_IMAGE_PARTS = {"image_url", "input_image", "image"}
_AUDIO_PARTS = {"input_audio", "audio", "file", "video_url"}


def check_text_only(messages: list[dict[str, Any]]) -> None:
    """A 400 naming the first image (or audio/file) part: the served models read text only."""
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _IMAGE_PARTS or kind in _AUDIO_PARTS:
                what = "image" if kind in _IMAGE_PARTS else kind
                raise LocalApiError(
                    400,
                    f"messages[{i}].content[{j}]: this model reads text only and cannot take "
                    f"{what} input ({kind!r}); send text parts, or serve a multimodal model",
                    param=f"messages[{i}].content[{j}]",
                )


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """What to do with the answer: ``tools`` by name (empty: no tool handling)."""

    tools: dict[str, dict[str, Any]]
    forced: bool = False


_NO_TOOLS = ToolPlan({})


def plan_tools(body: dict[str, Any]) -> ToolPlan:
    """Rewrite ``body`` in place for the engine; the plan tells how to read the answer back.

    ``tools``/``tool_choice``/``parallel_tool_calls`` are taken out; with tools in play the
    history's tool calls and tool results become text the template can render, a system message
    describes the tools and ``response_format`` constrains the answer.
    """
    tools = body.pop("tools", None) or []
    choice = body.pop("tool_choice", None)
    body.pop("parallel_tool_calls", None)
    body["messages"] = [_plain_history(m) for m in body.get("messages", [])]
    if choice is None:
        choice = "auto" if tools else "none"
    if not tools or choice == "none":
        if choice not in ("none", "auto"):
            raise LocalApiError(
                400, f"tool_choice {choice!r} needs tools; none were given", param="tools"
            )
        return _NO_TOOLS
    if body.get("response_format") not in (None, {"type": "text"}):
        raise LocalApiError(
            400, "give either tools or response_format, not both", param="response_format"
        )
    by_name = {_name(t, i): t for i, t in enumerate(tools)}
    allowed, forced = _choose(choice, by_name)
    body["messages"] = [_tools_message(by_name, forced), *body["messages"]]
    body["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": _answer_schema(by_name, allowed, forced)},
    }
    return ToolPlan(by_name, forced)


def apply_tool_output(message: dict[str, Any], plan: ToolPlan) -> str | None:
    """Turn the constrained JSON in ``message["content"]`` into ``tool_calls`` (in place).

    Returns the finish reason to report (``"tool_calls"``), or None when nothing changed.
    """
    if not plan.tools:
        return None
    try:
        data = json.loads(message.get("content") or "")
    except ValueError:
        data = None  # cut short by max_tokens: the text stays, as OpenAI leaves it
    if not isinstance(data, dict):
        return None
    call = data.get("tool_call")
    if isinstance(call, dict) and call.get("name") in plan.tools:
        arguments = call.get("arguments", {})
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(arguments)},
            }
        ]
        return "tool_calls"
    if isinstance(data.get("response"), str):
        message["content"] = data["response"]
    return None


def _name(tool: Any, index: int) -> str:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or tool.get("type", "function") != "function":
        raise LocalApiError(
            400, f"tools[{index}]: only function tools are supported", param="tools"
        )
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise LocalApiError(400, f"tools[{index}].function.name is missing", param="tools")
    return name


def _choose(choice: Any, by_name: dict[str, Any]) -> tuple[list[str], bool]:
    if choice == "auto":
        return list(by_name), False
    if choice == "required":
        return list(by_name), True
    name = (choice.get("function") or {}).get("name") if isinstance(choice, dict) else None
    if name is None:
        raise LocalApiError(
            400,
            "tool_choice must be 'none', 'auto', 'required' or "
            '{"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    if name not in by_name:
        known = ", ".join(sorted(by_name))
        raise LocalApiError(
            400, f"tool_choice names {name!r}, which is not among the tools ({known})",
            param="tool_choice",
        )  # fmt: skip
    return [name], True


def _parameters(tool: dict[str, Any]) -> dict[str, Any]:
    params = tool["function"].get("parameters") or {"type": "object", "properties": {}}
    return {k: v for k, v in params.items() if k not in ("$schema", "strict")}


def _answer_schema(by_name: dict[str, Any], allowed: list[str], forced: bool) -> dict[str, Any]:
    calls = [
        {
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": _parameters(by_name[name])},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for name in allowed
    ]
    call = calls[0] if len(calls) == 1 else {"anyOf": calls}
    as_call = {
        "type": "object",
        "properties": {"tool_call": call},
        "required": ["tool_call"],
        "additionalProperties": False,
    }
    if forced:
        return as_call
    as_text = {
        "type": "object",
        "properties": {"response": {"type": "string"}},
        "required": ["response"],
        "additionalProperties": False,
    }
    return {"anyOf": [as_call, as_text]}


def _tools_message(by_name: dict[str, Any], forced: bool) -> dict[str, Any]:
    lines = ["You can call these tools:"]
    for name, tool in by_name.items():
        fn = tool["function"]
        lines.append(
            f"- {name}: {fn.get('description', '')} "
            f"Arguments (JSON schema): {json.dumps(_parameters(tool))}"
        )
    lines.append(
        'To call a tool, answer {"tool_call": {"name": "<tool>", "arguments": {...}}}.'
        if forced
        else 'When a tool can give the answer, call it: answer {"tool_call": {"name": "<tool>", '
        '"arguments": {...}}}. Only when no tool fits, answer {"response": "<your answer>"}.'
    )
    return {"role": "system", "content": "\n".join(lines)}


def _plain_history(message: dict[str, Any]) -> dict[str, Any]:
    """Earlier tool calls and tool results as text any chat template renders."""
    role = message.get("role")
    if role == "assistant" and message.get("tool_calls"):
        calls = [
            {"tool_call": {"name": c["function"]["name"],
                           "arguments": _loads(c["function"].get("arguments"))}}
            for c in message["tool_calls"]
        ]  # fmt: skip
        text = "\n".join(json.dumps(c) for c in calls)
        return {"role": "assistant", "content": text}
    if role == "tool":
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        ref = message.get("name") or message.get("tool_call_id") or "the tool"
        return {"role": "user", "content": f"Result of {ref}: {content}"}
    return message


def _loads(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return arguments
    return arguments
