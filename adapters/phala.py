"""Phala Confidential AI API (RedPill, ``api.redpill.ai``): the dstack vLLM proxy protocol.

The same wire protocol as NEAR AI Cloud (both run the ``vllm-proxy`` of
github.com/nearai/private-ml-sdk): OpenAI-compatible completions, ``GET
/v1/signature/{chat_id}`` with an EIP-191 signature over ``"<request sha256>:<response
sha256>"``, and ``GET /v1/attestation/report?model=&nonce=`` whose TDX REPORTDATA binds the
signing address (right-padded to 32 bytes) and the nonce, with ``nvidia_payload`` for NRAS. So
this adapter is :class:`~intentmesh.adapters.nearai.NearAIBackend` with Phala's defaults; the
attestation ``kind = "phala"`` reads the report (single object or ``all_attestations``). See
docs/networks/phala.md.
"""

from __future__ import annotations

from typing import ClassVar

from intentmesh.adapters.nearai import NearAIBackend
from intentmesh.adapters.openai import OpenAIProfile

__all__ = ["PhalaBackend"]


class PhalaBackend(NearAIBackend):
    """``api.redpill.ai/v1``; ``REDPILL_API_KEY`` holds the key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://api.redpill.ai/v1",
        require_key=True,
    )
