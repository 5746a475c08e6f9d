"""Tinfoil: the enclave's SEV-SNP report is fetched from ``/.well-known/tinfoil-attestation``,
its VCEK -> ASK -> ARK chain (from the KDS) checked to a pinned root, its measurement against the
configured released value; each misbehaviour fails over with the check named."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from intentmesh import AllBackendsFailed, Gateway, Intent
from intentmesh.config import parse_config
from intentmesh.errors import AttestationFailed, ConfigurationError

pytest.importorskip("cryptography")

from tls_support import self_signed  # noqa: E402

from intentmesh.adapters._registry import backend_class  # noqa: E402
from intentmesh.adapters.tinfoil import TinfoilBackend  # noqa: E402
from intentmesh.testing.networks import FakeTinfoil  # noqa: E402
from intentmesh.verify._attestation import TdxAttestationVerifier  # noqa: E402
from intentmesh.verify._tinfoil import TinfoilAttestationVerifier  # noqa: E402

MODEL = "llama3-3-70b"
INTENT = Intent(model="llama-70b", prompt="hi", max_tokens=8, verifiability="attested")


def entry(name: str, fake: FakeTinfoil, golden: FakeTinfoil, price: float) -> str:
    roots = ", ".join(f'{k} = "{v}"' for k, v in fake.roots.items())
    return f"""
