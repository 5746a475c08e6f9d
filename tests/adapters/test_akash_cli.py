"""``intentmesh akash sdl`` (the sub-app on its own; the root CLI mounts it as ``akash``)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from intentmesh.cli._akash import app

yaml = pytest.importorskip("yaml")


def test_sdl_command_prints_and_writes(tmp_path) -> None:
    runner = CliRunner()
    shown = runner.invoke(app, ["sdl", "--model", "qwen3-8b", "--gpu", "A100", "--gpus", "2"])
    assert shown.exit_code == 0, shown.output
    sdl = yaml.safe_load(shown.output)
    assert "vllm serve Qwen/Qwen3-8B " in sdl["services"]["vllm"]["args"][0]
    gpu = sdl["profiles"]["compute"]["vllm"]["resources"]["gpu"]
    assert gpu["units"] == 2 and gpu["attributes"]["vendor"]["nvidia"][0]["model"] == "a100"
    target = tmp_path / "deploy.yaml"
    written = runner.invoke(app, ["sdl", "-m", "qwen3-8b", "-o", str(target)])
    assert written.exit_code == 0 and yaml.safe_load(target.read_text()) == yaml.safe_load(
        runner.invoke(app, ["sdl", "-m", "qwen3-8b"]).output
    )
