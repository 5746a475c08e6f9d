"""The generic OpenAI-compatible adapter: Chutes, Targon, AkashML, io.net, vLLM and friends.

Connection (URL, key, client) lives in :class:`~intentmesh.adapters._http.Connection`;
provider quirks live in a declarative :class:`OpenAIProfile`; this module only translates.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict

from intentmesh.adapters._http import (
    MAX_BODY_BYTES_PER_TOKEN,
    MIN_BODY_BYTES,
    Connection,
    StreamTruncated,
    error_for_status,
    error_message,
    loads_json,
    map_transport_errors,
)
from intentmesh.adapters._registry import key_env_of
from intentmesh.adapters.base import ChatRequest, Chunk, Completion, ModelListing, Usage
from intentmesh.config import BackendConfig
from intentmesh.errors import BackendError, ConfigurationError, MalformedResponse, MissingApiKey

__all__ = ["OpenAIBackend", "OpenAIOptions", "OpenAIProfile", "openai_body", "openai_usage"]

# Undecodable SSE events in a row that end a stream (one alone is skipped and counted).
MAX_MALFORMED_IN_A_ROW = 16


@dataclass(frozen=True, slots=True)
class OpenAIProfile:
    """What differs between OpenAI-compatible providers, as data.

    ``auth_header``/``auth_scheme``: how the key is sent (``Authorization: Bearer k`` or
    ``api-key: k``). ``send_stream_flag``: always send ``stream`` explicitly (Targon streams by
    default). ``include_usage``: ask for the usage chunk when streaming.
    """

    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    send_stream_flag: bool = True
    include_usage: bool = True
    default_base_url: str | None = None
    default_api_key_env: str | None = None  # None: the registry spec's key_env
    require_key: bool = False


class OpenAIOptions(BaseModel):
    """Extra config keys the ``openai`` type understands."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_header: str | None = None
    auth_scheme: str | None = None
    include_usage: bool | None = None


