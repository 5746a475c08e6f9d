"""``ChatIntentmesh``: a LangChain chat model that routes every call by intent.

    from intentmesh.integrations.langchain import ChatIntentmesh
    llm = ChatIntentmesh(model="llama-3.1-8b-instruct", max_price_usd=0.002, optimize="latency")
    llm.invoke("Hi").response_metadata["receipt_id"]

Needs the ``langchain`` extra. Intent fields are model parameters (and per-call kwargs); the
backend, network, cost and receipt id land in ``response_metadata``. See ``docs/langchain.md``.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (  # noqa: TID253 - this module is the langchain extra
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import LanguageModelInput  # noqa: TID253
from langchain_core.language_models.chat_models import (  # noqa: TID253
    BaseChatModel,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import (  # noqa: TID253
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata  # noqa: TID253
from langchain_core.messages.tool import tool_call_chunk  # noqa: TID253
from langchain_core.output_parsers.openai_tools import (  # noqa: TID253
    make_invalid_tool_call,
    parse_tool_call,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult  # noqa: TID253
from langchain_core.runnables import Runnable  # noqa: TID253
from langchain_core.tools import BaseTool  # noqa: TID253
from langchain_core.utils.function_calling import convert_to_openai_tool  # noqa: TID253
from pydantic import ConfigDict, Field, PrivateAttr

from intentmesh import Gateway, InferenceResult, Intent
from intentmesh.adapters.base import Chunk, Usage

__all__ = ["ChatIntentmesh"]

# Model parameters that are intent fields, passed through unchanged.
_INTENT_PARAMS = (
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "max_price_usd",
    "max_latency_ms",
    "verifiability",
    "optimize",
    "networks",
    "exclude",
    "hedge",
    "cache",
)


class ChatIntentmesh(BaseChatModel):
    """A chat model served by an intentmesh :class:`~intentmesh.Gateway`.

    ``gateway`` defaults to ``Gateway(config)`` (config discovered when None), built on first
    use. ``timeout`` (seconds) is the intent's deadline when ``max_latency_ms`` is not set.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    model: str | list[str] = Field(alias="model_name")
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    max_price_usd: float | None = None
    max_latency_ms: float | None = None
    verifiability: Literal["none", "receipt", "spot", "attested", "consensus", "proof"] | None = (
        None
    )
    optimize: Literal["cost", "latency", "balanced"] | None = None
    networks: list[str] | None = None
    exclude: list[str] | None = None
    hedge: bool | float | None = None
    cache: bool | None = None
    timeout: float | None = None
    streaming: bool = False
    config: str | None = Field(default=None, description="intentmesh.toml to build a Gateway")
    gateway: Gateway | None = Field(default=None, exclude=True)
    _owned: weakref.finalize[Any, Any] | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "intentmesh"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, **self._intent_params()}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "intentmesh"
        model = kwargs.get("model", self.model)
        params["ls_model_name"] = model if isinstance(model, str) else model[0]
        return params

    # -- tools ---------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        strict: bool | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Send OpenAI-format tools (and ``tool_choice``) to backends that support them.

        ``strict`` marks each function schema strict, as ``ChatOpenAI`` does;
        ``parallel_tool_calls=False`` keeps at most one call per answer.
        """
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = _tool_choice(tool_choice)
        if parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = parallel_tool_calls
        return super().bind(tools=formatted, **kwargs)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the gateway this model built itself (a ``gateway=`` you passed stays yours).

        Also happens when the model is garbage-collected; calling it again is harmless.
        """
        if self._owned is not None:
            self._owned()
            self._owned = None
            self.gateway = None  # the next call builds a fresh one

    async def aclose(self) -> None:
        """Close the owned gateway's connections on the running loop, then the gateway."""
        if self._owned is not None and self._owned.alive and self.gateway is not None:
            await self.gateway.aclose()
        self.close()

    def __enter__(self) -> ChatIntentmesh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> ChatIntentmesh:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- generation ----------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        single = kwargs.get("parallel_tool_calls") is False
        result = self._gateway().infer(self._intent(messages, stop, kwargs))
        return _chat_result(result, single)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.streaming:
            chunks = self._astream(messages, stop, run_manager, **kwargs)
            return await agenerate_from_stream(chunks)
        single = kwargs.get("parallel_tool_calls") is False
        result = await self._gateway().ainfer(self._intent(messages, stop, kwargs))
        return _chat_result(result, single)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        single = kwargs.get("parallel_tool_calls") is False
        stream = self._gateway().stream(self._intent(messages, stop, kwargs))
        for chunk in stream:
            if chunk.text or chunk.tool_calls:
                out = _chunk(chunk, single)
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=out)
                yield out
        if stream.result is not None:
            yield _final_chunk(stream.result)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        single = kwargs.get("parallel_tool_calls") is False
        stream = self._gateway().astream(self._intent(messages, stop, kwargs))
        async for chunk in stream:
            if chunk.text or chunk.tool_calls:
                out = _chunk(chunk, single)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=out)
                yield out
        if stream.result is not None:
            yield _final_chunk(stream.result)

    # -- helpers -------------------------------------------------------------------------------

    def _gateway(self) -> Gateway:
        if self.gateway is None:
            gateway = Gateway(self.config or os.environ.get("INTENTMESH_CONFIG") or None)
            self.gateway = gateway
            # Owned: closed by close()/aclose(), or when this model is dropped.
            self._owned = weakref.finalize(self, gateway.close)
        return self.gateway

    def _intent_params(self) -> dict[str, Any]:
        params = {k: v for k in _INTENT_PARAMS if (v := getattr(self, k)) is not None}
        if self.max_latency_ms is None and self.timeout is not None:
            params["max_latency_ms"] = self.timeout * 1000
        return params

    def _intent(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Intent:
        """Model parameters < per-call kwargs (``bind(...)``, ``invoke(..., optimize=...)``)."""
        fields: dict[str, Any] = {"model": self.model, **self._intent_params(), **kwargs}
        stops = stop or self.stop
        if stops:
            fields["stop"] = stops
        fields["messages"] = convert_to_openai_messages(messages)
        fields.pop("ls_structured_output_format", None)
        fields.pop("parallel_tool_calls", None)  # honoured on the answer (see _chat_result)
        strict = fields.pop("strict", None)
        if strict is not None and fields.get("tools"):
            fields["tools"] = [_strict(t, strict) for t in fields["tools"]]
        return Intent(**fields)


def _strict(tool: dict[str, Any], strict: bool) -> dict[str, Any]:
    """``strict`` given to ``bind(...)`` rather than ``bind_tools``: set on each function."""
    if tool.get("type") != "function" or "function" not in tool:
        return tool
    return {**tool, "function": {**tool["function"], "strict": strict}}


def _tool_choice(choice: str | dict[str, Any] | bool) -> str | dict[str, Any]:
    """LangChain's spellings (``"any"``, ``True``, a tool name) in OpenAI's."""
    if choice is True or choice == "any":
        return "required"
    if isinstance(choice, str) and choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": choice}}
    if isinstance(choice, bool):
        return "none"
    return choice


def _usage(usage: Usage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


def _metadata(res: InferenceResult) -> dict[str, Any]:
    return {
        "model_name": res.model,
        "model_provider": "intentmesh",
        "provider_model": res.provider_model,
        "backend": res.backend,
        "network": res.network,
        "cost_usd": res.cost_usd,
        "receipt_id": res.receipt_id,
        "attempts": len(res.attempts),
        "latency_ms": res.latency_ms,
        "finish_reason": res.finish_reason,
        "cached": res.cached,
    }


def _chat_result(res: InferenceResult, single: bool = False) -> ChatResult:
    """``single`` (``parallel_tool_calls=False``): keep only the first tool call."""
    tool_calls, invalid = [], []
    raws = res.tool_calls or []
    for raw in raws[:1] if single else raws:
        try:
            parsed = parse_tool_call(raw, return_id=True)
        except Exception as exc:  # noqa: BLE001 - a bad call is reported, not raised
            invalid.append(make_invalid_tool_call(raw, str(exc)))
            continue
        if parsed is not None:
            tool_calls.append(parsed)
    message = AIMessage(
        content=res.text,
        tool_calls=tool_calls,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(res.usage),
        response_metadata=_metadata(res),
    )
    info = {"finish_reason": res.finish_reason}
    return ChatResult(generations=[ChatGeneration(message=message, generation_info=info)])


def _chunk(chunk: Chunk, single: bool = False) -> ChatGenerationChunk:
    calls = [
        tool_call_chunk(
            name=(c.get("function") or {}).get("name"),
            args=(c.get("function") or {}).get("arguments"),
            id=c.get("id"),
            index=c.get("index"),
        )
        for c in chunk.tool_calls or []
        if not single or c.get("index", 0) == 0
    ]
    return ChatGenerationChunk(message=AIMessageChunk(content=chunk.text, tool_call_chunks=calls))


def _final_chunk(res: InferenceResult) -> ChatGenerationChunk:
    """The last chunk: no text, the usage and where the answer came from."""
    message = AIMessageChunk(
        content="",
        usage_metadata=_usage(res.usage),
        response_metadata=_metadata(res),
        chunk_position="last",
    )
    return ChatGenerationChunk(
        message=message, generation_info={"finish_reason": res.finish_reason}
    )