[[backends]]
name = "{name}"
type = "tinfoil"
base_url = "{fake.base_url}"
retries = 0
verifiability = ["attested"]
[backends.attestation]
kind = "tinfoil"
measurements = ["{golden.measurement.hex()}"]
kds_url = "{fake.url}"
roots = {{ {roots} }}
require_tls_binding = false
[[backends.models]]
name = "llama-70b"
id = "{MODEL}"
input_price = {price}
output_price = {price}
"""


def gateway(tmp_path: Path, fakes: list[tuple[str, FakeTinfoil]], golden: FakeTinfoil) -> Gateway:
    text = f'[receipts]\nledger = "{tmp_path / "l.sqlite3"}"\nkey = "{tmp_path / "k.pem"}"\n'
    text += "\n".join(entry(n, f, golden, 0.1 * (i + 1)) for i, (n, f) in enumerate(fakes))
    backends = {n: TinfoilBackend(n, f.base_url, api_key="tk-test") for n, f in fakes}
    return Gateway(parse_config(text), backends=backends)


def test_an_honest_enclave_answers_with_its_evidence_in_the_receipt(
    start: Callable[..., Any], tmp_path: Path
) -> None:
    fake = start(FakeTinfoil(api_key="tk-test"))
    with gateway(tmp_path, [("tinfoil", fake)], fake) as gw:
        res = gw.infer(INTENT)
    assert res.backend == "tinfoil" and res.text
    block = res.receipt.body["verification"]
    assert block["kind"] == "tinfoil" and block["instance_ids"] == [fake.chip_id.hex()]
    assert block["evidence_digest"].startswith("sha256:")
    assert block["measurements"]["measurement"] == fake.measurement.hex()
    assert block["measurements"]["tls_key_fp"] == fake.tls_key_fp.hex()
    checks = block["checks"]
    assert checks["report_signature"] == "ok" and checks["cert_chain"] == "ok (Genoa)"
    assert checks["measurement"] == "ok" and checks["tls_key"] == "not_checked"
    assert checks["nonce"] == "not_bound"


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("wrong_measurement", "matches no configured value"),
        ("bad_signature", "not signed by the VCEK"),
        ("debug", "allows debugging"),
    ],
)
def test_misbehaviour_is_rejected_and_fails_over(
    start: Callable[..., Any], tmp_path: Path, mode: str, message: str
) -> None:
    bad, good = start(FakeTinfoil(mode=mode)), start(FakeTinfoil())
    good.measurement = bad.measurement  # one released image for both
    with gateway(tmp_path, [("bad", bad), ("good", good)], good) as gw:
        res = gw.infer(INTENT)
        assert res.backend == "good"
        first = res.attempts[0]
        assert first.backend == "bad" and first.error_kind == "attestation_failed"
        assert message in (first.error or "")
    with gateway(tmp_path, [("bad", bad)], good) as gw, pytest.raises(AllBackendsFailed):
        gw.infer(INTENT)


def verifier(fake: FakeTinfoil, **over: Any) -> TinfoilAttestationVerifier:
    options = {
        "kind": "tinfoil",
        "measurements": [fake.measurement.hex()],
        "kds_url": fake.url,
        "roots": fake.roots,
        "require_tls_binding": False,
        **over,
    }
    built = TdxAttestationVerifier.from_config("t", fake.base_url, options)
    assert isinstance(built, TinfoilAttestationVerifier)
    return built


async def attest(v: TinfoilAttestationVerifier) -> Any:
    try:
        return await v.aattest("ab" * 32)
    finally:
        await v.aclose()


def test_a_root_that_is_not_pinned_is_refused(start: Callable[..., Any]) -> None:
    fake = start(FakeTinfoil())
    with pytest.raises(AttestationFailed) as err:
        asyncio.run(attest(verifier(fake, roots=None)))  # AMD's real roots: the fake's is not
    assert err.value.check == "root"


def test_plain_http_cannot_bind_the_tls_key_unless_allowed(start: Callable[..., Any]) -> None:
    fake = start(FakeTinfoil())
    with pytest.raises(AttestationFailed, match="not fetched over TLS") as err:
        asyncio.run(attest(verifier(fake, require_tls_binding=True)))
    assert err.value.check == "tls_key"


def test_the_kds_is_asked_for_the_reports_chip_and_tcb(start: Callable[..., Any]) -> None:
    fake = start(FakeTinfoil())
    v = verifier(fake)

    async def twice() -> Any:
        try:
            await v.aattest("ab" * 32)
            return await v.aattest("cd" * 32)
        finally:
            await v.aclose()

    report = asyncio.run(twice())
    chip = f"/vcek/v1/Genoa/{fake.chip_id.hex()}"
    assert fake.kds_requests == [chip, "/vcek/v1/Genoa/cert_chain"]  # fetched once, then cached
    assert report.nonce == "cd" * 32 and report.checks["freshness"] == "ok"


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match="attestation.measurements"):
        TdxAttestationVerifier.from_config("t", "https://x/v1", {"kind": "tinfoil"})
    with pytest.raises(ConfigurationError, match="attestation.product"):
        TdxAttestationVerifier.from_config(
            "t", "https://x/v1", {"kind": "tinfoil", "measurements": ["00"], "product": "Rome"}
        )


def test_the_registry_builds_a_tinfoil_backend() -> None:
    assert backend_class("tinfoil") is TinfoilBackend


def _serve_tls(document: bytes, cert_pem: Path, key_pem: Path) -> tuple[Any, str]:
    """A loopback HTTPS server answering ``document`` to every GET; (server, url)."""
    import http.server
    import ssl
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_pem, key_pem)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_address[1]}/.well-known/tinfoil-attestation"


@pytest.mark.parametrize("bound", [True, False])
def test_over_tls_the_report_must_bind_the_servers_key(
    start: Callable[..., Any], tmp_path: Path, bound: bool
) -> None:
    import base64
    import gzip
    import json
    import ssl

    import httpx

    from intentmesh.verify._tinfoil import TinfoilPolicy, tls_key_fingerprint

    fake = start(FakeTinfoil())
    cert_pem, key_pem, der = self_signed(tmp_path, "127.0.0.1")
    if bound:
        fake.tls_key_fp = bytes.fromhex(tls_key_fingerprint(der))
    body = base64.b64encode(gzip.compress(fake.report())).decode()
    fmt = "https://tinfoil.sh/predicate/sev-snp-guest/v2"
    server, url = _serve_tls(json.dumps({"format": fmt, "body": body}).encode(), cert_pem, key_pem)
    try:
        policy = TinfoilPolicy(
            kind="tinfoil",
            measurements=[fake.measurement.hex()],
            kds_url=fake.url,
            roots=fake.roots,
        )
        ctx = ssl.create_default_context(cafile=str(cert_pem))
        v = TinfoilAttestationVerifier("t", policy, url, httpx.AsyncClient(verify=ctx, timeout=30))
        if bound:
            assert asyncio.run(attest(v)).checks["tls_key"] == "ok"
        else:
            with pytest.raises(AttestationFailed, match="another TLS key") as err:
                asyncio.run(attest(v))
            assert err.value.check == "tls_key"
    finally:
        server.shutdown()
        server.server_close()
