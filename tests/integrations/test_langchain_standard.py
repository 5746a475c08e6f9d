"""LangChain's standard unit tests for chat models, run against ChatIntentmesh."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from intentmesh.integrations.langchain import ChatIntentmesh

MODEL = "llama-3.1-8b-instruct"


class TestChatIntentmeshStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatIntentmesh]:
        return ChatIntentmesh

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "llama-3.1-8b-instruct", "max_price_usd": 0.01}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # intentmesh holds no provider key (backends' keys live in the gateway config) and
        # retries/failover are the gateway's routing policy: neither is a model parameter.
        params = dict(super().standard_chat_model_params)
        params.pop("api_key", None)
        params.pop("max_retries", None)
        return params

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True
