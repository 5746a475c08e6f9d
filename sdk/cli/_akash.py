"""``intentmesh akash``: deploy a catalog model on Akash with vLLM.

``intentmesh akash sdl --model llama-3.1-8b-instruct --gpu h100`` prints a ready-to-deploy
SDL (or writes it with ``--out``); deploy it with the Akash Console or CLI, then add the lease's
URI as a ``type = "akash-vllm"`` backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(help="Deploy models on Akash (self-hosted vLLM).", no_args_is_help=True)


@app.callback()
def akash() -> None:
    """Deploy models on Akash (self-hosted vLLM)."""


@app.command()
def sdl(
    model: Annotated[str, typer.Option("--model", "-m", help="Catalog name or HF id.")],
    gpu: Annotated[
        str, typer.Option(help="GPU model as Akash names it (h100, a100, ...).")
    ] = "h100",
    gpus: Annotated[int, typer.Option(min=1, help="GPUs (tensor-parallel size).")] = 1,
    image: Annotated[str, typer.Option(help="vLLM image; pin a tag.")] = "vllm/vllm-openai:v0.11.0",
    max_model_len: Annotated[int | None, typer.Option(help="--max-model-len for vLLM.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print an Akash SDL that serves MODEL with vLLM's OpenAI server on port 8000."""
    from intentmesh.adapters.akash import generate_sdl

    text = generate_sdl(
        model, gpu.lower(), gpu_count=gpus, image=image, max_model_len=max_model_len
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, "utf-8")
        typer.echo(f"wrote {out}")
