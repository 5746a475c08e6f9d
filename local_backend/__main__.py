"""``python -m intentmesh.local_backend``: serve one model in the foreground.

This is what the lifecycle manager starts as a subprocess; users run ``intentmesh local serve``.
"""

from __future__ import annotations

import argparse
import sys

from intentmesh.errors import IntentmeshError
from intentmesh.local_backend._serve import DEFAULT_HOST, DEFAULT_PORT, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m intentmesh.local_backend")
    parser.add_argument(
        "--model", default=None, help="folder, .gguf file or HF id; default SmolLM2"
    )
    parser.add_argument(
        "--engine", default="auto", choices=["auto", "xllamacpp", "llamacpp", "torch", "vllm"]
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--vllm-python", default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        serve(
            args.model,
            args.engine,
            args.host,
            args.port,
            served_model_name=args.served_model_name,
            vllm_python=args.vllm_python,
            threads=args.threads,
            register=False,  # the manager that started this process keeps the record
        )
    except IntentmeshError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
