"""``DemoNetwork``: three fake providers on three "networks", and the intentmesh config for them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from intentmesh._lifecycle import Startable
from intentmesh.testing._openai import FakeOpenAIProvider

__all__ = ["CANONICAL_MODEL", "DEMO_BACKENDS", "DemoBackend", "DemoNetwork"]

CANONICAL_MODEL = "llama-3.1-8b-instruct"


@dataclass(frozen=True, slots=True)
class DemoBackend:
    """One demo provider: who it pretends to be, what it charges, how fast it is."""

    name: str
    network: str
    model_id: str
    input_price: float  # USD per 1M input tokens
    output_price: float  # USD per 1M output tokens
    latency_ms: float  # time to first byte, also written as the config's latency prior
    token_delay_ms: float


DEMO_BACKENDS: tuple[DemoBackend, ...] = (
    # cheap but slow
    DemoBackend("chutes", "bittensor", "unsloth/Llama-3.1-8B-Instruct", 0.02, 0.05, 300, 4),
    # balanced
    DemoBackend("akash", "akash", "meta-llama/Llama-3.1-8B-Instruct", 0.05, 0.10, 120, 2),
    # fast but pricey
    DemoBackend("ionet", "ionet", "llama3.1-8b", 0.12, 0.30, 40, 1),
)


class DemoNetwork(Startable):
    """Start :data:`DEMO_BACKENDS` as fake providers and describe them as intentmesh config.

    ``demo.providers["chutes"]`` is the cheapest: inject a fault there to show failover.
    With ``api_key`` every provider requires it, and the config names ``api_key_env``.
    """

    def __init__(
        self,
        backends: Sequence[DemoBackend] = DEMO_BACKENDS,
        *,
        api_key: str | None = None,
        api_key_env: str = "DEMO_KEY",
        latency_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.backends = {b.name: b for b in backends}
        if len(self.backends) != len(backends):
            raise ValueError("demo backend names must be unique")
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.latency_scale = latency_scale
        self.providers: dict[str, FakeOpenAIProvider] = {
            b.name: FakeOpenAIProvider(
                [b.model_id],
                api_key=api_key,
                latency_ms=b.latency_ms * latency_scale,
                token_delay_ms=b.token_delay_ms * latency_scale,
                owned_by=b.network,
                seed=seed,
            )
            for b in backends
        }

    def start(self) -> Self:
        for provider in self.providers.values():
            provider.start()
        return self

    def stop(self) -> None:
        for provider in self.providers.values():
            provider.stop()

    def env(self) -> dict[str, str]:
        """Environment the config needs (``{api_key_env: api_key}``, or nothing)."""
        return {} if self.api_key is None else {self.api_key_env: self.api_key}

    def config_toml(self) -> str:
        """One ``[[backends]]`` table per provider (they must be running: URLs hold ports).

        ``latency_ms`` is each provider's scaled time to first byte, at least 1 (the config
        requires a positive prior)."""
        return "\n".join(self._backend_toml(b) for b in self.backends.values())

    def write_config(self, path: str | Path) -> Path:
        target = Path(path)
        target.write_text(self.config_toml(), encoding="utf-8")
        return target

    def _backend_toml(self, backend: DemoBackend) -> str:
        lines = [
            "[[backends]]",
            f"name = {_string(backend.name)}",
            'type = "openai"',
            f"network = {_string(backend.network)}",
            f"base_url = {_string(self.providers[backend.name].base_url)}",
        ]
        if self.api_key is not None:
            lines.append(f"api_key_env = {_string(self.api_key_env)}")
        lines += [
            f"latency_ms = {_number(max(backend.latency_ms * self.latency_scale, 1.0))}",
            "[[backends.models]]",
            f"name = {_string(CANONICAL_MODEL)}",
            f"id = {_string(backend.model_id)}",
            f"input_price = {float(backend.input_price)!r}",
            f"output_price = {float(backend.output_price)!r}",
        ]
        return "\n".join(lines) + "\n"


def _string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
