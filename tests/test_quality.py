"""Lint and strict typing are part of the test suite, so the one test command checks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = {"router": "router", "adapters": "adapters", "local_backend": "local_backend"}


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    out = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def _link_tree(dest: Path) -> Path:
    """``intentmesh`` as mypy would see an installed package: sdk/ plus the mapped folders."""
    pkg = dest / "intentmesh"
    pkg.mkdir()
    for entry in (ROOT / "sdk").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for name, folder in SUBPACKAGES.items():
        (pkg / name).symlink_to(ROOT / folder)
    return dest


@pytest.mark.slow
@pytest.mark.timeout(900)  # strict mypy over the whole package takes ~2 min on 2 loaded cores
def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    tree = _link_tree(tmp_path)
    env = {**os.environ, "MYPYPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / ".mypy_cache"), "-p", "intentmesh"],
        cwd=tmp_path, capture_output=True, text=True, env=env,
    )
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
