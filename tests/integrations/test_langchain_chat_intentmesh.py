"""ChatIntentmesh against the loopback fakes: invoke, stream, intents, metadata, tools."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from pydantic import BaseModel

from intentmesh import Gateway
from intentmesh.adapters.base import Chunk, Usage
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


class TwoCallsBackend(ToolCallingBackend):
    """Answers with two tool calls at once."""

    async def acomplete(self, request: Any) -> Any:
        done = await super().acomplete(request)
        second = {**TOOL_CALL, "id": "call_2", "function": {**TOOL_CALL["function"]}}
        return type(done)("", "tool_calls", done.usage, done.model,
                          tool_calls=[TOOL_CALL, second])  # fmt: skip

    async def astream(self, request: Any) -> Any:
        self.requests.append(request)
        second = {**TOOL_CALL, "id": "call_2"}
        yield Chunk(tool_calls=[{"index": 0, **TOOL_CALL}, {"index": 1, **second}])
        yield Chunk(finish_reason="tool_calls", usage=Usage(12, 7))


def test_strict_and_parallel_tool_calls_are_accepted_like_chatopenai(gateway: Gateway) -> None:
    backend = TwoCallsBackend("chutes")
    gw = Gateway(gateway.config, backends={"chutes": backend})
    try:
        base = llm(gw, networks=["bittensor"])
        both = base.bind_tools([GetWeather], strict=True).invoke("weather in Paris and Rome?")
        one = base.bind_tools([GetWeather], strict=True, parallel_tool_calls=False)
        single = one.invoke("weather in Paris and Rome?")
        bound = base.bind_tools([GetWeather]).bind(parallel_tool_calls=False, strict=True)
        via_bind = bound.invoke("weather?")
        streamed = list(bound.stream("weather?"))
    finally:
        gw.close()
    assert backend.requests[0].extra["tools"][0]["function"]["strict"] is True
    assert backend.requests[2].extra["tools"][0]["function"]["strict"] is True
    assert "parallel_tool_calls" not in backend.requests[1].extra
    assert [c["id"] for c in both.tool_calls] == ["call_1", "call_2"]  # type: ignore[attr-defined]
    assert [c["id"] for c in single.tool_calls] == ["call_1"]  # type: ignore[attr-defined]
    assert [c["id"] for c in via_bind.tool_calls] == ["call_1"]  # type: ignore[attr-defined]
    total = streamed[0]
    for c in streamed[1:]:
        total = total + c
    assert [c["id"] for c in total.tool_calls] == ["call_1"]  # type: ignore[attr-defined]


def test_a_model_closes_the_gateway_it_built(demo: DemoNetwork, tmp_path: Any) -> None:
    import gc

    receipts = f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    config = tmp_path / "intentmesh.toml"
    config.write_text(receipts + demo.config_toml())
    with ChatIntentmesh(model=MODEL, config=str(config)) as model:
        assert model.invoke("hello").content == "echo: hello"
        built = model.gateway
        assert built is not None and built._portal.started
    assert not built._portal.started and model.gateway is None
    model.close()  # again: harmless
    dropped = ChatIntentmesh(model=MODEL, config=str(config))
    dropped.invoke("hello")
    gateway = dropped.gateway
    assert gateway is not None and gateway._portal.started
    del dropped
    gc.collect()
    assert not gateway._portal.started


async def test_aclose_closes_connections_on_the_running_loop(
    demo: DemoNetwork, tmp_path: Any
) -> None:
    receipts = f'[receipts]\nledger = "{tmp_path / "l.db"}"\nkey = "{tmp_path / "k.pem"}"\n'
    config = tmp_path / "intentmesh.toml"
    config.write_text(receipts + demo.config_toml())
    async with ChatIntentmesh(model=MODEL, config=str(config)) as model:
        assert (await model.ainvoke("hello")).content == "echo: hello"
    assert model.gateway is None


def test_a_gateway_passed_in_stays_open(gateway: Gateway) -> None:
    model = llm(gateway)
    model.invoke("hello")
    model.close()
    assert model.gateway is gateway
    assert llm(gateway).invoke("again").content == "echo: again"
