"""The ``proof`` level: a backend returns a proof of the computation; a verifier checks it.

A proving backend implements :class:`ProvingBackend` (``proof_for(completion)``); a proof
system implements :class:`ProofVerifier`. The one shipped is EZKL (``pip install ezkl``): a
zk-SNARK (Halo2/KZG) that an ONNX model, run on the request's inputs, produced the outputs in
the answer. The verifier also binds the proof to *this* request and answer: the proof's
public inputs must be the request's inputs and its public outputs the answer's outputs.

Config::

    [[backends]]
    name = "ritual"
    verifiability = ["proof"]
    proof = { system = "ezkl", settings = "model/settings.json", vk = "model/vk.key",
              srs = "model/kzg.srs", tolerance = 0.01 }
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol

from intentmesh.adapters.base import ProofBundle
from intentmesh.adapters.base import ProvesCompletions as ProvingBackend
from intentmesh.errors import ConfigurationError, ProofFailed

__all__ = [
    "PROOF_SYSTEMS",
    "EzklVerifier",
    "ProofBundle",
    "ProofReport",
    "ProofVerifier",
    "ProvingBackend",
    "build_proof_verifier",
]

PROOF_SYSTEMS: dict[str, str] = {"ezkl": "intentmesh.verify._proof:EzklVerifier"}
"""Proof system name -> ``"module:Class"``, resolved when a backend uses it."""


@dataclass(frozen=True, slots=True)
class ProofReport:
    """What the verifier established, for the receipt."""

    system: str
    proof_digest: str
    verifying_key_digest: str
    public_inputs_digest: str
    checks: dict[str, str]

    def to_receipt(self) -> dict[str, Any]:
        return {
            "level": "proof",
            "system": self.system,
            "proof_digest": self.proof_digest,
            "verifying_key_digest": self.verifying_key_digest,
            "public_inputs_digest": self.public_inputs_digest,
            "checks": self.checks,
        }


class ProofVerifier(Protocol):
    """Checks one proof; raises :class:`ProofFailed`, or returns a :class:`ProofReport`."""

    system: str

    def verify(self, bundle: ProofBundle, request_inputs: Sequence[Sequence[float]]) -> ProofReport:
        ...


def build_proof_verifier(backend: str, options: Mapping[str, Any]) -> ProofVerifier:
    """The verifier a backend's ``proof`` table names (``system`` plus its own keys)."""
    system = str(options.get("system", ""))
    target = PROOF_SYSTEMS.get(system)
    if target is None:
        known = ", ".join(sorted(PROOF_SYSTEMS))
        raise ConfigurationError(
            f"backend {backend!r}: unknown proof system {system!r}; known: {known}"
        )
    module, _, attr = target.partition(":")
    cls: Any = getattr(import_module(module), attr)
    rest = {k: v for k, v in options.items() if k != "system"}
    try:
        verifier: ProofVerifier = cls(**rest)
    except TypeError as exc:
        raise ConfigurationError(f"backend {backend!r}: proof: {exc}") from None
    return verifier


def _sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


