"""Gateway cost and throughput: direct vs ``intentmesh serve`` vs LiteLLM's proxy.

    python bench/bench_gateway.py [--quick] [--seconds 10] [--workers 1] [--rounds 1]
                                  [--litellm-venv /tmp/litellm-proxy-venv]

One fake OpenAI-compatible upstream runs in its own process (``FakeOpenAIProvider``, no added
latency); the gateway (and LiteLLM's proxy, when its venv exists) run in theirs. So does a bare
proxy on the gateway's serving stack (``bare_proxy.py``: uvicorn, httptools, uvloop, the lean
client, no gateway logic): the floor under the ``intentmesh serve`` rows.

**Server CPU per request** (the headline): a fixed-length load run (``--seconds``) at
concurrency 64, with ``wrk`` as the load generator when it is installed (else the aiohttp
load generator below, in its own process); the user + system CPU of the server process and all
its descendants (``/proc``) over the run, divided by the requests served. Stable on a noisy
machine where percentiles are not. Beside it: req/s and p50/p99 of that run.

``--rounds N`` serves each tree and level N times, the trees in alternating order (with
``--baseline-pythonpath``), and reports the run with the median CPU per request: on a noisy
machine one run can move by 20%.

Then a closed-loop latency sweep at concurrency 1, 64 and 256 (``--sweep``): "added" is the
gateway's percentile minus the direct call's at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

MODEL = "llama-3.1-8b-instruct"
UPSTREAM_MODEL = "fake-llama"
BENCH_KEY = "sk-bench-" + "0" * 32  # LiteLLM's proxy refuses to start without a master key
CONCURRENCY = (1, 64, 256)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[int]:
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(args, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(ready_url, proc)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def upstream(port: int) -> Any:
    code = (
        "import time; from intentmesh.testing import FakeOpenAIProvider; "
        f"FakeOpenAIProvider([{UPSTREAM_MODEL!r}], record=False, port={port}).start(); "
        "time.sleep(1e9)"
    )
    return process([sys.executable, "-c", code], f"http://127.0.0.1:{port}/health")


def gateway(
    port: int,
    upstream_port: int,
    workdir: Path,
    verifiability: str,
    workers: int = 1,
    pythonpath: str | None = None,
) -> Any:
    config = workdir / f"intentmesh-{verifiability}.toml"
    config.write_text(
        f'[receipts]\nledger = "{workdir / "ledger.db"}"\nkey = "{workdir / "key.pem"}"\n'
        "[[backends]]\n"
        'name = "fake"\n'
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        "[[backends.models]]\n"
        f'name = "{MODEL}"\nid = "{UPSTREAM_MODEL}"\ninput_price = 0.02\noutput_price = 0.05\n'
        f"[server]\naccess_log = false\nworkers = {workers}\n"
        f'defaults = {{ verifiability = "{verifiability}" }}\n'
    )
    code = "from intentmesh.server import serve_main; "
    code += f"serve_main('127.0.0.1', {port}, {str(config)!r})"
    env = {"INTENTMESH_HOME": str(workdir)}
    if pythonpath:  # another intentmesh tree (a baseline) in the same run
        env["PYTHONPATH"] = pythonpath
    return process([sys.executable, "-c", code], f"http://127.0.0.1:{port}/health", env)


BARE = "bare proxy (the same serving stack, no gateway logic)"


def bare_proxy(port: int, upstream_port: int) -> Any:
    """``bench/bare_proxy.py``: uvicorn + the lean client forwarding to the upstream, nothing
    else; the floor the ``intentmesh serve`` rows stand on."""
    script = Path(__file__).with_name("bare_proxy.py")
    base = f"http://127.0.0.1:{upstream_port}/v1"
    args = [sys.executable, str(script), str(port), base, UPSTREAM_MODEL]
    return process(args, f"http://127.0.0.1:{port}/health")


def litellm_proxy(venv: Path, port: int, upstream_port: int, workdir: Path) -> Any:
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{UPSTREAM_MODEL}\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  set_verbose: false\n"
        "  json_logs: false\n"
    )
    args = [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port)]
    env = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_MASTER_KEY": BENCH_KEY,
    }
    return process(args, f"http://127.0.0.1:{port}/health/liveliness", env)


# -- server CPU per request -------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of ``root`` and every live descendant (Linux ``/proc``),
    plus what its reaped children used."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = text.rsplit(")", 1)[1].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1] is the parent pid
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        todo += children.get(pid, [])
    return total / _TICK


_WRK_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""


def cpu_run(url: str, model: str, pid: int, opts: argparse.Namespace) -> dict[str, Any]:
    """A fixed-length load run at concurrency 64; server CPU µs per request beside req/s."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello bench"}]})
    load_in_subprocess(url, model, 8, 200, opts.loadgen_python)  # warm up
    before = tree_cpu_s(pid)
    if shutil.which("wrk"):
        result = _wrk(url, body, opts.seconds)
    else:
        result = load_in_subprocess(url, model, 64, 0, opts.loadgen_python, opts.seconds)
    used = tree_cpu_s(pid) - before
    result["cpu_us_per_request"] = used / max(1, result["requests"]) * 1e6
    return result


