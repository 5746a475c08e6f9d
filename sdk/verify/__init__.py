"""Verifiability beyond the receipt: attestation, consensus and proof verifiers.

``docs/verifiability.md`` says what each level proves and what it does not. The gateway uses
:class:`LevelRunner`; the verifier interfaces (:class:`AttestationVerifier`,
:class:`QuoteVerifier`, :class:`ProofVerifier`, :class:`ProvingBackend`) are where external
verification services and new proof systems plug in.
"""

from intentmesh.errors import (
    AttestationFailed,
    ConsensusAnswer,
    ConsensusError,
    LevelUnavailable,
    ProofFailed,
    VerificationFailed,
)
from intentmesh.router import ConsensusPlan, ConsensusPolicy
from intentmesh.verify._attestation import (
    AttestationPolicy,
    AttestationReport,
    AttestationVerifier,
    QuoteVerifier,
    TdxAttestationVerifier,
    check_evidence,
)
from intentmesh.verify._levels import LevelRunner
from intentmesh.verify._proof import (
    PROOF_SYSTEMS,
    EzklVerifier,
    ProofBundle,
    ProofReport,
    ProofVerifier,
    ProvingBackend,
    build_proof_verifier,
)
from intentmesh.verify._tdx import TdxQuote, build_tdx_quote, parse_tdx_quote

__all__ = [
    "PROOF_SYSTEMS",
    "AttestationFailed",
    "AttestationPolicy",
    "AttestationReport",
    "AttestationVerifier",
    "ConsensusAnswer",
    "ConsensusError",
    "ConsensusPlan",
    "ConsensusPolicy",
    "EzklVerifier",
    "LevelRunner",
    "LevelUnavailable",
    "ProofBundle",
    "ProofFailed",
    "ProofReport",
    "ProofVerifier",
    "ProvingBackend",
    "QuoteVerifier",
    "TdxAttestationVerifier",
    "TdxQuote",
    "VerificationFailed",
    "build_proof_verifier",
    "build_tdx_quote",
    "check_evidence",
    "parse_tdx_quote",
]