class OpenAIBackend:
    """A backend that speaks the OpenAI chat/completions HTTP API."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile()
    Options: ClassVar[type[BaseModel]] = OpenAIOptions
    discovers_prices: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        profile: OpenAIProfile | None = None,
        timeout_s: float = 60.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        api_key_env: str | None = None,
    ) -> None:
        self.name = name
        self.profile = profile or type(self).default_profile
        # A config that names the key's variable while it is unset fails before sending.
        self.missing_key_env = api_key_env if api_key_env and not api_key else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            scheme = self.profile.auth_scheme
            all_headers[self.profile.auth_header] = f"{scheme} {api_key}" if scheme else api_key
        self.connection = Connection(base_url, all_headers, timeout_s, transport)

    @classmethod
    def from_config(cls, config: BackendConfig) -> OpenAIBackend:
        """Build from a ``[[backends]]`` entry; the key is read from ``api_key_env``."""
        options = config.parse_options(OpenAIOptions)
        profile = cls._profile_with(options)
        base_url = config.base_url or profile.default_base_url
        if not base_url:
            raise ConfigurationError(
                f"backend {config.name!r}: base_url is required", key="base_url"
            )
        key_env = config.api_key_env or profile.default_api_key_env or key_env_of(config.type)
        api_key = os.environ.get(key_env) if key_env else None
        if profile.require_key and not api_key:
            raise ConfigurationError(
                f"backend {config.name!r}: {key_env} is not set; set the API key in the "
                f"environment variable {key_env}",
                key="api_key_env",
            )
        return cls(
            config.name,
            base_url,
            api_key=api_key,
            profile=profile,
            timeout_s=config.timeout_s,
            headers=config.headers,
            api_key_env=config.api_key_env,
        )

    @classmethod
    def _profile_with(cls, options: OpenAIOptions) -> OpenAIProfile:
        changes = {k: v for k, v in options.model_dump().items() if v is not None}
        base = cls.default_profile
        return replace(base, **changes) if changes else base

    @property
    def endpoint_host(self) -> str:
        return self.connection.host

    # -- translation ------------------------------------------------------------------

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """The JSON body for ``request``; ``stream`` is always explicit when the profile says."""
        body = openai_body(request)
        if stream or self.profile.send_stream_flag:
            body["stream"] = stream
        if stream and self.profile.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(request.extra)
        return body

    def _path(self, request: ChatRequest) -> str:
        return "/chat/completions" if request.kind == "chat" else "/completions"

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> Completion:
        """Read a non-streamed answer; anything unexpected is a MalformedResponse."""
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            raise self.in_stream_error(data)  # an error object sent with status 200
        try:
            choice = data["choices"][0]
            if "message" in choice:
                message = choice["message"]
                text = message.get("content") or ""
                tool_calls = message.get("tool_calls") or None
            else:
                text, tool_calls = choice.get("text") or "", None
            return Completion(
                text=text,
                finish_reason=choice.get("finish_reason"),
                usage=openai_usage(data.get("usage")),
                model=str(data.get("model") or ""),
                id=str(data.get("id") or ""),
                tool_calls=tool_calls,
                headers=headers,
            )
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise MalformedResponse(
                f"unexpected response shape: {exc!r}", backend=self.name
            ) from exc

    def parse_chunk(self, data: Any) -> Chunk:
        """Read one streamed event; an in-stream ``error`` object raises."""
        if not isinstance(data, dict):
            raise MalformedResponse("stream event is not an object", backend=self.name)
        if "error" in data:
            raise self.in_stream_error(data)
        choices = data.get("choices") or []
        usage = openai_usage(data.get("usage"))
        if not choices:
            return Chunk(usage=usage, model=str(data.get("model") or ""))
        choice = choices[0]
        delta = choice.get("delta")
        text = (delta.get("content") if delta else choice.get("text")) or ""
        return Chunk(
            text=text,
            finish_reason=choice.get("finish_reason"),
            usage=usage,
            model=str(data.get("model") or ""),
            tool_calls=(delta or {}).get("tool_calls") or None,
        )

    def in_stream_error(self, data: Mapping[str, Any]) -> BackendError:
        """An ``error`` event inside a 200 stream, classified by its code when it has one."""
        err = data.get("error")
        code = err.get("code") if isinstance(err, dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 503
        return error_for_status(status, json.dumps(data), {}, self.name)

    # -- I/O --------------------------------------------------------------------------

    def check_key(self) -> None:
        """Raise :class:`MissingApiKey` when the configured key variable is unset."""
        if self.missing_key_env:
            raise MissingApiKey(self.missing_key_env, backend=self.name)

    async def acomplete(self, request: ChatRequest) -> Completion:
        """One answer; ``request.timeout_s`` bounds the whole exchange, the body its size."""
        self.check_key()
        body = self.build_body(request, stream=False)
        limit = request.max_tokens * MAX_BODY_BYTES_PER_TOKEN + MIN_BODY_BYTES
        raw, headers = await self.connection.post_limited(
            self._path(request), body, backend=self.name, limit=limit, timeout_s=request.timeout_s
        )
        with map_transport_errors(self.name):
            return self._read_completion(raw, headers)

    def _read_completion(self, content: bytes, headers: Mapping[str, str]) -> Completion:
        """The Completion in a non-streamed answer's body (a hook: Targon's may be SSE)."""
        return self.parse_completion(loads_json(content), headers)

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.check_key()
        body = self.build_body(request, stream=True)
        conn = self.connection
        with map_transport_errors(self.name):
            async with conn.stream_sse(
                self._path(request), body, backend=self.name, timeout_s=request.timeout_s
            ) as payloads:
                finished = False
                events = _EventCount()
                try:
                    async for payload in payloads:
                        chunk = self._event(payload, events)
                        finished = finished or chunk.finish_reason is not None
                        yield chunk
                except StreamTruncated:
                    if not finished:  # servers that close after the last chunk without [DONE]
                        raise
                events.check_end(self.name)

    def _event(self, payload: str, events: _EventCount) -> Chunk:
        """One SSE payload as a chunk; an undecodable one is skipped, counted, and reported
        as an empty chunk with ``malformed_events=1``."""
        try:
            data = loads_json(payload)
            if not isinstance(data, dict):
                raise ValueError("stream event is not an object")
        except ValueError as exc:
            events.bad(self.name, exc)
            return Chunk(malformed_events=1)
        events.good()
        return self.parse_chunk(data)

    async def alist_models(self) -> list[ModelListing]:
        """``GET /models`` in the OpenAI list shape."""
        data = await self.connection.get_json("/models", backend=self.name)
        items = data.get("data") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise MalformedResponse(f"model list: {error_message(data)}", backend=self.name)
        return [ModelListing(id=str(item["id"])) for item in items if isinstance(item, dict)]

    async def aclose(self) -> None:
        await self.connection.aclose()


class _EventCount:
    """Good and bad events of one stream: garbage alone, or too much in a row, fails it."""

    def __init__(self) -> None:
        self.valid = 0
        self.malformed = 0
        self.in_a_row = 0

    def good(self) -> None:
        self.valid += 1
        self.in_a_row = 0

    def bad(self, backend: str, exc: Exception) -> None:
        self.malformed += 1
        self.in_a_row += 1
        if self.in_a_row >= MAX_MALFORMED_IN_A_ROW:
            raise MalformedResponse(
                f"{self.in_a_row} undecodable stream events in a row ({exc})", backend=backend
            )

    def check_end(self, backend: str) -> None:
        if self.malformed and not self.valid:
            raise MalformedResponse(
                f"stream carried no valid event ({self.malformed} undecodable)", backend=backend
            )


def openai_body(request: ChatRequest) -> dict[str, Any]:
    """The OpenAI request fields of ``request``: model, ``max_tokens``, the messages (or the
    prompt) and the sampling options that are set."""
    body: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens}
    if request.kind == "chat":
        body["messages"] = request.messages
    else:
        body["prompt"] = request.prompt
    for key in ("temperature", "top_p", "seed", "stop"):
        value = getattr(request, key)
        if value is not None:
            body[key] = value
    return body


def openai_usage(data: Any) -> Usage | None:
    """:class:`Usage` from an OpenAI ``usage`` object; None when absent or unreadable."""
    if not isinstance(data, dict):
        return None
    try:
        return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))
    except (TypeError, ValueError):
        return None
