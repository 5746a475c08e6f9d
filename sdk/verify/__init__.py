"""Verifiability beyond the receipt: spot checks, attestation, consensus and proofs.

``docs/verifiability.md`` says what each level proves and what it does not. The gateway uses
:class:`LevelRunner`. Shipped verifiers: TDX evidence (:class:`TdxAttestationVerifier`), Intel
DCAP quote signatures (:class:`DcapQuoteVerifier`, dcap-qvl), NVIDIA GPU evidence
(:class:`NrasVerifier`), EZKL proofs, ``aci/1`` receipt interop
(:func:`export_aci_receipt`, :func:`verify_aci_receipt`). The interfaces
(:class:`AttestationVerifier`, :class:`QuoteVerifier`, :class:`ProofVerifier`,
:class:`ProvingBackend`) are where other verification services and proof systems plug in.
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
from intentmesh.verify._aci import export_aci_receipt, gateway_keyset, verify_aci_receipt
from intentmesh.verify._attestation import (
    AttestationPolicy,
    AttestationReport,
    AttestationVerifier,
    QuoteVerifier,
    TdxAttestationVerifier,
    check_evidence,
)
from intentmesh.verify._dcap import CollateralCache, DcapPolicy, DcapQuoteVerifier
from intentmesh.verify._eth import eth_address, personal_sign_hash, recover_signer
from intentmesh.verify._levels import LevelRunner
from intentmesh.verify._nras import NrasPolicy, NrasVerifier
from intentmesh.verify._proof import (
    PROOF_SYSTEMS,
    EzklVerifier,
    ProofBundle,
    ProofReport,
    ProofVerifier,
    ProvingBackend,
    build_proof_verifier,
)
from intentmesh.verify._ritual import RitualProofBackend
from intentmesh.verify._spot import SpotPlan, SpotPolicy
from intentmesh.verify._tdx import TdxQuote, build_tdx_quote, parse_tdx_quote

__all__ = [
    "PROOF_SYSTEMS",
    "AttestationFailed",
    "AttestationPolicy",
    "AttestationReport",
    "AttestationVerifier",
    "CollateralCache",
    "ConsensusAnswer",
    "ConsensusError",
    "ConsensusPlan",
    "ConsensusPolicy",
    "DcapPolicy",
    "DcapQuoteVerifier",
    "EzklVerifier",
    "LevelRunner",
    "LevelUnavailable",
    "NrasPolicy",
    "NrasVerifier",
    "ProofBundle",
    "ProofFailed",
    "ProofReport",
    "ProofVerifier",
    "ProvingBackend",
    "QuoteVerifier",
    "RitualProofBackend",
    "SpotPlan",
    "SpotPolicy",
    "TdxAttestationVerifier",
    "TdxQuote",
    "VerificationFailed",
    "build_proof_verifier",
    "build_tdx_quote",
    "check_evidence",
    "eth_address",
    "export_aci_receipt",
    "gateway_keyset",
    "parse_tdx_quote",
    "personal_sign_hash",
    "recover_signer",
    "verify_aci_receipt",
]
