"""Benchmark the local server per engine: startup time, time to first token, tokens/s, memory.

Each engine/model pair is started as a real background server (``LocalServer``), measured over
HTTP with streamed chat requests, then stopped. Examples::

    python bench/bench_local.py          # tiny and SmolLM2 on the engines installed
    python bench/bench_local.py --models tiny --engines torch --concurrency 1 4
    python bench/bench_local.py --engines vllm --vllm-python /work/vllm-venv/bin/python

Prints a Markdown table (one row per engine/model/concurrency).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from intentmesh.local_backend import LocalServer, default_model_path
from intentmesh.local_backend.tiny import create_tiny_model

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


@dataclass
class Row:
    engine: str
    model: str
    concurrency: int
    startup_s: float
    ttft_ms: float
    tokens_per_s: float
    aggregate_tokens_per_s: float
    rss_mb: float


def one_request(base: str, model: str, max_tokens: int, seed: int) -> tuple[float, float, int]:
    """(ttft seconds, decode seconds, completion tokens) of one streamed chat request."""
    body = {"model": model, "messages": PROMPT, "max_tokens": max_tokens, "seed": seed,
            "temperature": 1.0, "stream": True, "stream_options": {"include_usage": True},
            "ignore_eos": True}  # fmt: skip
    started = time.perf_counter()
    first = None
    tokens = 0
    with httpx.stream("POST", base + "/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            if first is None and data["choices"] and data["choices"][0]["delta"].get("content"):
                first = time.perf_counter()
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
    ended = time.perf_counter()
    first = first or ended
    return first - started, ended - first, tokens


def group_rss_mb(pid: int) -> float:
    """Resident memory of the server's whole process group, in MB (Linux)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1024


def measure(engine: str, model: str, path: str, args: argparse.Namespace, port: int) -> list[Row]:
    server = LocalServer(path, engine=engine, port=port, vllm_python=args.vllm_python,
                         start_timeout_s=900)  # fmt: skip
    started = time.perf_counter()
    record = server.ensure_running()
    startup = time.perf_counter() - started
    rows = []
    try:
        one_request(record.base_url, record.model, 8, 0)  # warm-up
        for concurrency in args.concurrency:
            wall = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                seeds = range(args.runs * concurrency)
                results = list(pool.map(
                    lambda s: one_request(record.base_url, record.model, args.max_tokens, s),
                    seeds))  # fmt: skip
            wall = time.perf_counter() - wall
            ttft = statistics.median(r[0] for r in results) * 1000
            rate = statistics.median((r[2] - 1) / r[1] for r in results if r[1] > 0 and r[2] > 1)
            aggregate = sum(r[2] for r in results) / wall
            rows.append(Row(engine, model, concurrency, startup, ttft, rate, aggregate,
                            group_rss_mb(record.pid)))  # fmt: skip
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["torch", "llamacpp"])
    parser.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    parser.add_argument("--vllm-python", default=None)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1])
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tmp = Path(tempfile.mkdtemp(prefix="bench-local-"))
    os.environ.setdefault("INTENTMESH_HOME", str(tmp / "home"))
    paths = {"tiny": str(create_tiny_model(tmp / "tiny")), "smollm2": str(default_model_path())}
    rows: list[Row] = []
    for model in args.models:
        for engine in args.engines:
            if engine == "llamacpp" and (model != "smollm2" or not importlib.util.find_spec(
                    "llama_cpp")):  # fmt: skip
                continue  # llama.cpp reads GGUF files only
            if engine == "vllm" and model == "smollm2":
                continue  # vLLM cannot load GGUF on CPU
            print(f"measuring {engine} / {model} ...", file=sys.stderr, flush=True)
            rows += measure(engine, model, paths[model], args, args.port)
    print("| engine | model | concurrency | startup s | TTFT ms (p50) | tokens/s per request "
          "(p50) | tokens/s total | RSS MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.engine} | {r.model} | {r.concurrency} | {r.startup_s:.1f} | "
              f"{r.ttft_ms:.0f} | {r.tokens_per_s:.0f} | {r.aggregate_tokens_per_s:.0f} | "
              f"{r.rss_mb:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
