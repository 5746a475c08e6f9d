"""No package reaches into another package's private modules.

A module whose dotted name has a component starting with ``_`` (``intentmesh.router._executor``)
is private to the package that holds it (``intentmesh.router``); the four source folders are
four packages, so ``intentmesh._catalog`` (sdk/) is private to sdk/ too. Function-level imports
count. Tests are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"sdk": "intentmesh", "router": "intentmesh.router", "adapters": "intentmesh.adapters",
           "local_backend": "intentmesh.local_backend"}


# Known crossings still to be removed ("path imports module"); each is exact, so any new
# crossing fails. None are left.
KNOWN: frozenset[str] = frozenset()


def module_name(path: Path) -> str:
    folder, *rest = path.relative_to(ROOT).with_suffix("").parts
    parts = [FOLDERS[folder], *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def folder_of(module: str) -> str:
    for pkg in ("intentmesh.router", "intentmesh.adapters", "intentmesh.local_backend"):
        if module == pkg or module.startswith(pkg + "."):
            return pkg
    return "intentmesh"


def violations_in(path: Path) -> list[str]:
    importer = module_name(path)
    is_pkg = path.name == "__init__.py"
    base = importer if is_pkg else importer.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                mod = ".".join([*anchor, mod] if mod else anchor)
            private = [a.name for a in node.names if _private(a.name)]
            targets = [mod] + [f"{mod}.{name}" for name in private]
        for target in targets:
            if target.startswith("intentmesh") and crosses(importer, target):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    return found


def _unlined(violation: str) -> str:
    where, _, rest = violation.partition(" ")
    return where.rpartition(":")[0] + " " + rest


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def crosses(importer: str, target: str) -> bool:
    """Whether ``importer`` may not import ``target``: for every private component of
    ``target``, the package above it must hold ``importer`` (sdk/'s top level: the folder)."""
    parts = target.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if not _private(part):
            continue
        scope = parts[:i]
        while len(scope) > 1 and _private(scope[-1]):  # a private module's names: its package
            scope = scope[:-1]
        pkg = ".".join(scope)
        if pkg == "intentmesh":
            inside = folder_of(importer) == "intentmesh"
        else:
            inside = importer == pkg or importer.startswith(pkg + ".")
        if not inside:
            return True
    return False


def source_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_no_cross_package_private_imports() -> None:
    problems = [
        v for path in source_files() for v in violations_in(path) if _unlined(v) not in KNOWN
    ]
    assert not problems, "import these from the package's public __init__:\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize(
    ("importer", "target", "bad"),
    [
        ("intentmesh._gateway", "intentmesh.router._executor", True),
        ("intentmesh.router._streaming", "intentmesh.router._executor", False),
        ("intentmesh.adapters.akash", "intentmesh._catalog", True),
        ("intentmesh.cli._main", "intentmesh._gateway", False),
        ("intentmesh.server._app", "intentmesh.verify._levels", True),
        ("intentmesh._gateway", "intentmesh.router", False),
        ("intentmesh.receipts._ledger", "intentmesh.receipts._receipt._b64", False),
        ("intentmesh.server._app", "intentmesh.receipts._receipt._b64", True),
    ],
)
def test_rule_examples(importer: str, target: str, bad: bool) -> None:
    assert crosses(importer, target) is bad
