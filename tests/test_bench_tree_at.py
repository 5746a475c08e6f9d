"""bench/tree_at.py: one commit's packages laid out as an importable same-run baseline."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tree_at() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tree_at", ROOT / "bench" / "tree_at.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
