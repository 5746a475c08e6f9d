"""ChatIntentmesh against the loopback fakes: invoke, stream, intents, metadata, tools."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from pydantic import BaseModel

from intentmesh import Gateway
from intentmesh.errors import NoRouteError
from intentmesh.integrations.langchain import ChatIntentmesh
from intentmesh.testing import DemoNetwork

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "server"))
from server_fakes import TOOL_CALL, ToolCallingBackend  # noqa: E402

MODEL = "llama-3.1-8b-instruct"


def llm(gateway: Gateway, **params: Any) -> ChatIntentmesh:
    return ChatIntentmesh(model=MODEL, gateway=gateway, **params)


def test_import_intentmesh_stays_free_of_langchain() -> None:
    import subprocess

    code = "import sys, intentmesh; print('langchain_core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_invoke_returns_metadata_and_usage(gateway: Gateway) -> None:
    msg = llm(gateway).invoke([SystemMessage("be brief"), HumanMessage("hello chain")])
    assert isinstance(msg, AIMessage)
    assert msg.content == "echo: hello chain"
    meta = msg.response_metadata
    assert (meta["backend"], meta["network"]) == ("chutes", "bittensor")
    assert meta["cost_usd"] > 0 and meta["attempts"] == 1
    assert gateway.ledger.get(meta["receipt_id"]) is not None
    assert msg.usage_metadata is not None
    assert msg.usage_metadata["output_tokens"] > 0
    assert msg.usage_metadata["total_tokens"] == (
        msg.usage_metadata["input_tokens"] + msg.usage_metadata["output_tokens"]
    )


async def test_ainvoke(agateway: Gateway) -> None:
    msg = await llm(agateway, optimize="latency").ainvoke("fast please")
    assert msg.content == "echo: fast please"
    assert msg.response_metadata["backend"] == "ionet"


@pytest.mark.parametrize(
    ("params", "backend"),
    [
        ({"optimize": "latency"}, "ionet"),
        ({"networks": ["akash"]}, "akash"),
        ({"exclude": ["bittensor", "ionet"]}, "akash"),
    ],
)
def test_intent_fields_are_model_parameters(
    gateway: Gateway, params: dict[str, Any], backend: str
) -> None:
    assert llm(gateway, **params).invoke("hi").response_metadata["backend"] == backend


def test_intent_fields_per_call_and_via_bind(gateway: Gateway) -> None:
    model = llm(gateway)
    assert model.invoke("hi", optimize="latency").response_metadata["backend"] == "ionet"
    assert model.bind(networks=["akash"]).invoke("hi").response_metadata["backend"] == "akash"


def test_price_cap_is_enforced(gateway: Gateway) -> None:
    with pytest.raises(NoRouteError, match="exceeds cap"):
        llm(gateway, max_price_usd=1e-9).invoke("hi")


def test_stream_yields_tokens_then_usage_and_metadata(gateway: Gateway) -> None:
    chunks = list(llm(gateway).stream("stream this please"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "echo: stream this please"
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0
    assert total.response_metadata["receipt_id"].startswith("rcpt_")
    assert len(chunks) > 2


async def test_astream(agateway: Gateway) -> None:
    parts = [c.content async for c in llm(agateway).astream("async stream")]
    assert "".join(str(p) for p in parts) == "echo: async stream"


def test_streaming_flag_uses_the_stream(gateway: Gateway, demo: DemoNetwork) -> None:
    msg = llm(gateway, streaming=True).invoke("via stream")
    assert msg.content == "echo: via stream"
    assert demo.providers["chutes"].requests[-1].json()["stream"] is True


class GetWeather(BaseModel):
    """Get the weather in a city."""

    city: str


def test_bind_tools_pass_through_and_tool_calls_come_back(gateway: Gateway) -> None:
    backend = ToolCallingBackend("chutes")
    gw = Gateway(gateway.config, backends={"chutes": backend})
    try:
        model = llm(gw, networks=["bittensor"]).bind_tools([GetWeather], tool_choice="GetWeather")
        msg = model.invoke("weather in Paris?")
        chunks = list(model.stream("weather in Paris?"))
    finally:
        gw.close()
    sent = backend.requests[0].extra
    assert sent["tools"][0]["function"]["name"] == "GetWeather"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "GetWeather"}}
    assert isinstance(msg, AIMessage)
    assert msg.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1", "type": "tool_call"}
    ]
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.tool_calls[0]["args"] == {"city": "Paris"}  # type: ignore[attr-defined]
    assert TOOL_CALL["function"]["name"] == "get_weather"


def test_with_structured_output_uses_tools(gateway: Gateway) -> None:
    backend = ToolCallingBackend("chutes")
    gw = Gateway(gateway.config, backends={"chutes": backend})
    try:
        structured = llm(gw, networks=["bittensor"]).with_structured_output(
            {"title": "get_weather", "type": "object", "properties": {"city": {"type": "string"}}}
        )
        assert structured.invoke("weather?") == {"city": "Paris"}
    finally:
        gw.close()
