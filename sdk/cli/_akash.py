"""``intentmesh akash``: deploy a catalog model on Akash with vLLM.

``intentmesh akash sdl --model llama-3.1-8b-instruct --gpu h100`` prints a ready-to-deploy
SDL (or writes it with ``--out``); deploy it with the Akash Console or CLI, then add the lease's
URI as a ``type = "akash-vllm"`` backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer

from intentmesh._catalog import default_catalog

__all__ = ["app", "generate_sdl"]

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
    text = generate_sdl(
        model, gpu.lower(), gpu_count=gpus, image=image, max_model_len=max_model_len
    )
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, "utf-8")
        typer.echo(f"wrote {out}")


# -- SDL --------------------------------------------------------------------------------------

_GPU_RAM = {"h100": "80Gi", "h200": "141Gi", "a100": "80Gi", "l40s": "48Gi", "a6000": "48Gi"}


def generate_sdl(
    model: str,
    gpu: str = "h100",
    *,
    gpu_count: int = 1,
    image: str = "vllm/vllm-openai:v0.11.0",
    cpu_per_gpu: int = 8,
    memory_per_gpu_gi: int = 64,
    storage_gi: int = 200,
    max_model_len: int | None = None,
    bid_amount: int = 1_000_000,
    bid_denom: str = "uakt",
) -> str:
    """An Akash SDL (YAML) that serves ``model`` with vLLM's OpenAI server on port 8000.

    ``model`` is a catalog name or a Hugging Face id; the catalog name is also served as an
    alias. Secrets are left as ``${VLLM_API_KEY}``/``${HF_TOKEN}`` for you to fill in.
    """
    catalog = default_catalog()
    canonical = catalog.canonical(model)
    entry = catalog.models.get(canonical) if canonical else None
    hf_id = model if "/" in model or entry is None else _hf_id(entry.aliases, model)
    names = [hf_id] + ([canonical] if canonical and canonical != hf_id else [])
    serve = ["vllm", "serve", hf_id, "--host", "0.0.0.0", "--port", "8000"]
    serve += ["--served-model-name", *names, "--tensor-parallel-size", str(gpu_count)]
    if max_model_len:
        serve += ["--max-model-len", str(max_model_len)]
    gpu_attr = {"model": gpu.lower(), **({"ram": _GPU_RAM[gpu]} if gpu in _GPU_RAM else {})}
    q = json.dumps
    return "\n".join(
        [
            'version: "2.0"',
            "services:",
            "  vllm:",
            f"    image: {q(image)}",
            "    expose:",
            "      - port: 8000",
            "        as: 8000",
            "        to:",
            "          - global: true",
            '    command: ["bash", "-c"]',
            "    args:",
            f"      - {q(' '.join(serve))}",
            "    env:",
            '      - "VLLM_API_KEY=${VLLM_API_KEY}"',
            '      - "HF_TOKEN=${HF_TOKEN}"',
            "    params:",
            "      storage:",
            "        shm:",
            "          mount: /dev/shm",
            "profiles:",
            "  compute:",
            "    vllm:",
            "      resources:",
            f"        cpu: {{units: {cpu_per_gpu * gpu_count}}}",
            f"        memory: {{size: {memory_per_gpu_gi * gpu_count}Gi}}",
            "        storage:",
            f"          - size: {storage_gi}Gi",
            "          - name: shm",
            "            size: 16Gi",
            "            attributes: {class: ram, persistent: false}",
            "        gpu:",
            f"          units: {gpu_count}",
            "          attributes:",
            "            vendor:",
            "              nvidia:",
            f"                - {q(gpu_attr)}",
            "  placement:",
            "    dcloud:",
            "      pricing:",
            f"        vllm: {{denom: {bid_denom}, amount: {bid_amount}}}",
            "deployment:",
            "  vllm:",
            "    dcloud: {profile: vllm, count: 1}",
            "",
        ]
    )


def _hf_id(aliases: Iterable[str], fallback: str) -> str:
    return next((a for a in aliases if "/" in a), fallback)