def _wrk(url: str, body: str, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(_WRK_LUA % (body, BENCH_KEY))
        script = fh.name
    try:
        out = subprocess.run(
            ["wrk", "-t2", "-c64", f"-d{int(seconds)}s", "--latency", "-s", script, url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        os.unlink(script)
    return _parse_wrk(out)


def _parse_wrk(out: str) -> dict[str, Any]:
    def ms(text: str) -> float:
        value, unit = float(text.rstrip("usmin")), text.lstrip("0123456789.")
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}.get(unit, 1.0)

    found: dict[str, Any] = {"loadgen": "wrk"}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("50%", "99%"):
            found[f"p{parts[0][:-1]}_ms"] = ms(parts[1])
        elif "requests in" in line:
            found["requests"] = int(parts[0])
        elif line.startswith("Requests/sec:"):
            found["rps"] = float(parts[1])
        elif "Non-2xx" in line:
            found["errors"] = int(parts[-1])
    if found.get("errors"):
        raise RuntimeError(f"wrk: {found['errors']} non-2xx responses")
    return found


# -- load generation --------------------------------------------------------------------------


async def run_load(
    url: str, model: str, concurrency: int, n: int, seconds: float = 0.0
) -> dict[str, float]:
    """Closed-loop load: ``concurrency`` workers send ``n`` requests (or as many as fit in
    ``seconds`` when ``n`` is 0); aiohttp when available."""
    body = {"model": model, "messages": [{"role": "user", "content": "hello bench"}]}
    try:
        import aiohttp
    except ImportError:
        post = await _httpx_poster(url, body, concurrency)
    else:
        post = await _aiohttp_poster(aiohttp, url, body, concurrency)
    try:
        for _ in range(min(n, 2 * concurrency, 200)):  # warm connections and caches
            await post()
        samples: list[float] = []
        queue = iter(range(n)) if n else iter(int, 1)  # endless when timed
        stop_at = time.perf_counter() + seconds if not n else float("inf")

        async def worker() -> None:
            for _ in queue:
                if time.perf_counter() >= stop_at:
                    return
                t0 = time.perf_counter()
                await post()
                samples.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    finally:
        await post.aclose()  # type: ignore[attr-defined]
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "rps": len(samples) / wall,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "requests": len(samples),
        "loadgen": "aiohttp" if _has_aiohttp() else "httpx",
    }


def _has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


_AUTH = {"authorization": f"Bearer {BENCH_KEY}"}


async def _httpx_poster(url: str, body: dict[str, Any], concurrency: int) -> Any:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client = httpx.AsyncClient(limits=limits, timeout=60, trust_env=False)

    async def post() -> None:
        response = await client.post(url, json=body, headers=_AUTH)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")

    post.aclose = client.aclose  # type: ignore[attr-defined]
    return post


async def _aiohttp_poster(aiohttp: Any, url: str, body: dict[str, Any], concurrency: int) -> Any:
    connector = aiohttp.TCPConnector(limit=concurrency)
    session = aiohttp.ClientSession(connector=connector)

    async def post() -> None:
        async with session.post(url, json=body, headers=_AUTH) as response:
            text = await response.read()
            if response.status != 200:
                raise RuntimeError(f"{url}: {response.status} {text[:300]!r}")

    post.aclose = session.close  # type: ignore[attr-defined]
    return post


def load_in_subprocess(
    url: str, model: str, concurrency: int, n: int, python: str, seconds: float = 0.0
) -> Any:
    """Run the load generator in its own process (``python`` may be a venv with aiohttp)."""
    args = [python, __file__, "--load", url, model, str(concurrency), str(n), str(seconds)]
    out = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def loadgen_python(venv: Path) -> str:
    """A python with aiohttp (the LiteLLM venv has it) drives load faster than httpx can."""
    candidate = venv / "bin" / "python"
    if candidate.exists():
        probe = subprocess.run([str(candidate), "-c", "import aiohttp, httpx"], check=False)
        if probe.returncode == 0:
            return str(candidate)
    return sys.executable


def sizes(quick: bool) -> dict[int, int]:
    return {1: 200, 64: 1000, 256: 1500} if quick else {1: 500, 64: 3000, 256: 5000}


def measure(
    name: str, url: str, opts: argparse.Namespace, model: str = MODEL
) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, float]] = {}
    for c, n in sizes(opts.quick).items():
        out[c] = load_in_subprocess(url, model, c, n, opts.loadgen_python)
        print(f"  {name:<22} c={c:<4} {json.dumps({k: round(v, 3) for k, v in out[c].items()})}")
    return out


