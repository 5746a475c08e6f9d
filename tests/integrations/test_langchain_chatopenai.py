"""LangChain's own ChatOpenAI pointed at a live ``intentmesh serve``."""

from __future__ import annotations

from typing import Any

from langchain_openai import ChatOpenAI

MODEL = "llama-3.1-8b-instruct"


def chat(server: Any, model: str = MODEL, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=model, base_url=server.base_url, api_key="unused", max_retries=0, **kwargs
    )


def test_invoke_through_the_gateway(server: Any) -> None:
    msg = chat(server).invoke("hello from langchain")
    assert msg.content == "echo: hello from langchain"
    assert msg.usage_metadata is not None and msg.usage_metadata["output_tokens"] > 0
    assert msg.response_metadata["model_name"] == MODEL


def test_intent_via_extra_body_and_presets(server: Any) -> None:
    fastest = chat(server, model=MODEL + ":fastest").invoke("hi")
    assert fastest.content == "echo: hi"
    akash = chat(server, extra_body={"intent": {"networks": ["akash"]}}).invoke("hi")
    assert akash.content == "echo: hi"


def test_stream_with_usage(server: Any) -> None:
    chunks = list(chat(server, stream_usage=True).stream("stream through gateway"))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "echo: stream through gateway"
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] > 0


async def test_ainvoke_and_astream(server: Any) -> None:
    model = chat(server)
    assert (await model.ainvoke("async hi")).content == "echo: async hi"
    parts = [c.content async for c in model.astream("async stream")]
    assert "".join(str(p) for p in parts) == "echo: async stream"
