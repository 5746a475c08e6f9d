"""Helpers shared by the core tests (pytest puts this folder on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

from intentmesh import Gateway

MODEL = "llama-3.1-8b-instruct"


def backend_toml(
    name: str,
    base_url: str,
    *,
    input_price: float,
    output_price: float,
    network: str | None = None,
    model_id: str = "fake-llama",
    retries: int = 1,
    latency_ms: float | None = None,
    extra: str = "",
    timeout_s: float = 5,
    context_length: int | None = None,
) -> str:
    lines = [
        "[[backends]]",
        f'name = "{name}"',
        f'network = "{network or name}"',
        f'base_url = "{base_url}"',
        f"retries = {retries}",
        f"timeout_s = {timeout_s}",
    ]
    if latency_ms is not None:
        lines.append(f"latency_ms = {latency_ms}")
    if extra:
        lines.append(extra)
    lines += [
        "[[backends.models]]",
        f'name = "{MODEL}"',
        f'id = "{model_id}"',
        f"input_price = {input_price}",
        f"output_price = {output_price}",
    ]
    if context_length is not None:
        lines.append(f"context_length = {context_length}")
    return "\n".join(lines) + "\n"


GatewayFactory = Callable[..., Gateway]
