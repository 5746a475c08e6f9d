"""Ritual Infernet node: LLM calls as off-chain jobs on the node's REST API.

Lifecycle: ``POST /api/jobs {"containers": [id], "data": {...}, "requires_proof": bool}``
answers ``{"id"}``; ``GET /api/jobs?id=<id>`` answers ``[{"id", "status": "running" |
"success" | "failed", "result": {"container", "output"} | {"container", "error"}}]`` (the
node's code spellings). Streaming: ``POST /api/jobs/stream`` answers the job id on the first
line, then the container's raw bytes.

The container's input/output shape is configurable (``io``): ``openai`` (an OpenAI-style
request in, a chat completion out: the default), ``css`` (Ritual's closed-source-LLM
service), ``prompt`` (the gpt4 starter) and ``tgi``. Off-chain jobs carry no payment, so the
price is whatever you configure per model for this node. Errors: ``405`` guardian rejections
(``"Container not supported"`` → :class:`ModelNotFound`, others → :class:`AuthenticationError`,
both fail over), ``429`` with ``Retry-After`` → :class:`RateLimited`.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from intentmesh.adapters._http import Connection, map_transport_errors
from intentmesh.adapters.base import ChatRequest, Chunk, Completion
from intentmesh.adapters.openai import openai_body, openai_usage
from intentmesh.config import BackendConfig
from intentmesh.errors import (
    AuthenticationError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ConfigurationError,
    MalformedResponse,
    ModelNotFound,
)

__all__ = ["RitualBackend", "RitualOptions"]

IOStyle = Literal["openai", "css", "prompt", "tgi"]


class RitualOptions(BaseModel):
    """``[[backends]]`` keys for ``type = "ritual"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    container: str = Field(min_length=1, description="the LLM container's id on the node")
    io: IOStyle = "openai"
    output_path: str | None = Field(None, description="dotted path to the text in the output")
    requires_proof: bool = False
    poll_interval_s: float = Field(0.5, gt=0)
    css_provider: str = "OPENAI"


def _openai_input(req: ChatRequest, opts: RitualOptions) -> dict[str, Any]:
    return openai_body(req)


def _css_input(req: ChatRequest, opts: RitualOptions) -> dict[str, Any]:
    extra = {"max_tokens": req.max_tokens}
    if req.temperature is not None:
        extra["temperature"] = req.temperature  # type: ignore[assignment]
    return {
        "provider": opts.css_provider,
        "endpoint": "completions",
        "model": req.model,
        "params": {"endpoint": "completions", "messages": _messages(req)},
        "extra_args": extra,
    }


def _prompt_input(req: ChatRequest, opts: RitualOptions) -> dict[str, Any]:
    return {"prompt": _last_user_text(req)}


def _tgi_input(req: ChatRequest, opts: RitualOptions) -> dict[str, Any]:
    return {"text": _last_user_text(req)}


# io style -> (input builder, default path of the text in the job's output)
IO_STYLES: dict[str, tuple[Callable[[ChatRequest, RitualOptions], dict[str, Any]], str]] = {
    "openai": (_openai_input, "choices.0.message.content"),
    "css": (_css_input, "output"),
    "prompt": (_prompt_input, "message"),
    "tgi": (_tgi_input, "output"),
}


