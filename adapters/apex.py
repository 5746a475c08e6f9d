"""SN1 Apex (Macrocosmos) validator API: OpenAI-compatible chat on a validator's own server.

The key goes in an ``api-key`` header (not Bearer). The body takes extra fields: ``task``
(``"InferenceTask"``), ``sampling_parameters`` (``max_new_tokens``, ``do_sample``,
``mixture``: mixture-of-miners) and ``seed``. There is no public base URL: each validator
runs its own, so ``base_url`` is required. No price endpoint; configure prices.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from intentmesh.adapters._netkit import split_options
from intentmesh.adapters.base import ChatRequest
from intentmesh.adapters.openai import OpenAIBackend, OpenAIOptions, OpenAIProfile
from intentmesh.config import BackendConfig

__all__ = ["ApexBackend", "ApexOptions"]


class ApexOptions(OpenAIOptions):
    """``[[backends]]`` keys for ``type = "apex"``."""

    task: str = "InferenceTask"
    mixture: bool = False
    do_sample: bool = True
    inference_mode: str | None = Field(None, description="e.g. 'Reasoning-Fast'")


class ApexBackend(OpenAIBackend):
    """A validator's ``/v1/chat/completions``; ``APEX_API_KEY`` holds the validator's key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        auth_header="api-key",
        auth_scheme="",
        require_key=True,
    )
    options: ApexOptions = ApexOptions()

    @classmethod
    def from_config(cls, config: BackendConfig) -> ApexBackend:
        options, base = split_options(config, ApexOptions)
        backend = super().from_config(base)
        assert isinstance(backend, ApexBackend)
        backend.options = options
        return backend

    def build_body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = super().build_body(request, stream)
        sampling: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": self.options.do_sample,
            "mixture": self.options.mixture,
        }
        for key in ("temperature", "top_p"):
            if body.get(key) is not None:
                sampling[key] = body[key]
        if self.options.inference_mode:
            body["inference_mode"] = self.options.inference_mode
        body.setdefault("task", self.options.task)
        body.setdefault("sampling_parameters", sampling)
        return body
