"""Errors of the verifiability levels; they live in the one tree in :mod:`intentmesh.errors`."""

from intentmesh.errors import (
    AttestationFailed,
    ConsensusAnswer,
    ConsensusError,
    LevelUnavailable,
    ProofFailed,
    VerificationFailed,
)

__all__ = [
    "AttestationFailed",
    "ConsensusAnswer",
    "ConsensusError",
    "LevelUnavailable",
    "ProofFailed",
    "VerificationFailed",
]