def report(results: dict[str, dict[int, dict[str, float]]]) -> str:
    floor = results["direct"]
    rows = [
        "| target | concurrency | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_c in results.items():
        for c, r in by_c.items():
            added50 = r["p50_ms"] - floor[c]["p50_ms"]
            added99 = r["p99_ms"] - floor[c]["p99_ms"]
            rows.append(
                f"| {name} | {c} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {added50:+.2f} | {added99:+.2f} |"
            )
    return "\n".join(rows)


def median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median server CPU per request (the lower middle of an even count),
    its row noting every run's figure when there were several."""
    ordered = sorted(results, key=lambda r: float(r["cpu_us_per_request"]))
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    if len(results) > 1:
        chosen["all_cpu_us"] = [round(r["cpu_us_per_request"]) for r in results]
    return chosen


def cpu_report(results: dict[str, dict[str, Any]]) -> str:
    rows = [
        "| target | server CPU µs/request | req/s | p50 ms | p99 ms | requests | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        cpu = r.get("cpu_us_per_request")
        rows.append(
            f"| {name} | {f'{cpu:.0f}' if cpu is not None else '-'} | {r['rps']:.0f} "
            f"| {r.get('p50_ms', float('nan')):.2f} | {r.get('p99_ms', float('nan')):.2f} "
            f"| {r['requests']} | {r['loadgen']} c=64 |"
        )
    every = [f"  {name}: {r['all_cpu_us']}" for name, r in results.items() if "all_cpu_us" in r]
    if every:
        every.insert(0, "\nserver CPU µs/request of every run (the table shows each median run):")
    return "\n".join(rows + every + _against_litellm(results))


def _against_litellm(results: dict[str, dict[str, Any]]) -> list[str]:
    """Each ``intentmesh serve`` row's req/s and CPU per request against LiteLLM's proxy."""
    ref = results.get("litellm proxy")
    if not ref or not ref.get("rps"):
        return []
    lines = ["", "against LiteLLM's proxy (same run, same upstream, c=64):"]
    for name, r in results.items():
        if "intentmesh serve" not in name or name.startswith("baseline"):
            continue
        cpu, ref_cpu = r.get("cpu_us_per_request"), ref.get("cpu_us_per_request")
        cpu_ratio = f", {ref_cpu / cpu:.1f}x less CPU per request" if cpu and ref_cpu else ""
        lines.append(f"  {name}: {r['rps'] / ref['rps']:.1f}x the throughput{cpu_ratio}")
    return lines


def serve_runs(
    args: argparse.Namespace,
    up: int,
    workdir: Path,
    sweep: dict[str, dict[int, dict[str, float]]],
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``intentmesh serve`` (and the baseline tree) at each level, ``--rounds`` times in
    alternating order; the median run of each, by server CPU per request, and the lines of
    :func:`paired_ratios`."""
    trees = [("", None)]
    if args.baseline_pythonpath:
        trees.insert(0, ("baseline ", args.baseline_pythonpath))
    runs: dict[str, list[dict[str, Any]]] = {}
    for level, round_ in itertools.product(("none", "receipt"), range(args.rounds)):
        for label, path in trees if round_ % 2 == 0 else trees[::-1]:
            port = free_port()
            name = f"{label}intentmesh serve ({level}, workers={args.workers})"
            with gateway(port, up, workdir, level, args.workers, path) as pid:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                runs.setdefault(name, []).append(cpu_run(url, MODEL, pid, args))
                print(f"  {name}: {runs[name][-1]}")
                if args.sweep and round_ == 0:
                    sweep[name] = measure(name, url, args)
    return {name: median_run(results) for name, results in runs.items()}, paired_ratios(runs)


def paired_ratios(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """This tree's CPU per request over the baseline tree's, round by round: the two runs of
    a round are served back to back, so a machine that slows down for a while moves both."""
    lines = []
    for name, mine in runs.items():
        theirs = runs.get(f"baseline {name}")
        if name.startswith("baseline") or not theirs:
            continue
        ratios = sorted(
            float(a["cpu_us_per_request"]) / float(b["cpu_us_per_request"])
            for a, b in zip(mine, theirs, strict=False)
        )
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        lines.append(f"  {name} / baseline: median {statistics.median(ratios):.2f} ({shown})")
    if lines:
        lines.insert(0, "server CPU per request against the baseline tree, paired by round:")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per point")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each CPU run")
    parser.add_argument("--workers", type=int, default=1, help="`intentmesh serve` workers")
    parser.add_argument("--sweep", action="store_true", help="also the c=1/64/256 sweep")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="CPU runs per intentmesh tree and level, interleaved; the table shows the median",
    )
    parser.add_argument(
        "--baseline-pythonpath",
        default=None,
        help="also serve an older intentmesh from this import path, interleaved (before/after)",
    )
    parser.add_argument("--litellm-venv", type=Path, default=Path("/tmp/litellm-proxy-venv"))
    parser.add_argument(
        "--load", nargs=5, metavar=("URL", "MODEL", "C", "N", "S"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.load:
        url, model, c, n, secs = args.load
        print(json.dumps(asyncio.run(run_load(url, model, int(c), int(n), float(secs)))))
        return
    args.loadgen_python = loadgen_python(args.litellm_venv)
    print(f"load generator: {'wrk' if shutil.which('wrk') else args.loadgen_python}")
    cpu: dict[str, dict[str, Any]] = {}
    sweep: dict[str, dict[int, dict[str, float]]] = {}
    up = free_port()
    with tempfile.TemporaryDirectory() as tmp, upstream(up) as up_pid:
        workdir = Path(tmp)
        direct = f"http://127.0.0.1:{up}/v1/chat/completions"
        cpu["direct (upstream alone)"] = cpu_run(direct, UPSTREAM_MODEL, up_pid, args)
        print(f"  direct: {cpu['direct (upstream alone)']}")
        if args.sweep:
            sweep["direct"] = measure("direct", direct, args, UPSTREAM_MODEL)
        with bare_proxy(port := free_port(), up) as pid:
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            cpu[BARE] = cpu_run(url, MODEL, pid, args)
            print(f"  bare proxy: {cpu[BARE]}")
        served, paired = serve_runs(args, up, workdir, sweep)
        cpu.update(served)
        if (args.litellm_venv / "bin" / "litellm").exists():
            port = free_port()
            with litellm_proxy(args.litellm_venv, port, up, workdir) as pid:
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                cpu["litellm proxy"] = cpu_run(url, MODEL, pid, args)
                if args.sweep:
                    sweep["litellm proxy"] = measure("litellm proxy", url, args)
        else:
            print(f"  (LiteLLM proxy not measured: no {args.litellm_venv}/bin/litellm)")
    print(f"\ncpus: {os.cpu_count()}  python: {sys.version.split()[0]}\n")
    print(cpu_report(cpu))
    if paired:
        print("\n" + "\n".join(paired))
    if sweep:
        print()
        print(report(sweep))


if __name__ == "__main__":
    main()
