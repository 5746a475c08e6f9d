"""A loopback Intel PCCS: serves recorded DCAP collateral over the PCS API v4.

Routes (as Intel's PCS and the PCCS reference server answer them):

* ``GET /sgx/certification/v4/pckcrl?ca=processor|platform&encoding=der``: the CRL (DER),
  header ``SGX-PCK-CRL-Issuer-Chain`` (URL-encoded PEM);
* ``GET /tdx|sgx/certification/v4/tcb?fmspc=<12 hex>``: ``{"tcbInfo": {...}, "signature": hex}``,
  header ``TCB-Info-Issuer-Chain``;
* ``GET /tdx|sgx/certification/v4/qe/identity``: ``{"enclaveIdentity": {...}, "signature"}``,
  header ``SGX-Enclave-Identity-Issuer-Chain``;
* ``GET /sgx/certification/v4/rootcacrl``: the root CA CRL, hex-encoded (PCCS only).

Collateral is given in dcap-qvl's JSON form (``QuoteCollateralV3.to_json()``); the signed
documents are served byte for byte as recorded, so their signatures still verify. The CRLs
are global on a real PCCS: here they are the first collateral's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer

__all__ = ["FakePccs"]


class FakePccs(LoopbackServer):
    """``collaterals``: dcap-qvl collateral JSON objects, looked up by their TCB info's FMSPC."""

    def __init__(self, collaterals: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.by_fmspc = {json.loads(c["tcb_info"])["fmspc"].upper(): c for c in collaterals}
        self.requests: list[str] = []
        self.down = False

    async def handle(self, request: FakeRequest) -> FakeResponse:
        self.requests.append(request.path)
        if self.down:
            return FakeResponse.json({"error": "unavailable"}, 503)
        tee, _, rest = request.path.strip("/").partition("/certification/v4/")
        col = self._pick(request.query.get("fmspc"))
        if col is None:
            return FakeResponse.json({"error": "No cache data for this fmspc"}, 404)
        if tee == "sgx" and rest == "pckcrl":
            chain = {"SGX-PCK-CRL-Issuer-Chain": quote(col["pck_crl_issuer_chain"])}
            return FakeResponse(200, chain, bytes.fromhex(col["pck_crl"]))
        if rest == "tcb":
            return _signed(
                "tcbInfo",
                col["tcb_info"],
                col["tcb_info_signature"],
                {"TCB-Info-Issuer-Chain": quote(col["tcb_info_issuer_chain"])},
            )
        if rest == "qe/identity":
            chain = {"SGX-Enclave-Identity-Issuer-Chain": quote(col["qe_identity_issuer_chain"])}
            return _signed(
                "enclaveIdentity", col["qe_identity"], col["qe_identity_signature"], chain
            )
        if tee == "sgx" and rest == "rootcacrl":
            return FakeResponse.text(col["root_ca_crl"])
        return FakeResponse.json({"error": f"no route {request.path}"}, 404)

    def _pick(self, fmspc: str | None) -> Mapping[str, Any] | None:
        if fmspc is not None:
            return self.by_fmspc.get(fmspc.upper())
        return next(iter(self.by_fmspc.values()), None)


def _signed(key: str, document: str, signature: str, headers: dict[str, str]) -> FakeResponse:
    body = f'{{"{key}":{document},"signature":"{signature}"}}'.encode()
    return FakeResponse(200, {"content-type": "application/json", **headers}, body)
