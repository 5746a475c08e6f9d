"""Verifiability beyond the receipt: attestation, consensus and proof verifiers.

The interfaces here (:class:`AttestationVerifier`, :class:`QuoteVerifier`,
:class:`ProofVerifier`, :class:`ProvingBackend`) are where external verification services and
new proof systems plug in; ``docs/verifiability.md`` says what each level proves.
"""

from intentmesh._verifiers import *  # noqa: F403
from intentmesh._verifiers import __all__ as _all

__all__ = list(_all)
