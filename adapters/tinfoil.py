"""Tinfoil (``inference.tinfoil.sh``): OpenAI-compatible inference inside attested enclaves.

Protocol (docs.tinfoil.sh; github.com/tinfoilsh/tinfoil-python and tinfoilsh/verifier; see
docs/networks/tinfoil.md): ``POST /v1/chat/completions`` with a Bearer key, the OpenAI wire
format; the enclave publishes its AMD SEV-SNP attestation at
``GET /.well-known/tinfoil-attestation``, checked by the ``kind = "tinfoil"`` attestation
(:mod:`intentmesh.verify._tinfoil`): VCEK -> ASK -> ARK signature chain, the measurement
against the configured released values, the TLS key bound in REPORT_DATA. The answers carry no
per-answer signature, so this adapter is the OpenAI one with Tinfoil's defaults.
"""

from __future__ import annotations

from typing import ClassVar

from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile

__all__ = ["TinfoilBackend"]


class TinfoilBackend(OpenAIBackend):
    """``inference.tinfoil.sh/v1``; ``TINFOIL_API_KEY`` holds the key."""

    default_profile: ClassVar[OpenAIProfile] = OpenAIProfile(
        default_base_url="https://inference.tinfoil.sh/v1",
        require_key=True,
    )
