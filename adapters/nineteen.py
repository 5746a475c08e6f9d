"""Nineteen (Bittensor SN19, Rayon Labs): a plain OpenAI-compatible profile.

``https://api.nineteen.ai/v1`` with ``Authorization: Bearer``. No price endpoint is known, so
prices come from config. Whether the service is still live is unconfirmed; keep it optional.
"""

from __future__ import annotations

from typing import ClassVar

from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile

__all__ = ["NineteenBackend"]


class NineteenBackend(OpenAIBackend):
    """``api.nineteen.ai/v1``; ``NINETEEN_API_KEY`` holds the key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://api.nineteen.ai/v1",
        require_key=True,
    )