class EzklVerifier:
    """EZKL (Halo2 + KZG) proofs of an ONNX model with public inputs and outputs.

    ``settings``, ``vk`` and ``srs`` are the files from ``ezkl.gen_settings``/``setup`` and
    ``gen_srs``; the proof's rescaled public inputs/outputs must equal the request's inputs
    and the answer's outputs within ``tolerance`` (fixed-point rounding).
    """

    system = "ezkl"

    def __init__(
        self,
        settings: str | os.PathLike[str],
        vk: str | os.PathLike[str],
        srs: str | os.PathLike[str],
        tolerance: float = 0.05,
    ) -> None:
        self.settings, self.vk, self.srs = Path(settings), Path(vk), Path(srs)
        for p in (self.settings, self.vk, self.srs):
            if not p.is_file():
                raise ConfigurationError(f"proof: {p} does not exist")
        self.tolerance = tolerance
        self._vk_digest = _sha256_file(self.vk)

    def verify(self, bundle: ProofBundle, request_inputs: Sequence[Sequence[float]]) -> ProofReport:
        if bundle.system != self.system:
            raise ProofFailed(f"proof: expected an ezkl proof, got {bundle.system!r}")
        public = bundle.proof.get("pretty_public_inputs") or {}
        claimed_in = _floats(public.get("rescaled_inputs"))
        claimed_out = _floats(public.get("rescaled_outputs"))
        if claimed_in is None or claimed_out is None:
            raise ProofFailed("proof: no public inputs/outputs (they must be public)")
        if not _close(claimed_in, request_inputs, self.tolerance):
            raise ProofFailed("proof: its public inputs are not this request's inputs")
        if not _close(claimed_out, bundle.outputs, self.tolerance):
            raise ProofFailed("proof: its public outputs are not the answer's outputs")
        problem = self._snark_problem(bundle.proof)
        if problem is not None:
            raise ProofFailed(f"proof: the SNARK does not verify ({problem})")
        text = json.dumps(bundle.proof, sort_keys=True, separators=(",", ":")).encode()
        public_text = json.dumps([claimed_in, claimed_out], separators=(",", ":")).encode()
        return ProofReport(
            self.system,
            "sha256:" + hashlib.sha256(text).hexdigest(),
            self._vk_digest,
            "sha256:" + hashlib.sha256(public_text).hexdigest(),
            {"snark": "ok", "inputs_bound": "ok", "outputs_bound": "ok"},
        )

    def _snark_problem(self, proof: Mapping[str, Any]) -> str | None:
        try:
            ezkl: Any = import_module("ezkl")
        except ImportError as exc:
            raise ConfigurationError(
                "the ezkl proof verifier needs the ezkl package: pip install ezkl"
            ) from exc
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "proof.json"
            path.write_text(json.dumps(proof))
            try:
                ok = ezkl.verify(str(path), str(self.settings), str(self.vk), str(self.srs))
            except Exception as exc:  # ezkl raises RuntimeError/ValueError for bad proofs
                return str(exc).removeprefix("Failed to run verify: ")[:200]
        return None if ok else "verify returned false"


@functools.cache
def _proof_thread() -> ThreadPoolExecutor:
    """One thread for proof systems: EZKL's native code misbehaved when driven from many."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="intentmesh-proof")


async def averify_proof(
    verifier: ProofVerifier, bundle: ProofBundle, request_inputs: Sequence[Sequence[float]]
) -> ProofReport:
    """Run a (CPU-bound) verifier off the event loop, on the one proof thread."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_proof_thread(), verifier.verify, bundle, request_inputs)


def _floats(value: Any) -> list[list[float]] | None:
    if not isinstance(value, list):
        return None
    try:
        return [[float(x) for x in row] for row in value]
    except (TypeError, ValueError):
        return None


def _close(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], tol: float) -> bool:
    flat_a = [x for row in a for x in row]
    flat_b = [float(x) for row in b for x in row]
    return len(flat_a) == len(flat_b) and all(
        math.isclose(x, y, abs_tol=tol) for x, y in zip(flat_a, flat_b, strict=True)
    )


def request_inputs(messages: Sequence[Mapping[str, Any]]) -> list[list[float]]:
    """The numeric inputs of a proof request: the last user message holds JSON like
    ``{"input": [[0.2, 0.4, -0.6]]}`` (or the bare list)."""
    users = [m for m in messages if m.get("role") == "user"]
    content = users[-1].get("content") if users else None
    try:
        data = json.loads(content) if isinstance(content, str) else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = data.get("input") or data.get("input_data")
    rows = _floats(data if data and isinstance(data[0], list) else [data] if data else None)
    if rows is None:
        raise ProofFailed("proof: the request has no numeric model input to prove")
    return rows
