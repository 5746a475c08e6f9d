"""The benchmarks' tools: ``tree_at.py`` (a commit as an importable same-run baseline) and
``bare_proxy.py`` (the serving stack with no gateway logic, the floor of ``bench_gateway``)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from intentmesh.testing import FakeOpenAIProvider

ROOT = Path(__file__).resolve().parent.parent


def _bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tree_at() -> ModuleType:
    return _bench("tree_at")


def test_head_is_laid_out_as_the_package_it_installs(tmp_path: Path) -> None:
    dest = _tree_at().lay_out("HEAD", tmp_path / "tree")
    code = (
        "import intentmesh, intentmesh.router, intentmesh.adapters, intentmesh.receipts; "
        "print(intentmesh.__file__); print(intentmesh.router.__file__); "
        "print(intentmesh.adapters.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(dest)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [Path(p).parent for p in out] == [
        dest / "intentmesh",
        dest / "intentmesh" / "router",
        dest / "intentmesh" / "adapters",
    ]
    committed = subprocess.run(
        ["git", "-C", str(ROOT), "show", "HEAD:router/_index.py"], capture_output=True, check=True
    ).stdout
    assert (dest / "intentmesh" / "router" / "_index.py").read_bytes() == committed


def test_an_existing_destination_and_a_pyproject_without_package_dir_are_refused(
    tmp_path: Path,
) -> None:
    tree_at = _tree_at()
    with pytest.raises(SystemExit, match="exists"):
        tree_at.lay_out("HEAD", tmp_path)
    with pytest.raises(SystemExit, match="package-dir"):
        tree_at.package_dirs('[project]\nname = "x"\n')
    assert tree_at.package_dirs(
        '[tool.setuptools]\npackage-dir = { "a" = "src", "a.b" = "b" }\n'
    ) == {"a": "src", "a.b": "b"}


async def test_the_bare_proxy_forwards_a_chat_call_with_the_upstream_model() -> None:
    with FakeOpenAIProvider(["fake-llama"]) as upstream:
        app = _bench("bare_proxy").BareProxy(upstream.base_url, "fake-llama")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            body = {"model": "anything", "messages": [{"role": "user", "content": "hi"}]}
            answer = await client.post("/v1/chat/completions", json=body)
            ready = await client.get("/health")
        await app.pool.close()
    assert answer.status_code == 200
    assert answer.json()["model"] == "fake-llama"
    assert answer.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert ready.json() == {}


def test_the_gateway_bench_pairs_each_round_with_the_baseline_run_beside_it() -> None:
    paired_ratios = _bench("bench_gateway").paired_ratios
    name = "intentmesh serve (none, workers=1)"

    def runs(*cpu: float) -> list[dict[str, float]]:
        return [{"cpu_us_per_request": c} for c in cpu]

    lines = paired_ratios({f"baseline {name}": runs(400, 800, 500), name: runs(100, 400, 150)})
    assert lines[1] == f"  {name} / baseline: median 0.30 (0.25, 0.30, 0.50)"
    assert paired_ratios({name: runs(100)}) == []  # no baseline tree, no ratios


def test_the_instruction_count_bench_reads_valgrind_and_runs_its_work() -> None:
    bench = _bench("bench_instructions")
    assert bench.instructions("==42== \n==42== I   refs:      1,234,567\n") == 1234567
    with pytest.raises(RuntimeError, match="no instruction count"):
        bench.instructions("valgrind: command not found")
    assert bench.per_call({1920: 3_000_000, 640: 1_720_000}) == 1000.0  # start-up cancels
    for kind in bench.KINDS:  # each counted workload runs on this tree (without valgrind here)
        bench.run_child(kind, 64)
