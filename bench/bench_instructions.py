"""Instructions per call, counted by valgrind: figures that a noisy machine does not move.

Server CPU per request swings by ±20% between runs on a busy 2-core VM, which hides a change
of a few percent. The number of instructions a piece of work executes hardly moves at all. This
script counts them with valgrind's cachegrind (Debian package ``valgrind``) for:

- ``none`` / ``receipt``: ``Gateway.ainfer`` against a backend in the same process that answers
  at once (``bench_core.InstantBackend``), 64 calls in flight, intent built per call;
- ``writer``: writing receipts alone (fields checked and encoded, Ed25519, row, insert, commit,
  seals) through ``ReceiptWriter.submit``, 64 receipts per group; a tree from before the
  writer appends them one by one (``Ledger.append``);
- ``sign``: one Ed25519 signature of a 1,250-byte body, the floor of a signed receipt.

Each figure is ``(count at N2 - count at N1) / (N2 - N1)``: imports and start-up cancel out.
With ``--baseline-pythonpath`` the same is counted for another tree (``bench/tree_at.py``) and
the ratio is printed.

    python bench/bench_instructions.py [--baseline-pythonpath /tmp/pre13] [--kinds none receipt]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KINDS = ("none", "receipt", "writer", "sign")
SIZES = {"none": (640, 1920), "receipt": (640, 1920), "writer": (640, 1920), "sign": (200, 1200)}


def instructions(stderr: str) -> int:
    """The total from cachegrind's summary line (``==123== I refs:      1,234,567``)."""
    found = re.search(r"I\s+refs:\s+([\d,]+)", stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def per_call(counts: dict[int, int]) -> float:
    """Instructions per call from the counts of two run lengths: start-up cancels out."""
    (n1, c1), (n2, c2) = sorted(counts.items())
    return (c2 - c1) / (n2 - n1)


def count(kind: str, calls: int, pythonpath: str | None) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    args = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
    args += [sys.executable, __file__, "--child", kind, str(calls)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} x{calls} failed:\n{done.stderr[-2000:]}")
    return instructions(done.stderr)


# -- the work counted (run in the child, under valgrind) -------------------------------------


def run_child(kind: str, calls: int) -> None:
    if kind == "sign":
        from intentmesh.receipts import SigningKey

        key, body = SigningKey.generate(), b"x" * 1250
        for _ in range(calls):
            key.sign(body)
    elif kind == "writer":
        _writer(calls)
    else:
        asyncio.run(_ainfer(kind, calls))


def _writer(calls: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_receipts import FIELDS

    from intentmesh import receipts

    with tempfile.TemporaryDirectory() as tmp:
        ledger, key = receipts.Ledger(Path(tmp) / "ledger.sqlite3"), receipts.SigningKey.generate()
        if not hasattr(receipts, "ReceiptWriter"):  # a tree from before it: one append each
            for _ in range(calls):
                ledger.append(FIELDS, key)
            return
        writer = receipts.ReceiptWriter(ledger, key)
        for _ in range(calls // 64):
            for future in [writer.submit(FIELDS) for _ in range(64)]:
                future.result()
        writer.close()


async def _ainfer(level: str, calls: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_core import MODEL, InstantBackend, many_backends_config

    from intentmesh import Gateway, Intent
    from intentmesh.config import parse_config

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(many_backends_config("http://127.0.0.1:9", 1, Path(tmp)))
        gw = Gateway(config, backends={"b0": InstantBackend()})  # type: ignore[dict-item]
        messages = [{"role": "user", "content": "hello bench"}]

        async def worker(n: int) -> None:
            for _ in range(n):
                await gw.ainfer(Intent(model=MODEL, messages=messages, verifiability=level))

        try:
            await asyncio.gather(*[worker(calls // 64) for _ in range(64)])
        finally:
            gw.close()


# -- the report --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-pythonpath", default=None, help="also count this tree")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--child", nargs=2, metavar=("KIND", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = [("this tree", None)]
    if args.baseline_pythonpath:
        trees.append(("baseline", args.baseline_pythonpath))
    print(
        "| work | "
        + " | ".join(name for name, _ in trees)
        + (" | ratio |" if len(trees) > 1 else " |")
    )
    print("|---" * (len(trees) + 1 + (len(trees) > 1)) + "|")
    jobs = [(kind, n, path) for kind in args.kinds for _, path in trees for n in SIZES[kind]]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # the counts do not mind company
        counted = dict(zip(jobs, pool.map(lambda job: count(*job), jobs), strict=True))
    for kind in args.kinds:
        figures = [per_call({n: counted[kind, n, path] for n in SIZES[kind]}) for _, path in trees]
        row = f"| {kind} | " + " | ".join(f"{f / 1000:,.0f}k" for f in figures)
        row += f" | {figures[0] / figures[1]:.3f} |" if len(figures) > 1 else " |"
        print(row)


if __name__ == "__main__":
    main()
