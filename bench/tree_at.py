"""Lay out the ``intentmesh`` package of one commit as an importable tree (a same-run baseline).

    python bench/tree_at.py 37efa16 /tmp/pre13
    python bench/bench_gateway.py --baseline-pythonpath /tmp/pre13 ...   # served beside HEAD
    PYTHONPATH=/tmp/pre13 python bench/bench_core.py ...                 # that commit's SDK

The commit's ``pyproject.toml`` says which top-level folder holds which package
(``[tool.setuptools] package-dir``); each is copied to ``DEST/<package path>``. ``DEST`` must
not exist yet. Nothing is installed: point ``PYTHONPATH`` at ``DEST``.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def package_dirs(pyproject: str) -> dict[str, str]:
    """``{"intentmesh": "sdk", "intentmesh.router": "router", ...}`` from pyproject text."""
    found = tomllib.loads(pyproject).get("tool", {}).get("setuptools", {}).get("package-dir")
    if not isinstance(found, dict) or not found:
        raise SystemExit("that commit's pyproject.toml has no [tool.setuptools] package-dir")
    return {str(k): str(v) for k, v in found.items()}


def lay_out(rev: str, dest: Path, repo: Path = REPO) -> Path:
    """Write the packages of ``rev`` under ``dest`` (which must not exist); returns ``dest``."""
    if dest.exists():
        raise SystemExit(f"{dest} exists; name a new folder")
    show = ["git", "-C", str(repo), "show", f"{rev}:pyproject.toml"]
    dirs = package_dirs(subprocess.run(show, check=True, capture_output=True, text=True).stdout)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", rev], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        # parents first, so a subpackage's folder lands inside its parent's copy
        for package, folder in sorted(dirs.items(), key=lambda item: item[0].count(".")):
            target = dest.joinpath(*package.split("."))
            shutil.copytree(Path(tmp) / folder, target, dirs_exist_ok=True)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="a commit, tag or branch")
    parser.add_argument("dest", type=Path, help="a new folder to put PYTHONPATH at")
    args = parser.parse_args(argv)
    print(lay_out(args.rev, args.dest))


if __name__ == "__main__":
    sys.exit(main())
