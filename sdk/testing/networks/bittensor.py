"""``FakeAxon``: a Bittensor miner's axon that checks Epistula v2 exactly as SN1 miners do.

Checks, in the miner's order (``neurons/miners/epistula_miner/miner.py``): ``Signed-For`` must
be this miner's hotkey (400), the signer must be in the metagraph (401 ``"Signer not in
metagraph"``) with stake ≥ ``min_stake`` (401), the timestamp no older than 8 s and the
signature valid (400 ``"Request is too stale"`` / ``"Signature Mismatch"``). Then it serves
OpenAI chat like any fake provider. :func:`write_snapshot` writes the metagraph file the
adapter's ``SnapshotMetagraph`` reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from intentmesh.adapters.bittensor_native import Hotkey, verify_epistula
from intentmesh.testing._server import FakeRequest, FakeResponse
from intentmesh.testing.networks._base import NetworkFake

__all__ = ["FakeAxon", "write_snapshot"]


class FakeAxon(NetworkFake):
    """One miner. ``stakes`` maps the metagraph's hotkeys (ss58) to their stake."""

    def __init__(
        self,
        hotkey: Hotkey,
        stakes: Mapping[str, float],
        models: Sequence[str] = ("Qwen/Qwen3-8B",),
        *,
        min_stake: float = 10_000.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(models, **kwargs)
        self.hotkey = hotkey
        self.stakes = dict(stakes)
        self.min_stake = min_stake
        self.rejections: list[str] = []

    def check_auth(self, request: FakeRequest) -> FakeResponse | None:
        refusal = self._refusal(request)
        if refusal is None:
            return None
        status, message = refusal
        self.rejections.append(message)
        return self.error(status, message)

    def _refusal(self, request: FakeRequest) -> tuple[int, str] | None:
        signed_by = request.headers.get("epistula-signed-by")
        if request.headers.get("epistula-signed-for") != self.hotkey.ss58_address:
            return 400, "Bad Request, message is not intended for self"
        if signed_by not in self.stakes:
            return 401, "Signer not in metagraph"
        stake = self.stakes[signed_by]
        if stake < self.min_stake:
            return 401, f"Stake below minimum: {stake}"
        error = verify_epistula(request.headers, request.body)
        return (400, error) if error else None


def write_snapshot(
    path: str | os.PathLike[str], netuid: int, axons: Sequence[Mapping[str, Any]]
) -> Path:
    """Write a metagraph snapshot: ``axons`` items have uid, hotkey, ip, port, stake, incentive."""
    file = Path(path)
    file.write_text(json.dumps({"netuid": netuid, "axons": [dict(a) for a in axons]}, indent=2))
    return file
