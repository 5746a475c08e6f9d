"""The ``[server]`` section of ``intentmesh.toml``: limits, presets and gateway API keys.

The section lives in the same file as the gateway config. :func:`load_configs` reads the file
once and splits it: the rest goes to :class:`~intentmesh.config.GatewayConfig` unchanged.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from intentmesh.config import (
    STATE_URL_ENV,
    GatewayConfig,
    discover_config_path,
    locate,
    parse_config,
)
from intentmesh.errors import ConfigurationError, unreadable, validation_message
from intentmesh.fleet import Limits

__all__ = ["DEFAULT_PRESETS", "KeyConfig", "ServerConfig", "load_configs", "parse_configs"]

DEFAULT_PRESETS: dict[str, dict[str, Any]] = {
    "cheapest": {"optimize": "cost"},
    "fastest": {"optimize": "latency"},
    "balanced": {"optimize": "balanced"},
    "verified": {"verifiability": "attested"},
}


class KeyConfig(BaseModel):
    """One ``[[server.keys]]`` entry: who may call, on what, and for how much.

    The secret comes from ``key_env`` (an environment variable's name) or is matched against
    ``key_sha256`` (its hex SHA-256); ``key`` is for programmatic use only, never in files.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""
    key_env: str | None = None
    key_sha256: str | None = None
    key: str | None = Field(None, repr=False, exclude=True)
    budget_usd: float | None = Field(None, ge=0.0)
    requests_per_min: int | None = Field(None, ge=1)
    tokens_per_min: int | None = Field(None, ge=1)
    usd_per_day: float | None = Field(None, ge=0.0)
    models: list[str] | None = None
    networks: list[str] | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_secret(self) -> KeyConfig:
        given = [k for k in ("key_env", "key_sha256", "key") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of key_env and key_sha256")
        return self

    @property
    def limits(self) -> Limits:
        """The key's budget and rate limits (its account is :attr:`label`)."""
        return Limits(self.budget_usd, self.requests_per_min, self.tokens_per_min, self.usd_per_day)

    @property
    def label(self) -> str:
        """A name safe to log and to use as the budget account (never the secret)."""
        return self.name or self.key_env or (self.digest() or "")[:12]

    def secret(self) -> str | None:
        """The key itself, from ``key`` or its environment variable (None: only a digest)."""
        return self.key or os.environ.get(self.key_env or "") or None

    def digest(self) -> str | None:
        """SHA-256 hex of the secret, or None when its environment variable is unset."""
        if self.key_sha256:
            return self.key_sha256.lower()
        secret = self.secret()
        return hashlib.sha256(secret.encode()).hexdigest() if secret else None


class ServerConfig(BaseModel):
    """``[server]``: where to listen, request limits, defaults, presets and keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_tokens_limit: int = Field(32_768, ge=1)
    default_max_tokens: int = Field(1024, ge=1)
    drain_timeout_s: float = Field(30.0, ge=0.0)
    budget_db: str = ":memory:"
    access_log: bool = True
    defaults: dict[str, Any] = Field(default_factory=dict)
    presets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    keys: list[KeyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> ServerConfig:
        labels = [k.label for k in self.keys]
        if len(set(labels)) != len(labels):
            raise ValueError("keys: each key needs a distinct name")
        fleet = bool((info.context or {}).get("state"))
        shared = self.budget_db == ":memory:" and not fleet
        if self.workers > 1 and shared and any(k.budget_usd is not None for k in self.keys):
            raise ValueError(
                "workers > 1 with key budgets needs budget_db = a file path, or [state] url"
            )
        return self

    def all_presets(self) -> dict[str, dict[str, Any]]:
        return {**DEFAULT_PRESETS, **self.presets}


def parse_configs(text: str, source: str = "<config>") -> tuple[GatewayConfig, ServerConfig]:
    """Split TOML text into the gateway config and the ``[server]`` section."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return parse_config(text, source), ServerConfig()  # raises with the line
    raw = data.pop("server", {})
    if any("key" in k for k in raw.get("keys", []) if isinstance(k, dict)):
        raise ConfigurationError(
            "server.keys: write key_env or key_sha256, never the key itself", source=source
        )
    state = data.get("state")
    url = state.get("url") if isinstance(state, dict) else None
    try:
        server = ServerConfig.model_validate(
            raw, context={"state": bool(url or os.environ.get(STATE_URL_ENV))}
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in ("server", *err["loc"]))
        line = locate(text, ("server", *err["loc"]))
        message = f"{where}: {validation_message(err)}"
        raise ConfigurationError(message, source=source, line=line) from None
    return _gateway_config(data, text, source), server


def load_configs(
    path: str | os.PathLike[str] | None = None,
) -> tuple[GatewayConfig, ServerConfig]:
    """Read a config file (or discover one as ``Gateway()`` does) and split it."""
    found = Path(path) if path is not None else discover_config_path()
    if found is None:
        return parse_config("", "<defaults>"), ServerConfig()
    try:
        text = found.read_text("utf-8")
    except OSError as exc:
        raise ConfigurationError(unreadable(exc), source=str(found)) from None
    return parse_configs(text, str(found))


def _gateway_config(data: dict[str, Any], text: str, source: str) -> GatewayConfig:
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError:
        # Let the core parser report it with its own wording and line numbers.
        stripped = "\n".join(_without_server(text))
        return parse_config(stripped, source)
    return config.model_copy(update={"source": source})


def _without_server(text: str) -> list[str]:
    """The TOML lines outside ``[server]`` tables, with server lines blanked (keeps numbering)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        head = line.strip()
        if head.startswith("["):
            name = head.strip("[] \t").split(".")[0].strip()
            inside = name == "server"
        out.append("" if inside else line)
    return out
