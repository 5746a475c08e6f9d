"""Targon (Bittensor SN4) hub API: OpenAI-compatible, with three quirks handled here.

* The hub streams unless told otherwise, so ``stream`` is always sent (the base profile's
  ``send_stream_flag``), and a non-stream answer that still arrives as SSE is assembled.
* ``Content-Type: text/event-stream`` is sent even for JSON bodies; the body decides.
* Out of credits is ``400 "not enough credits"`` (plain text): that is this account's
  problem, not the request's, so it is raised as :class:`PaymentRequired` and fails over.

``/v1/models`` has no prices; configure them per model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

from intentmesh.adapters._http import loads_json
from intentmesh.adapters.base import ChatRequest, Chunk, Completion, Usage
from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile
from intentmesh.errors import InvalidRequest, MalformedResponse, PaymentRequired

__all__ = ["TargonBackend"]

_NO_CREDITS = "not enough credits"


class TargonBackend(OpenAIBackend):
    """``api.targon.com/v1``; ``TARGON_API_KEY`` holds the 32-character key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://api.targon.com/v1",
        require_key=True,
        send_stream_flag=True,
    )

    async def acomplete(self, request: ChatRequest) -> Completion:
        with _credits_are_payment():
            return await super().acomplete(request)

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        with _credits_are_payment():
            async for chunk in super().astream(request):
                yield chunk

    def _read_completion(self, content: bytes, headers: Mapping[str, str]) -> Completion:
        if content.lstrip().startswith(b"data:"):
            return self._assemble(content.decode("utf-8"), headers)
        return super()._read_completion(content, headers)

    def _assemble(self, text: str, headers: Any) -> Completion:
        """One Completion from a whole SSE body (what the hub sends when it streams anyway)."""
        parts: list[str] = []
        finish, usage, model = None, None, ""
        for line in text.splitlines():
            payload = line[5:].strip() if line.startswith("data:") else ""
            if not payload or payload == "[DONE]":
                continue
            chunk = self.parse_chunk(loads_json(payload))
            parts.append(chunk.text)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
            model = chunk.model or model
        if not parts and usage is None:
            raise MalformedResponse("empty event stream", backend=self.name)
        return Completion(
            text="".join(parts),
            finish_reason=finish,
            usage=usage if isinstance(usage, Usage) else None,
            model=model,
            headers=headers,
        )


@contextmanager
def _credits_are_payment() -> Iterator[None]:
    try:
        yield
    except InvalidRequest as exc:
        if exc.status_code == 400 and exc.body.strip().strip('"') == _NO_CREDITS:
            raise PaymentRequired(
                f"HTTP 400: {_NO_CREDITS}",
                backend=exc.backend,
                status_code=400,
                body=exc.body,
                headers=exc.headers,
            ) from exc
        raise
