"""TOPLOC activation commitments (PyPI ``toploc``) over the final hidden states of an answer.

The committed activations are the last layer's hidden states at the positions that produced
each generated token (positions ``len(prompt) - 1`` to ``len(prompt) + len(answer) - 2``),
computed in one prefill pass over ``prompt + answer[:-1]`` and rounded to bfloat16, committed in
batches of :data:`BATCH` tokens with ``topk`` values each (prompt positions are not committed).
A verifier recomputes the same states with its own copy of the model and checks each batch's
exponent mismatches and mantissa errors against :data:`THRESHOLDS`.

torch and toploc are imported only when a commitment is built or checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from typing import Any

__all__ = ["BATCH", "THRESHOLDS", "ToplocUnavailable", "commit", "topk_for", "verify"]

BATCH = 32
TOPK = 128
THRESHOLDS = {"exp_mismatch_share": 0.3, "mant_err_mean": 10.0, "mant_err_median": 8.0}
"""A batch passes when at most 30 % of its top-k exponents differ and the mean and median
mantissa errors (in bfloat16 ulps) are at most 10 and 8: the TOPLOC paper's bfloat16 bounds."""


class ToplocUnavailable(RuntimeError):
    """The ``toploc`` package is missing or does not load."""


def _toploc() -> Any:
    try:
        toploc: Any = import_module("toploc")  # untyped
    except ImportError as exc:  # also a compiled extension built for another torch
        raise ToplocUnavailable(
            f"TOPLOC commitments need the 'toploc' package ({exc}); install intentmesh[torch]"
        ) from None
    return toploc


def topk_for(n_tokens: int, hidden: int) -> int:
    """The number of committed values per batch: :data:`TOPK`, fewer for tiny batches."""
    smallest = n_tokens % BATCH or min(n_tokens, BATCH)
    return max(1, min(TOPK, smallest * hidden))


def _activations(states: Any) -> list[Any]:
    import torch

    return list(states.to(torch.bfloat16).cpu())


def commit(states: Any) -> list[str]:
    """Base64 proofs of ``states`` (answer tokens x hidden), one per batch of tokens."""
    toploc = _toploc()
    if len(states) == 0:
        return []
    k = topk_for(len(states), states.shape[-1])
    return list(toploc.build_proofs_base64(_activations(states), BATCH, k, skip_prefill=True))


def verify(states: Any, proofs: Sequence[str]) -> dict[str, Any]:
    """The verdict of ``proofs`` against ``states`` recomputed by the verifier."""
    toploc = _toploc()
    expected = -(-len(states) // BATCH)
    if len(proofs) != expected:
        reason = f"{len(proofs)} proofs for {len(states)} tokens; expected {expected}"
        return {"verified": False, "batches": [], "reason": reason}
    if expected == 0:
        return {"verified": True, "batches": [], "reason": "no answer tokens"}
    k = topk_for(len(states), states.shape[-1])
    results = toploc.verify_proofs_base64(
        _activations(states), list(proofs), BATCH, k, skip_prefill=True
    )
    batches = [_batch(r, k) for r in results]
    failed = [i for i, b in enumerate(batches) if not b["passed"]]
    reason = f"batches {failed} outside the thresholds" if failed else "every batch within bounds"
    return {"verified": not failed, "topk": k, "batches": batches, "reason": reason}


def _batch(result: Any, k: int) -> dict[str, Any]:
    mismatches = int(result.exp_mismatches)
    mean, median = float(result.mant_err_mean), float(result.mant_err_median)
    passed = (
        mismatches <= THRESHOLDS["exp_mismatch_share"] * k
        and mean <= THRESHOLDS["mant_err_mean"]
        and median <= THRESHOLDS["mant_err_median"]
    )
    return {"exp_mismatches": mismatches, "mant_err_mean": mean, "mant_err_median": median,
            "passed": passed}  # fmt: skip
