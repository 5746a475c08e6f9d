"""A clean install must contain every package and data file (the editable install hides misses)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"intentmesh": "sdk", "intentmesh.router": "router", "intentmesh.adapters": "adapters",
           "intentmesh.local_backend": "local_backend"}


def _declared() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["tool"]["setuptools"]["packages"])


def _on_disk() -> set[str]:
    found: set[str] = set()
    for package, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_every_package_folder_is_declared() -> None:
    assert _on_disk() == _declared()


@pytest.mark.slow
def test_wheel_contains_packages_and_data(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    wheel = next(tmp_path.glob("intentmesh-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in _declared():
        assert package.replace(".", "/") + "/__init__.py" in names
    for data in ("intentmesh/py.typed", "intentmesh/data/catalog.toml",
                 "intentmesh/data/reference_prices.toml"):
        assert data in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "intentmesh = intentmesh.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
