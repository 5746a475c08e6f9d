"""The local server as a routing target: an OpenAI-compatible backend that starts itself.

Everything on the wire is inherited from :class:`OpenAIBackend`. This class only makes sure the
server runs (reusing one already on the port, starting one when ``autostart``), and prices its
answers from a cost model: ``usd_per_hour`` of the machine divided by the throughput the server
itself measured (``/metrics``), so the solver compares it honestly with remote networks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, ClassVar

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field

from intentmesh.adapters.base import ChatRequest, Chunk, Completion, ModelListing
from intentmesh.adapters.openai import OpenAIBackend
from intentmesh.config import BackendConfig
from intentmesh.errors import (
    BackendConnectionError,
    BackendUnavailable,
    ConfigurationError,
    MalformedResponse,
)
from intentmesh.local_backend import DEFAULT_HOST, DEFAULT_PORT, LocalServer

__all__ = ["LocalBackend", "LocalOptions"]


class LocalOptions(BaseModel):
    """Config keys of ``type = "local"`` backends (all optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None  # folder, .gguf or cached HF id; None = embedded SmolLM2
    engine: str = "auto"  # auto, xllamacpp, llamacpp, torch, vllm
    threads: int | None = Field(None, ge=1)  # llama.cpp engines; default: the usable cores
    host: str = DEFAULT_HOST
    port: int = Field(DEFAULT_PORT, gt=0, lt=65536)
    autostart: bool = True
    vllm_python: str | None = None
    vllm_args: list[str] = Field(default_factory=list)  # passed on to vLLM as given
    start_timeout_s: float | None = Field(None, gt=0)
    usd_per_hour: float = Field(0.0, ge=0.0)  # what the machine costs to run
    toploc: bool = False  # ask the server for TOPLOC commitments of every answer (torch engine)


class LocalBackend(OpenAIBackend):
    """A managed local server; the first request starts it when ``autostart`` is on."""

    Options: ClassVar[type[BaseModel]] = LocalOptions

    def __init__(
        self, name: str, server: LocalServer, *, autostart: bool = True, usd_per_hour: float = 0.0,
        timeout_s: float = 120.0, toploc: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(name, server.base_url, timeout_s=timeout_s)
        self.server = server
        self.toploc = toploc
        self.autostart = autostart
        self.usd_per_hour = usd_per_hour
        self._ready = False
        self._lock = anyio.Lock()

    @classmethod
    def from_config(cls, config: BackendConfig) -> LocalBackend:
        options = config.parse_options(LocalOptions)
        if options.toploc and options.engine in {"xllamacpp", "llamacpp", "vllm"}:
            raise ConfigurationError(
                f'backend {config.name!r}: toploc = true needs engine = "torch" (hidden '
                f"states); the {options.engine} engine cannot produce TOPLOC commitments"
            )
        server = LocalServer(
            options.model, engine=options.engine, host=options.host, port=options.port,
            vllm_python=options.vllm_python, vllm_args=options.vllm_args,
            start_timeout_s=options.start_timeout_s, threads=options.threads,
        )  # fmt: skip
        return cls(
            config.name, server, autostart=options.autostart,
            usd_per_hour=options.usd_per_hour, timeout_s=config.timeout_s, toploc=options.toploc,
        )  # fmt: skip

    async def ensure_ready(self) -> None:
        """Reuse or start the server (once; again after it was lost)."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            if self.autostart:
                await anyio.to_thread.run_sync(self.server.ensure_running)
            elif await anyio.to_thread.run_sync(self.server.status) is None:
                raise BackendUnavailable(
                    f"no local server on port {self.server.port} and autostart is off; "
                    f"start one with `intentmesh local start --port {self.server.port}`",
                    backend=self.name,
                )
            self._ready = True

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, stream)
        if self.toploc and "intentmesh" not in body:
            body["intentmesh"] = {"toploc": True}
        return body

    def parse_completion(self, data: Any, headers: Mapping[str, str]) -> Completion:
        completion = super().parse_completion(data, headers)
        found = _toploc_fields(data["choices"][0], data)
        if found:
            return replace(completion, extra={"toploc": found})
        if self.toploc:  # e.g. vLLM, which ignores unknown fields: never a silent drop
            raise MalformedResponse(
                "intentmesh.toploc: the server answered without TOPLOC commitments; serve the "
                "model with --engine torch, or set toploc = false",
                backend=self.name,
            )
        return completion

    def parse_chunk(self, data: Any) -> Chunk:
        chunk = super().parse_chunk(data)
        choices = data.get("choices") or [{}]
        found = _toploc_fields(choices[0], data)
        return replace(chunk, extra={"toploc": found}) if found else chunk

    async def acomplete(self, request: ChatRequest) -> Completion:
        await self.ensure_ready()
        try:
            return await super().acomplete(request)
        except BackendConnectionError:
            self._ready = False  # the server died: fail over now, restart on the next call
            raise

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        await self.ensure_ready()
        try:
            async for chunk in super().astream(request):
                yield chunk
        except BackendConnectionError:
            self._ready = False
            raise

    async def alist_models(self) -> list[ModelListing]:
        """The served model, priced from ``usd_per_hour`` and the measured tokens/s."""
        await self.ensure_ready()
        listings = await super().alist_models()
        measured = await self.measured()
        rate = measured.get("tokens_per_s")
        price = _price_per_million(self.usd_per_hour, rate)
        attributes: dict[str, Any] = {"local": True, **measured}
        # The request time behind ``rate`` includes prefill, so output tokens carry all the cost.
        return [
            ModelListing(id=m.id, input_price=0.0, output_price=price, attributes=attributes)
            for m in listings
        ]

    async def measured(self) -> dict[str, float]:
        """``tokens_per_s`` (generated tokens per second of request time) and ``ttft_s`` (mean
        time to first token) from the server's ``/metrics``; empty before any request."""
        conn = self.connection
        try:
            response = await conn.client().get(conn.base_url.removesuffix("/v1") + "/metrics")
        except httpx.HTTPError:
            return {}
        if response.status_code != 200:
            return {}
        values = _metric_values(response.text)
        found: dict[str, float] = {}
        tokens = values.get("generation_tokens_total", 0.0)
        seconds = values.get("e2e_request_latency_seconds_sum", 0.0)
        if tokens > 0 and seconds > 0:
            found["tokens_per_s"] = tokens / seconds
        ttft_count = values.get("time_to_first_token_seconds_count", 0.0)
        if ttft_count > 0:
            found["ttft_s"] = values.get("time_to_first_token_seconds_sum", 0.0) / ttft_count
        return found


def _toploc_fields(choice: Any, data: Any) -> dict[str, Any] | None:
    """The server's TOPLOC extension fields of one choice (proofs or a verdict), if any."""
    if not isinstance(choice, dict):
        return None
    out: dict[str, Any] = {}
    if isinstance(choice.get("toploc_proofs"), list):
        out["proofs"] = choice["toploc_proofs"]
    if isinstance(choice.get("toploc_verification"), dict):
        out["verification"] = choice["toploc_verification"]
    if not out:
        return None
    out["token_ids"] = choice.get("token_ids") or []
    out["prompt_token_ids"] = data.get("prompt_token_ids") or []
    return out


def _price_per_million(usd_per_hour: float, tokens_per_s: float | None) -> float:
    if usd_per_hour == 0:
        return 0.0
    if not tokens_per_s:
        return float("inf")
    return usd_per_hour / 3600.0 / tokens_per_s * 1_000_000


def _metric_values(text: str) -> dict[str, float]:
    """Sums of our (``intentmesh_local:``) and vLLM's (``vllm:``) series by short name."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0].split(":", 1)[-1]
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values
