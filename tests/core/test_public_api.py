from __future__ import annotations

import subprocess
import sys

import intentmesh
import intentmesh.adapters
import intentmesh.router


def test_all_is_exactly_the_public_surface() -> None:
    for module in (intentmesh, intentmesh.router, intentmesh.adapters):
        exported = set(module.__all__)
        for name in exported:
            assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"
    names = {n for n in vars(intentmesh) if not n.startswith("_")}
    submodules = {
        "adapters",
        "router",
        "config",
        "errors",
        "testing",
        "receipts",
        "cli",
        "server",
        "integrations",
        "local_backend",
        "annotations",
        "verify",
        "fleet",
        "telemetry",
    }
    assert names - submodules <= set(intentmesh.__all__) | {"TYPE_CHECKING", "Any"}


def test_import_is_light() -> None:
    code = (
        "import sys, intentmesh; heavy = [m for m in ('torch', 'vllm', 'langchain_core', "
        "'litellm', 'transformers', 'starlette', 'uvicorn', 'matplotlib') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_module_level_infer_uses_default_gateway() -> None:
    assert intentmesh.default_gateway() is intentmesh.default_gateway()
