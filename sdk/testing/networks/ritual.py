"""Ritual Infernet fakes: a node's REST API and an LLM container behind it, on loopback.

:class:`FakeInfernetNode` reproduces the node's code (v1.4): ``/health``, ``/info``,
``POST /api/jobs`` → ``{"id"}``, ``GET /api/jobs?id=`` → ``[JobResult]`` with status
``running`` → ``success`` | ``failed`` (the code's spellings), ``GET /api/jobs`` → the
caller's job ids, ``/api/jobs/batch``, ``/api/jobs/stream`` (first line the job id, then the
container's raw bytes), guardian ``405 {"error", "params"}`` rejections, and
``429`` with ``Retry-After`` from the per-node rate limit. Jobs are scoped to the client IP;
on loopback every client is 127.0.0.1, so the fake also honours ``X-Forwarded-For`` to let
tests play several clients.

:class:`FakeInfernetContainer` implements ``POST /service_output`` in one of the I/O styles
the adapter knows (``openai``, ``css``, ``prompt``, ``tgi``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer

__all__ = ["ContainerSpec", "FakeInfernetContainer", "FakeInfernetNode"]

OFFCHAIN, STREAM = 1, 2


@dataclass(frozen=True)
class ContainerSpec:
    """A container as the node's config declares it."""

    id: str
    url: str
    external: bool = True
    allowed_ips: tuple[str, ...] = ()
    generates_proofs: bool = False
    description: str = "LLM inference"


class FakeInfernetContainer(LoopbackServer):
    """An LLM container: ``POST /service_output`` answers ``"echo: <last user text>"``."""

    def __init__(self, io: str = "openai", *, model: str = "fake-llm") -> None:
        super().__init__()
        self.io = io
        self.model = model
        self.fail_next = 0
        self.received: list[dict[str, Any]] = []

    def _text(self, data: Any) -> str:
        if self.io == "openai":
            users = [m for m in data.get("messages", []) if m.get("role") == "user"]
            return "echo: " + str(users[-1]["content"] if users else data.get("prompt", ""))
        if self.io == "css":
            users = [m for m in data["params"]["messages"] if m.get("role") == "user"]
            return "echo: " + str(users[-1]["content"])
        return "echo: " + str(data.get("prompt") or data.get("text") or "")

    def _output(self, text: str, data: Any) -> dict[str, Any]:
        if self.io == "openai":
            words = len(text.split())
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
                "object": "chat.completion",
                "model": data.get("model", self.model),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": text},
                    }
                ],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": words,
                    "total_tokens": 5 + words,
                },
            }
        key = "message" if self.io == "prompt" else "output"
        return {key: text}

    async def handle(self, request: FakeRequest) -> FakeResponse:
        if (request.method, request.path) != ("POST", "/service_output"):
            return FakeResponse.json({"code": "404", "name": "NotFound", "description": ""}, 404)
        body = request.json()
        self.received.append(body)
        if self.fail_next:
            self.fail_next -= 1
            error = {"code": "500", "name": "InferenceError", "description": "model crashed"}
            return FakeResponse.json(error, 500)
        text = self._text(body["data"])
        if body.get("destination") == STREAM:
            return FakeResponse.streaming(_words(text), headers={"content-type": "text/plain"})
        return FakeResponse.json(self._output(text, body["data"]))


async def _words(text: str) -> AsyncIterator[bytes]:
    for i, word in enumerate(text.split(" ")):
        yield (word if i == 0 else " " + word).encode()
        await asyncio.sleep(0)


@dataclass
class _Job:
    id: str
    ip: str
    status: str = "running"
    result: dict[str, Any] | None = None
    intermediate: list[Any] = field(default_factory=list)

    def to_json(self, intermediate: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "status": self.status, "result": self.result}
        if intermediate:
            data["intermediate_results"] = self.intermediate
        return data


