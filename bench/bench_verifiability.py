"""Verifiability benchmark: receipt throughput, 100k-ledger verification, latency per level.

    python bench/bench_verifiability.py [--receipts 100000] [--calls 200]

1. Receipts signed and appended per second to an on-disk ledger (WAL), sequentially and from
   8 concurrent asyncio tasks (each append runs in a worker thread; one shared Ledger).
2. A ledger of ``--receipts`` receipts (sealed in Merkle batches of 1,024): full verification
   (every signature, the chain, every root), one inclusion proof, and checking it alone.
3. ``ainfer`` latency against a loopback fake at ``receipt``, ``attested`` (evidence fetched
   in parallel and checked), and ``consensus`` (k=2); p50 and the added p50 over ``receipt``;
   the levels are interleaved call by call so that load drift hits all alike.
   ``proof`` is reported as the EZKL verify time of one proof when ezkl is installed (the
   proving time belongs to the backend). ``spot`` runs with ``spot_rate = 1`` (every request
   re-executed on a reference fake) and ``0`` (sampling off), to bound the cost.
4. Per piece of evidence (issue 15): one recorded real TDX quote verified with dcap-qvl with
   the collateral cache cold (fetched from a loopback PCCS) and warm; one NRAS token set
   verified with the JWKS cache cold and warm; an ``aci/1`` export + verify of one receipt.

    python bench/bench_verifiability.py --skip-ledger     # sections 3 and 4 only (~20 s)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from intentmesh import Gateway, Intent
from intentmesh.adapters.openai import OpenAIBackend
from intentmesh.config import parse_config
from intentmesh.receipts import Ledger, SigningKey, verify_inclusion
from intentmesh.testing import FakeOpenAIProvider, FakeRequest, FakeResponse
from intentmesh.verify import build_tdx_quote

FIELDS: dict[str, Any] = {
    "intent_digest": "sha256:" + "a" * 64,
    "request_digest": "sha256:" + "b" * 64,
    "response_digest": "sha256:" + "c" * 64,
    "backend": "chutes",
    "network": "bittensor",
    "model": "llama-3.1-8b-instruct",
    "usage": {"prompt_tokens": 123, "completion_tokens": 456, "total_tokens": 579},
    "cost_usd": 4.263e-05,
    "latency_ms": 812.4,
    "verifiability": "receipt",
}


def bench_appends(n: int) -> tuple[float, float]:
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        with Ledger(Path(tmp) / "seq.sqlite3") as ledger:
            t0 = time.perf_counter()
            for i in range(n):
                ledger.append({**FIELDS, "i": i}, key)
            sequential = n / (time.perf_counter() - t0)

        async def concurrent() -> float:
            with Ledger(Path(tmp) / "conc.sqlite3") as shared:

                async def task(w: int) -> None:
                    for i in range(n // 8):
                        await asyncio.to_thread(shared.append, {**FIELDS, "w": w, "i": i}, key)

                t1 = time.perf_counter()
                await asyncio.gather(*(task(w) for w in range(8)))
                rate = (n // 8 * 8) / (time.perf_counter() - t1)
                assert shared.verify(), "concurrent appends broke the chain"
                return rate

        return sequential, asyncio.run(concurrent())


def bench_big_ledger(n: int) -> dict[str, float]:
    key = SigningKey.generate()
    keys = {key.key_id: key.public_key_hex()}
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "big.sqlite3") as ledger:
        t0 = time.perf_counter()
        for i in range(n):
            ledger.append({**FIELDS, "i": i}, key)
        ledger.seal(key)
        build = time.perf_counter() - t0
        t1 = time.perf_counter()
        report = ledger.verify(keys)
        verify = time.perf_counter() - t1
        assert report and report.count == n, str(report)
        rid = ledger.last().id  # type: ignore[union-attr]
        t2 = time.perf_counter()
        proof = ledger.prove(rid)
        prove_ms = (time.perf_counter() - t2) * 1000
        t3 = time.perf_counter()
        assert verify_inclusion(proof.to_json(), key.public_key_hex())
        check_ms = (time.perf_counter() - t3) * 1000
        return {
            "build_s": build,
            "verify_s": verify,
            "verify_per_s": n / verify,
            "batches": len(ledger.checkpoints()),
            "prove_ms": prove_ms,
            "check_ms": check_ms,
            "path_len": len(proof.path),
        }


class _Tee(FakeOpenAIProvider):
    def __init__(self) -> None:
        super().__init__(["fake-llama"])
        self._routes[("GET", "/chutes/c/evidence")] = self._evidence

    async def _evidence(self, request: FakeRequest) -> FakeResponse:
        nonce = request.query["nonce"]
        quote = base64.b64encode(build_tdx_quote(bytes.fromhex(nonce))).decode()
        item = {"instance_id": "i-1", "quote": quote, "timestamp": time.time()}
        return FakeResponse.json({"evidence": [item]})


def _gateway(tmp: Path, providers: list[_Tee]) -> Gateway:
    parts = [f'[receipts]\nledger = "{tmp / "l.sqlite3"}"\nkey = "{tmp / "k.pem"}"\n']
    for i, p in enumerate(providers):
        name = f"b{i}" if i < 2 else "local"  # the third is the spot-check reference
        parts.append(
            f'[[backends]]\nname = "{name}"\nbase_url = "{p.base_url}"\noperator = "op{i}"\n'
            'verifiability = ["attested", "consensus"]\n'
            'attestation = { kind = "chutes", chute_id = "c" }\n'
            '[[backends.models]]\nname = "llama-3.1-8b-instruct"\nid = "fake-llama"\n'
            f"input_price = {0.1 * (i + 1)}\noutput_price = {0.2 * (i + 1)}\n"
        )
    config = parse_config("\n".join(parts))
    built = {e.name: OpenAIBackend(e.name, e.base_url or "") for e in config.backends}
    return Gateway(config, backends=built)


def bench_levels(calls: int) -> dict[str, float]:
    providers = [_Tee(), _Tee(), _Tee()]
    for p in providers:
        p.start()
    out: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            gw = _gateway(Path(tmp), providers)

            def intent(level: str, **extra: Any) -> Intent:
                return Intent(
                    model="llama-3.1-8b-instruct",
                    prompt="hi",
                    max_tokens=8,
                    verifiability=level,
                    **extra,
                )

            # interleaved, one call per level per round, so that load drift on a shared
            # machine hits every level alike
            cases = {
                "none": intent("none"),
                "receipt": intent("receipt"),
                "attested": intent("attested"),
                "consensus": intent("consensus"),
                "spot (rate 1)": intent("spot", spot_rate=1.0),
                "spot (rate 0)": intent("spot", spot_rate=0.0),
            }

            async def all_levels() -> None:
                times: dict[str, list[float]] = {name: [] for name in cases}
                for i in range(calls + 10):
                    for name, it in cases.items():
                        t0 = time.perf_counter()
                        await gw.ainfer(it)
                        if i >= 10:  # warm-up rounds are not counted
                            times[name].append((time.perf_counter() - t0) * 1000)
                out.update({name: statistics.median(t) for name, t in times.items()})
                await gw.aclose()

            asyncio.run(all_levels())
            gw.close()
    finally:
        for p in providers:
            p.stop()
    return out


def bench_proof_verify() -> float | None:
    try:
        import ezkl  # noqa: F401
    except ImportError:
        return None
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "verifiability"))
    from ezkl_support import build_circuit, prove

    from intentmesh.verify import EzklVerifier, ProofBundle

    with tempfile.TemporaryDirectory() as tmp:
        circuit = build_circuit(Path(tmp))
        inputs = [[0.2, 0.4, -0.6]]
        proof, outputs = prove(circuit, inputs)
        verifier = EzklVerifier(circuit.settings, circuit.vk, circuit.srs)
        t0 = time.perf_counter()
        verifier.verify(ProofBundle("ezkl", proof, inputs, outputs), inputs)
        return (time.perf_counter() - t0) * 1000


def _median_ms(fn: Any, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def bench_evidence(n: int = 30) -> dict[str, float]:
    """Per quote (dcap-qvl, collateral cold/warm), per NRAS token set (JWKS cold/warm), and
    per aci/1 export+verify. Cold = the cache emptied before each call (same HTTP client)."""
    import datetime
    import json

    from intentmesh.testing.networks.nras import FakeNras
    from intentmesh.testing.networks.pccs import FakePccs
    from intentmesh.verify import (
        DcapPolicy,
        DcapQuoteVerifier,
        NrasPolicy,
        NrasVerifier,
        export_aci_receipt,
        gateway_keyset,
        verify_aci_receipt,
    )

    data = Path(__file__).resolve().parents[1] / "tests" / "verifiability" / "data" / "dcap"
    quote = (data / "tdx_quote").read_bytes()
    collateral = json.loads((data / "tdx_quote_collateral.json").read_text())
    when = datetime.datetime(2025, 7, 1, tzinfo=datetime.UTC).timestamp()
    out: dict[str, float] = {}
    with FakePccs([collateral]) as pccs, FakeNras() as nras:
        nras_policy = NrasPolicy(
            url=f"{nras.url}/v3/attest/gpu",
            jwks_url=f"{nras.url}/.well-known/jwks.json",
            issuer=nras.issuer,
        )
        token = nras.issue("ab" * 32)

        async def go() -> None:
            warm = DcapQuoteVerifier(DcapPolicy(pccs_url=pccs.url), clock=lambda: when)
            await warm.averify_quote(quote, {})
            gpu = NrasVerifier(nras_policy)
            await gpu.averify(token, "ab" * 32)

            async def timed(make: Any) -> float:
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    await make()
                    times.append((time.perf_counter() - t0) * 1000)
                return statistics.median(times)

            async def dcap_cold() -> None:
                warm.collateral.clear()
                await warm.averify_quote(quote, {})

            async def nras_cold() -> None:
                gpu.jwks.clear()
                await gpu.averify(token, "ab" * 32)

            out["dcap_cold_ms"] = await timed(dcap_cold)
            out["dcap_warm_ms"] = await timed(lambda: warm.averify_quote(quote, {}))
            out["nras_cold_ms"] = await timed(nras_cold)
            out["nras_warm_ms"] = await timed(lambda: gpu.averify(token, "ab" * 32))
            await warm.aclose()
            await gpu.aclose()

        asyncio.run(go())
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "a.sqlite3") as ledger:
        receipt = ledger.append({**FIELDS, "attempts": []}, key)
        keyset = gateway_keyset(key.public_key_hex(), key.key_id)
        out["aci_ms"] = _median_ms(
            lambda: verify_aci_receipt(export_aci_receipt(receipt, key), keyset), n
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--receipts", type=int, default=100_000)
    parser.add_argument("--appends", type=int, default=4_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--no-proof", action="store_true")
    parser.add_argument("--skip-ledger", action="store_true", help="only sections 3 and 4")
    args = parser.parse_args()
    if not args.skip_ledger:
        seq, conc = bench_appends(args.appends)
        print(f"appends: {seq:,.0f} receipts/s sequential; {conc:,.0f} receipts/s from 8 tasks")  # noqa: T201
        big = bench_big_ledger(args.receipts)
        print(  # noqa: T201
            f"ledger of {args.receipts:,}: built+sealed in {big['build_s']:.1f} s; verify "
            f"(signatures, chain, {big['batches']:.0f} roots) {big['verify_s']:.2f} s = "
            f"{big['verify_per_s']:,.0f} receipts/s; prove {big['prove_ms']:.2f} ms, check "
            f"proof alone {big['check_ms']:.2f} ms ({big['path_len']:.0f} hashes)"
        )
    levels = bench_levels(args.calls)
    base = levels["receipt"]
    for level, p50 in levels.items():
        added = p50 - base
        print(f"ainfer p50 at {level:<13}: {p50:7.3f} ms (added over receipt: {added:+.3f} ms)")  # noqa: T201
    try:
        ev = bench_evidence()
    except ImportError as exc:
        print(f"evidence: skipped ({exc}; install intentmesh[tee])")  # noqa: T201
    else:
        print(  # noqa: T201
            f"dcap-qvl per quote: cold collateral (PCCS fetch + verify) "
            f"{ev['dcap_cold_ms']:.2f} ms, warm {ev['dcap_warm_ms']:.2f} ms; NRAS per token set "
            f"(overall + 1 GPU): cold JWKS "
            f"{ev['nras_cold_ms']:.2f} ms, warm {ev['nras_warm_ms']:.2f} ms; aci/1 export+verify "
            f"{ev['aci_ms']:.3f} ms"
        )
    if not args.no_proof:
        ms = bench_proof_verify()
        shown = f"{ms:.1f} ms" if ms is not None else "ezkl not installed"
        print(f"proof: EZKL verify of one proof (logrows 12): {shown}")  # noqa: T201


if __name__ == "__main__":
    main()
