"""Errors of the verifiability levels; they slot into the tree in :mod:`intentmesh.errors`.

    BackendError
    ├── VerificationFailed          a backend's evidence did not check out; failed over
    │   ├── AttestationFailed       attestation: wrong/stale nonce, bad structure, measurement
    │   └── ProofFailed             proof: missing, malformed, or the verifier said no
    └── LevelUnavailable            the backend claims a level it cannot show; failed over
    ExecutionError
    └── ConsensusError              k answers disagreed; ``.answers`` holds each one
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from intentmesh.errors import BackendError, ExecutionError

if TYPE_CHECKING:
    from intentmesh.router import Attempt

__all__ = [
    "AttestationFailed",
    "ConsensusAnswer",
    "ConsensusError",
    "LevelUnavailable",
    "ProofFailed",
    "VerificationFailed",
]


class VerificationFailed(BackendError):
    """The backend answered, but its evidence for the requested level did not verify."""

    check = "verification"

    def __init__(self, message: str, *, backend: str = "", check: str | None = None) -> None:
        super().__init__(message, backend=backend)
        if check is not None:
            self.check = check

    @property
    def kind(self) -> str:
        return "verification_failed"


class AttestationFailed(VerificationFailed):
    """Attestation evidence failed a check (``.check`` names it: ``nonce``, ``freshness``,
    ``structure``, ``instance``, ``measurement``, ``quote_signature``, ``fetch``)."""

    @property
    def kind(self) -> str:
        return "attestation_failed"


class ProofFailed(VerificationFailed):
    """The proof of computation was missing, malformed, for other data, or did not verify."""

    @property
    def kind(self) -> str:
        return "proof_failed"


class LevelUnavailable(BackendError):
    """The backend is configured with a level it has no means to show; never downgraded."""

    @property
    def kind(self) -> str:
        return "level_unavailable"


@dataclass(frozen=True, slots=True)
class ConsensusAnswer:
    """One panel member's answer, as carried by :class:`ConsensusError`."""

    backend: str
    operator: str
    text: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "operator": self.operator,
            "text": self.text,
            "similarity": self.similarity,
        }


class ConsensusError(ExecutionError):
    """The k independent answers did not agree; no answer is returned.

    ``answers`` lists every backend's answer (with its similarity to the first), ``dissenters``
    the backends that were penalised, ``threshold`` and ``comparison`` the rule applied.
    """

    def __init__(
        self,
        answers: Sequence[ConsensusAnswer],
        *,
        dissenters: Sequence[str],
        comparison: str,
        threshold: float,
        attempts: Sequence[Attempt] = (),
    ) -> None:
        shown = "; ".join(f"{a.backend}: {a.text[:60]!r} ({a.similarity:.2f})" for a in answers)
        super().__init__(
            f"consensus failed: {len(answers)} backends disagree under {comparison} comparison "
            f"(threshold {threshold}): {shown}",
            attempts,
        )
        self.answers = list(answers)
        self.dissenters = list(dissenters)
        self.comparison = comparison
        self.threshold = threshold
