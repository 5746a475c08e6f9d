"""A Ritual Infernet backend that keeps each job's proof, for the ``proof`` level.

Infernet containers that prove their work (``requires_proof: true``) return the proof next to
the output: ``{"output": "...", "proof": {...}, "proof_system": "ezkl", "inputs": [[...]],
"outputs": [[...]]}``. :class:`RitualProofBackend` is :class:`RitualBackend` plus
:meth:`proof_for`, which hands that proof to the gateway's proof verifier.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from intentmesh.adapters.base import Completion
from intentmesh.adapters.ritual import RitualBackend
from intentmesh.verify._proof import ProofBundle

__all__ = ["RitualProofBackend"]

_KEEP = 256


class RitualProofBackend(RitualBackend):
    """Remembers the proof of the last few jobs by job id (= ``Completion.id``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._proofs: OrderedDict[str, ProofBundle] = OrderedDict()

    def parse_result(self, result: Mapping[str, Any]) -> Completion:
        completion = super().parse_result(result)
        inner = result.get("result")
        output = inner.get("output") if isinstance(inner, Mapping) else None
        if isinstance(output, Mapping) and isinstance(output.get("proof"), Mapping):
            self._proofs[completion.id] = ProofBundle(
                system=str(output.get("proof_system") or "ezkl"),
                proof=output["proof"],
                inputs=output.get("inputs") or [],
                outputs=output.get("outputs") or [],
                model=str(output.get("model") or ""),
            )
            while len(self._proofs) > _KEEP:
                self._proofs.popitem(last=False)
        return completion

    def proof_for(self, completion: Completion) -> ProofBundle | None:
        return self._proofs.pop(completion.id, None)
