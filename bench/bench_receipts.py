"""Receipts micro-benchmark: append throughput, per-append latency and verify speed.

    python bench/bench_receipts.py [--n 5000] [--repeat 5]
    PYTHONPATH=/path/to/older/tree python bench/bench_receipts.py   # the same for an older tree

Uses a temporary on-disk ledger (WAL, synchronous=NORMAL) and a receipt shaped like the
gateway's. Prints the best and median of ``--repeat`` runs, since shared machines are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from intentmesh.receipts import Ledger, SigningKey, canonical_json, verify_receipt

FIELDS = {
    "intent_digest": "sha256:" + "a" * 64,
    "request_digest": "sha256:" + "b" * 64,
    "response_digest": "sha256:" + "c" * 64,
    "backend": "openrouter",
    "network": "centralized",
    "endpoint_host": "openrouter.ai",
    "model": "llama-3.1-8b",
    "provider_model": "meta-llama/llama-3.1-8b-instruct",
    "usage": {
        "prompt_tokens": 123,
        "completion_tokens": 456,
        "total_tokens": 579,
        "estimated": False,
    },
    "price": {"input_per_1m": 0.05, "output_per_1m": 0.08, "source": "catalog", "age_s": 3600},
    "cost_usd": 4.263e-05,
    "latency_ms": 812.4,
    "attempts": [
        {
            "backend": "openrouter",
            "network": "centralized",
            "model": "llama-3.1-8b",
            "provider_model": "meta-llama/llama-3.1-8b-instruct",
            "outcome": "ok",
            "error_kind": None,
            "status_code": 200,
            "latency_ms": 812.4,
            "cost_usd": 4.263e-05,
            "retry": 0,
            "hedge": False,
        },
    ],
    "verifiability": "none",
    "cached": False,
    "flags": ["price_stale"],
}


def per_call_us(fn: Callable[[], object], n: int, repeat: int) -> list[float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return runs


def writer_us(ledger: Ledger, key: SigningKey, n: int, repeat: int) -> list[float]:
    """What the background writer does per receipt, in this thread: check and encode the
    fields, sign the row, insert it, 32 rows per transaction (group commit)."""
    groups = max(1, n // 32)

    def run() -> None:
        with ledger._store.writing() as add:  # type: ignore[union-attr]
            for _ in range(32):
                add(ledger.row_builder(FIELDS, key))

    runs = per_call_us(run, groups, repeat)
    return [r / 32 for r in runs]


def seal_us(path: Path, key: SigningKey, repeat: int, batch: int = 1024) -> list[float]:
    """A Merkle seal per receipt it covers: ``batch`` receipts written by this ledger object,
    then one seal, timed alone."""
    runs = []
    with Ledger(path, batch_size=batch) as ledger:
        for _ in range(repeat):
            with ledger._store.writing() as add:  # type: ignore[union-attr]
                for _ in range(batch):
                    add(ledger.row_builder(FIELDS, key))
            start = time.perf_counter()
            ledger.seal(key)
            runs.append((time.perf_counter() - start) / batch * 1e6)
    return runs


def show(label: str, runs: list[float]) -> None:
    best, median = min(runs), statistics.median(runs)
    print(f"{label:<28} best {best:8.1f} µs  median {median:8.1f} µs  ({1e6 / best:,.0f}/s best)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    key = SigningKey.generate()
    body = canonical_json(FIELDS)
    print(f"receipt body ~{len(body) + 300} bytes of canonical JSON")
    show("canonical_json(fields)", per_call_us(lambda: canonical_json(FIELDS), args.n, args.repeat))
    show("Ed25519 sign", per_call_us(lambda: key.sign(body), args.n, args.repeat))
    with tempfile.TemporaryDirectory() as tmp, Ledger(Path(tmp) / "bench.sqlite3") as ledger:
        for _ in range(100):
            ledger.append(FIELDS, key)
        show("Ledger.append", per_call_us(lambda: ledger.append(FIELDS, key), args.n, args.repeat))
        show("writer, per receipt", writer_us(ledger, key, args.n, args.repeat))
        show("seal, per receipt (1,024)", seal_us(Path(tmp) / "seal.sqlite3", key, args.repeat))
        receipt = ledger.last()
        assert receipt is not None
        pub = key.public_key_bytes()
        show(
            "verify_receipt", per_call_us(lambda: verify_receipt(receipt, pub), args.n, args.repeat)
        )
        count = len(ledger)
        start = time.perf_counter()
        report = ledger.verify({key.key_id: pub})
        took = time.perf_counter() - start
        print(
            f"Ledger.verify: {report}; {count / took:,.0f} receipts/s "
            f"({took / count * 1e6:.1f} µs each)"
        )


if __name__ == "__main__":
    main()