class RitualBackend:
    """One Infernet node (``base_url`` like ``http://node:4000``) and one LLM container."""

    default_timeout_s: ClassVar[float] = 180.0

    def __init__(
        self,
        name: str,
        base_url: str,
        options: RitualOptions,
        *,
        timeout_s: float = 180.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.options = options
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        self.connection = Connection(base_url, all_headers, timeout_s)

    @classmethod
    def from_config(cls, config: BackendConfig) -> RitualBackend:
        options = config.parse_options(RitualOptions)
        if not config.base_url:
            raise ConfigurationError(f"backend {config.name!r}: base_url (the node) is required")
        factory: type[RitualBackend] = cls
        if config.proof is not None and cls is RitualBackend:
            # a ``proof`` table asks for the proof level: keep each job's proof for it
            from intentmesh.verify import RitualProofBackend

            factory = RitualProofBackend
        return factory(
            config.name,
            config.base_url,
            options,
            timeout_s=config.timeout_s,
            headers=config.headers,
        )

    @property
    def endpoint_host(self) -> str:
        return self.connection.host

    # -- translation ------------------------------------------------------------------

    def job_request(self, request: ChatRequest, stream: bool = False) -> dict[str, Any]:
        build, _ = IO_STYLES[self.options.io]
        body: dict[str, Any] = {
            "containers": [self.options.container],
            "data": build(request, self.options),
        }
        if not stream:
            body["requires_proof"] = self.options.requires_proof
        return body

    def parse_result(self, result: Mapping[str, Any]) -> Completion:
        """A Completion from a finished JobResult; a failed job raises."""
        status = result.get("status")
        inner = result.get("result") if isinstance(result.get("result"), dict) else {}
        assert isinstance(inner, dict)
        if status == "failed":
            raise BackendUnavailable(
                f"job {result.get('id')} failed in {inner.get('container')}: {inner.get('error')}",
                backend=self.name,
            )
        output = inner.get("output")
        text = _text_at(output, self.options.output_path or IO_STYLES[self.options.io][1])
        if text is None:
            raise MalformedResponse(f"no text in job output: {output!r:.200}", backend=self.name)
        usage = openai_usage(output.get("usage")) if isinstance(output, dict) else None
        model = str(output.get("model") or "") if isinstance(output, dict) else ""
        return Completion(text, "stop", usage, model=model, id=str(result.get("id") or ""))

    # -- I/O --------------------------------------------------------------------------

    async def acomplete(self, request: ChatRequest) -> Completion:
        deadline = time.monotonic() + (request.timeout_s or self.connection.timeout_s)
        created = await self._call("POST", "/api/jobs", self.job_request(request))
        job_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(job_id, str):
            raise MalformedResponse(f"job creation answered {created!r:.200}", backend=self.name)
        while True:
            result = await self.ajob(job_id)
            if result is not None and result.get("status") != "running":
                return self.parse_result(result)
            if time.monotonic() + self.options.poll_interval_s > deadline:
                raise BackendTimeout(
                    f"job {job_id} still running at the deadline", backend=self.name
                )
            await anyio.sleep(self.options.poll_interval_s)

    async def ajob(self, job_id: str) -> dict[str, Any] | None:
        """The JobResult of ``job_id`` (None when the node does not know it for our IP)."""
        found = await self._call("GET", "/api/jobs", params={"id": job_id})
        if not isinstance(found, list):
            raise MalformedResponse("job results are not a list", backend=self.name)
        return next((r for r in found if isinstance(r, dict) and r.get("id") == job_id), None)

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        body = self.job_request(request, stream=True)
        with _guardian_errors(), map_transport_errors(self.name):
            async with self.connection.stream(
                "/api/jobs/stream", body, backend=self.name, timeout_s=request.timeout_s
            ) as response:
                async for piece in _after_first_line(response.aiter_bytes()):
                    yield Chunk(text=piece)
        yield Chunk(finish_reason="stop")

    async def ahealth(self) -> bool:
        """``GET /health`` says ``{"status": "healthy"}``."""
        try:
            data = await self._call("GET", "/health")
        except BackendError:
            return False
        return isinstance(data, dict) and data.get("status") == "healthy"

    async def ainfo(self) -> dict[str, Any]:
        """``GET /info``: node version, containers, pending job counts, chain status."""
        data = await self._call("GET", "/info")
        if not isinstance(data, dict):
            raise MalformedResponse("node info is not an object", backend=self.name)
        return data

    async def _call(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        with _guardian_errors():
            return await self.connection.request_json(
                method, path, backend=self.name, body=body, params=params
            )

    async def aclose(self) -> None:
        await self.connection.aclose()


@contextmanager
def _guardian_errors() -> Iterator[None]:
    """405 is the guardian saying no: this node cannot run it, so fail over."""
    try:
        yield
    except BackendError as exc:
        if exc.status_code != 405:
            raise
        try:
            message = json.loads(exc.body).get("error", "")
        except (ValueError, AttributeError):
            message = exc.body
        cls = ModelNotFound if message == "Container not supported" else AuthenticationError
        raise cls(
            f"HTTP 405: node refused the job: {message}",
            backend=exc.backend,
            status_code=405,
            body=exc.body,
            headers=exc.headers,
        ) from exc


async def _after_first_line(source: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Skip the ``<job id>\\n`` line, then decode the rest as UTF-8 text as it comes."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    head = b""
    seen_id = False
    async for raw in source:
        if not seen_id:
            head += raw
            if b"\n" not in head:
                continue
            raw = head.split(b"\n", 1)[1]
            seen_id = True
        text = decoder.decode(raw)
        if text:
            yield text
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _text_at(output: Any, path: str) -> str | None:
    node = output
    for part in path.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = None
            break
    if node is None and isinstance(output, dict):  # an OpenAI completions-style answer
        node = _text_at(output, "choices.0.text") if path.startswith("choices.0.message") else None
    if node is None and isinstance(output, str):
        return output
    return node if isinstance(node, str) else None


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    if req.kind == "chat":
        return list(req.messages)
    return [{"role": "user", "content": req.prompt or ""}]


def _last_user_text(req: ChatRequest) -> str:
    if req.kind != "chat":
        return req.prompt or ""
    users = [m for m in req.messages if m.get("role") == "user"]
    content = users[-1].get("content") if users else ""
    return content if isinstance(content, str) else json.dumps(content)

