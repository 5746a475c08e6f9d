"""The default local engine against the engine it wraps: tokens/s through intentmesh vs direct.

Baseline: ``xllamacpp.Server.handle_chat_completions`` called in-process (what a user of the
wheel would write). Measured: the same model behind ``intentmesh local`` (``LocalServer``, a
background process, our ASGI app, HTTP on loopback). Both answer the same chat request with
``ignore_eos`` and ``max_tokens`` generated tokens, greedy, on the same thread count; alternated
run by run so machine load hits both alike. Example::

    python bench/bench_xllamacpp.py --max-tokens 64 --runs 5

Prints the median tokens/s of each (generated tokens over the whole request's wall time) and the
ratio intentmesh/direct.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from intentmesh.local_backend import LocalServer, default_model_path
from intentmesh.local_backend._xllamacpp_engine import XLlamaCppEngine, usable_cores

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]


def _body(max_tokens: int) -> dict[str, object]:
    return {"messages": PROMPT, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}


def _direct(engine: XLlamaCppEngine, max_tokens: int) -> float:
    start = time.perf_counter()
    answer = engine.handle("chat", _body(max_tokens), None)
    tokens = answer["usage"]["completion_tokens"]
    assert tokens == max_tokens, answer
    return float(tokens) / (time.perf_counter() - start)


def _through_server(client: httpx.Client, url: str, max_tokens: int) -> float:
    start = time.perf_counter()
    response = client.post(url + "/chat/completions", json=_body(max_tokens))
    tokens = response.json()["usage"]["completion_tokens"]
    assert tokens == max_tokens, response.text
    return float(tokens) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=usable_cores())
    args = parser.parse_args()
    threads = args.threads
    engine = XLlamaCppEngine.load(default_model_path(), threads=threads)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = Path(tempfile.mkdtemp(prefix="bench-xllamacpp-"))
    server = LocalServer(None, engine="xllamacpp", port=port, home=home, threads=threads)
    url = server.ensure_running().base_url
    direct, ours = [], []
    try:
        with httpx.Client(timeout=300, trust_env=False) as client:
            _direct(engine, 8), _through_server(client, url, 8)  # warm both
            for _ in range(args.runs):
                direct.append(_direct(engine, args.max_tokens))
                ours.append(_through_server(client, url, args.max_tokens))
    finally:
        server.stop()
    d, o = statistics.median(direct), statistics.median(ours)
    print(f"threads={threads} max_tokens={args.max_tokens} runs={args.runs}")
    print("| path | tokens/s (median) |\n|---|---|")
    print(f"| xllamacpp direct (in-process) | {d:.1f} |")
    print(f"| intentmesh local server (HTTP) | {o:.1f} |")
    print(f"ratio intentmesh/direct: {o / d:.2f}")


if __name__ == "__main__":
    main()