class _Refused(Exception):
    def __init__(self, message: str, params: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.params = params


class FakeInfernetNode(LoopbackServer):
    """An Infernet node serving off-chain jobs to its containers."""

    def __init__(
        self,
        containers: Sequence[ContainerSpec],
        *,
        rate_limit: tuple[int, float] = (100, 100.0),
        job_delay_s: float = 0.0,
        version: str = "1.4.0",
    ) -> None:
        super().__init__()
        self.containers = {c.id: c for c in containers}
        self.rate_limit = rate_limit
        self.job_delay_s = job_delay_s
        self.version = version
        self.jobs: dict[tuple[str, str], _Job] = {}
        self._hits: deque[float] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Cancel jobs still running, then stop the server."""
        loop = self._loop
        if loop is not None and self._tasks and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._cancel_jobs(), loop)
            with contextlib.suppress(Exception):
                future.result(5)
        super().stop()

    async def _cancel_jobs(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def handle(self, request: FakeRequest) -> FakeResponse:
        limited = self._limited()
        if limited is not None:
            return limited
        ip = _client_ip(request)
        route = (request.method, request.path.rstrip("/"))
        try:
            if route == ("GET", "/health"):
                return FakeResponse.json({"status": "healthy"})
            if route == ("GET", "/info"):
                return FakeResponse.json(self._info())
            if route == ("POST", "/api/jobs"):
                return await self._create(ip, request.json())
            if route == ("GET", "/api/jobs"):
                return self._results(ip, request.query)
            if route == ("POST", "/api/jobs/batch"):
                return await self._batch(ip, request.json())
            if route == ("POST", "/api/jobs/stream"):
                return await self._stream(ip, request.json())
        except _Refused as exc:
            body: dict[str, Any] = {"error": exc.message}
            if exc.params:
                body["params"] = exc.params
            return FakeResponse.json(body, 405)
        except ValueError:
            return FakeResponse.json({"error": "Internal server error: invalid JSON"}, 500)
        return FakeResponse.json({"error": "Not Found"}, 404)

    # -- routes ---------------------------------------------------------------------------

    def _info(self) -> dict[str, Any]:
        running = sum(1 for j in self.jobs.values() if j.status == "running")
        return {
            "version": self.version,
            "containers": [
                {
                    "id": c.id,
                    "image": f"ritualnetwork/{c.id}:latest",
                    "description": c.description,
                    "external": c.external,
                }
                for c in self.containers.values()
            ],
            "pending": {"offchain": running, "onchain": 0},
            "chain": {"enabled": False, "address": ""},
        }

    async def _create(self, ip: str, body: Any) -> FakeResponse:
        job = self._admit(ip, body)
        task = asyncio.create_task(self._run_job(job, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return FakeResponse.json({"id": job.id})

    def _results(self, ip: str, query: dict[str, str]) -> FakeResponse:
        job_id = query.get("id")
        if job_id is None:
            pending = query.get("pending")
            ids = [
                j.id
                for (owner, _), j in self.jobs.items()
                if owner == ip
                and (pending is None or (j.status == "running") == (pending == "true"))
            ]
            return FakeResponse.json(ids)
        job = self.jobs.get((ip, job_id))
        intermediate = query.get("intermediate") == "true"
        return FakeResponse.json([job.to_json(intermediate)] if job else [])

    async def _batch(self, ip: str, body: Any) -> FakeResponse:
        if not isinstance(body, list):
            return FakeResponse.json({"error": "Expected a list"}, 400)
        out: list[dict[str, Any]] = []
        for item in body:
            try:
                created = await self._create(ip, item)
            except _Refused as exc:
                out.append({"error": exc.message, "params": exc.params or {}})
            else:
                out.append({"id": created.body.decode().split('"')[3]})
        return FakeResponse.json(out)

    async def _stream(self, ip: str, body: Any) -> FakeResponse:
        if isinstance(body, dict) and "subscription" in body:
            raise _Refused("Streaming only supported for OffchainJob requests.")
        job = self._admit(ip, body)
        spec = self.containers[body["containers"][0]]
        return FakeResponse.streaming(
            self._stream_job(job, spec, body), headers={"content-type": "application/octet-stream"}
        )

    # -- jobs ---------------------------------------------------------------------------------

    def _admit(self, ip: str, body: Any) -> _Job:
        """The guardian: refuse what this node will not run, with the node's messages."""
        if not isinstance(body, dict):
            raise ValueError("body is not an object")
        if "subscription" in body:
            raise _Refused("Chain not enabled")
        containers = body.get("containers") or []
        if not containers:
            raise _Refused("No containers specified")
        for cid in containers:
            if cid not in self.containers:
                raise _Refused("Container not supported", {"container": cid})
        first = self.containers[containers[0]]
        if not first.external:
            raise _Refused("First container must be external", {"first_container": first.id})
        if body.get("requires_proof") and not self.containers[containers[-1]].generates_proofs:
            raise _Refused("Container does not generate proof", {"container": containers[-1]})
        for cid in containers:
            allowed = self.containers[cid].allowed_ips
            if allowed and ip not in allowed:
                raise _Refused(
                    "Container not allowed for address", {"container": cid, "address": ip}
                )
        job = _Job(str(uuid.uuid4()), ip)
        self.jobs[(ip, job.id)] = job
        return job

    async def _run_job(self, job: _Job, body: dict[str, Any]) -> None:
        data: Any = body.get("data", {})
        try:
            await asyncio.sleep(self.job_delay_s)
            async with httpx.AsyncClient(timeout=180, trust_env=False) as client:
                for cid in body["containers"]:
                    payload = {
                        "source": OFFCHAIN,
                        "destination": OFFCHAIN,
                        "data": data,
                        "requires_proof": bool(body.get("requires_proof")),
                    }
                    response = await client.post(
                        self.containers[cid].url + "/service_output", json=payload
                    )
                    try:
                        output = response.json()
                    except ValueError:
                        raise _ContainerError(cid, response.text) from None
                    if response.status_code >= 400:
                        raise _ContainerError(cid, str(output))
                    job.intermediate.append(output)
                    data = output
            job.result, job.status = (
                {"container": body["containers"][-1], "output": data},
                "success",
            )
        except _ContainerError as exc:
            job.result, job.status = {"container": exc.container, "error": exc.text}, "failed"
        except httpx.HTTPError as exc:
            job.result = {"container": body["containers"][0], "error": str(exc)}
            job.status = "failed"

    async def _stream_job(
        self, job: _Job, spec: ContainerSpec, body: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        yield f"{job.id}\n".encode()
        parts: list[str] = []
        payload = {"source": OFFCHAIN, "destination": STREAM, "data": body.get("data", {})}
        url = spec.url + "/service_output"
        async with (
            httpx.AsyncClient(timeout=60, trust_env=False) as client,
            client.stream("POST", url, json=payload) as resp,
        ):
            async for piece in resp.aiter_bytes():
                parts.append(piece.decode("utf-8", "replace"))
                yield piece
        job.result = {"container": spec.id, "output": {"output": "".join(parts)}}
        job.status = "success"

    def _limited(self) -> FakeResponse | None:
        limit, period = self.rate_limit
        now = time.monotonic()
        while self._hits and self._hits[0] <= now - period:
            self._hits.popleft()
        if len(self._hits) >= limit:
            wait = max(1, int(self._hits[0] + period - now + 0.999))
            headers = {"retry-after": str(wait), "ratelimit-limit": str(limit)}
            return FakeResponse.text("Too Many Requests", 429, headers)
        self._hits.append(now)
        return None


class _ContainerError(Exception):
    def __init__(self, container: str, text: str) -> None:
        super().__init__(text)
        self.container = container
        self.text = text


def _client_ip(request: FakeRequest) -> str:
    client = getattr(request, "client", None)
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return str(forwarded).split(",")[0].strip()
    if isinstance(client, tuple) and client:
        return str(client[0])
    return "127.0.0.1"
