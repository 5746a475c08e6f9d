"""Gateway configuration: the TOML file format, its validation, and where it is found.

Lookup order for ``Gateway()``: ``$INTENTMESH_CONFIG``, ``./intentmesh.toml``, then
``intentmesh.toml`` in the user config directory. Errors name the file and line.
"""

from __future__ import annotations

import builtins
import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from intentmesh.errors import ConfigurationError, unreadable, validation_message

__all__ = [
    "BackendConfig",
    "CatalogEntry",
    "GatewayConfig",
    "LimitConfig",
    "ModelEntry",
    "OtelConfig",
    "ReceiptsConfig",
    "RoutingConfig",
    "StateConfig",
    "discover_config_path",
    "load_config",
    "parse_config",
]

OptionsT = TypeVar("OptionsT", bound=BaseModel)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_CREDENTIAL = re.compile(r"auth|key|token|secret|cookie|signature", re.IGNORECASE)
_SIGNING_KEY_ENV = "INTENTMESH_SIGNING_KEY"  # receipts' default signer (intentmesh._keys.KEY_ENV)


class ModelEntry(BaseModel):
    """One model a backend serves: canonical ``name``, the backend's own ``id``, prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    id: str | None = None
    input_price: float = Field(0.0, ge=0.0, description="USD per 1M input tokens")
    output_price: float = Field(0.0, ge=0.0, description="USD per 1M output tokens")
    latency_ms: float | None = Field(None, gt=0.0)
    context_length: int | None = Field(None, gt=0)

    @property
    def provider_id(self) -> str:
        return self.id or self.name


class BackendConfig(BaseModel):
    """One ``[[backends]]`` entry. Keys beyond these are the adapter type's own options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    type: str = "openai"
    network: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    models: list[ModelEntry] = Field(default_factory=list)
    latency_ms: float = Field(800.0, gt=0.0, description="latency prior before observations")
    timeout_s: float = Field(60.0, gt=0.0, description="hard ceiling on one whole attempt")
    first_token_timeout_s: float | None = Field(
        None, gt=0.0, description="abandon an attempt with no token after this long"
    )
    stall_timeout_s: float | None = Field(
        None, gt=0.0, description="end a stream whose tokens stop for this long"
    )
    retries: int = Field(2, ge=0, le=10)
    verifiability: list[str] = Field(default_factory=list)
    operator: str | None = None
    enabled: bool = True
    headers: dict[str, str] = Field(default_factory=dict)
    attestation: dict[str, Any] | None = Field(
        None, description="attestation endpoint and checks (docs/verifiability.md)"
    )
    proof: dict[str, Any] | None = Field(None, description="proof system and verifier settings")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "use letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be the NAME of an environment variable, not the key itself")
        return value

    @property
    def label(self) -> str:
        """The network label used by intents' ``networks``/``exclude`` (defaults to the name)."""
        return self.network or self.name

    @property
    def options(self) -> dict[str, Any]:
        """Adapter-specific keys (validated by the adapter type)."""
        return dict(self.model_extra or {})

    def parse_options(self, model: builtins.type[OptionsT]) -> OptionsT:
        """Validate the adapter-specific keys with the adapter's options model."""
        try:
            return model.model_validate(self.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            bad = ".".join(str(p) for p in err["loc"])
            raise ConfigurationError(
                f"backend {self.name!r}: option {bad!r}: {validation_message(err)}", key=bad
            ) from None

    def api_key(self) -> str | None:
        """The key from the environment; never stored in config, receipts or logs."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class RoutingConfig(BaseModel):
    """``[routing]``: breaker, retry and cache knobs shared by all backends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(5, ge=1)
    cooldown_s: float = Field(30.0, gt=0.0)
    backoff_s: float = Field(0.2, ge=0.0)
    backoff_max_s: float = Field(4.0, ge=0.0)
    max_retry_after_s: float = Field(5.0, ge=0.0)
    cache_size: int = Field(1024, ge=0)
    cache_ttl_s: float = Field(3600.0, gt=0.0)
    hedge_min_ms: float = Field(50.0, ge=0.0)


class ReceiptsConfig(BaseModel):
    """``[receipts]``: where the ledger and signing key live."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    ledger: str | None = None
    key: str | None = None
    key_env: str | None = None
    commit: Literal["sync", "async"] = "sync"
    async_window_ms: float = Field(default=50.0, gt=0, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _commit_shorthand(cls, data: Any) -> Any:
        """``receipts = "async"`` (or ``"sync"``) at the top level is ``[receipts] commit``."""
        return {"commit": data} if isinstance(data, str) else data


STATE_URL_ENV = "INTENTMESH_STATE_URL"


class StateConfig(BaseModel):
    """``[state]``: the shared state store of a fleet (Redis or Valkey); unset = in-process.

    ``$INTENTMESH_STATE_URL``, when set, takes precedence over ``url``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = None
    prefix: str = Field("intentmesh", min_length=1)
    reservation_ttl_s: float = Field(300.0, gt=0.0, description="a dead process's hold expires")
    sync_interval_s: float = Field(0.25, gt=0.0, le=0.5, description="breaker/latency sync")
    trial_lease_s: float = Field(10.0, gt=0.0, description="one fleet-wide half-open trial")
    timeout_s: float = Field(1.0, gt=0.0, description="per Redis command")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value or None

    def resolved_url(self) -> str | None:
        """``$INTENTMESH_STATE_URL`` if set, else ``url`` (None: embedded, in-process state)."""
        env = os.environ.get(STATE_URL_ENV, "").strip()
        if env and not env.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigurationError(
                f"{STATE_URL_ENV} must start with redis://, rediss:// or unix://"
            )
        return env or self.url


class LimitConfig(BaseModel):
    """``[[limits]]``: a named spending/rate limit the SDK uses with ``gateway.limit(name)``.

    A ``[[server.keys]]`` entry with the same name shares the same account.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    budget_usd: float | None = Field(None, ge=0.0)
    requests_per_min: int | None = Field(None, ge=1)
    tokens_per_min: int | None = Field(None, ge=1)
    usd_per_day: float | None = Field(None, ge=0.0)


class OtelConfig(BaseModel):
    """``[otel]``: OpenTelemetry spans and metrics (needs the ``otel`` extra); off by default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False


class CatalogEntry(BaseModel):
    """``[[models]]``: extra catalog models or aliases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    family: str = ""
    context_length: int | None = None


class GatewayConfig(BaseModel):
    """The whole configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backends: list[BackendConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    receipts: ReceiptsConfig = Field(default_factory=ReceiptsConfig)
    models: list[CatalogEntry] = Field(default_factory=list)
    state: StateConfig = Field(default_factory=StateConfig)
    limits: list[LimitConfig] = Field(default_factory=list)
    otel: OtelConfig = Field(default_factory=OtelConfig)
    server: dict[str, Any] | None = Field(
        None, description="the gateway server's section, validated by intentmesh.server"
    )
    source: str | None = Field(None, exclude=True)
    _text: str | None = PrivateAttr(None)  # the TOML it was parsed from, to locate errors

    def located(self, exc: ConfigurationError, backend: str) -> ConfigurationError:
        """``exc``, raised while building backend ``backend``, naming file, line and key:
        ``intentmesh.toml:9: backends.1.type: unknown backend type 'x'; ...``."""
        index = next((i for i, b in enumerate(self.backends) if b.name == backend), None)
        if exc.source is not None or index is None:
            return exc
        loc: tuple[str | int, ...] = ("backends", index, *((exc.key,) if exc.key else ()))
        text = self._text
        if text is None and self.source and Path(self.source).is_file():
            text = Path(self.source).read_text("utf-8")
        where = ".".join(str(p) for p in loc)
        return ConfigurationError(
            f"{where}: {exc.detail}",
            source=self.source,
            line=locate(text, loc) if text else None,
            key=exc.key,
        )

    def secret_values(self) -> list[str]:
        """Every secret this config points at, read from the environment: upstream API keys,
        other ``*_env`` options (hotkey seeds), credential headers and the receipt signer."""
        names = [self.receipts.key_env, _SIGNING_KEY_ENV]
        values: list[str] = []
        for entry in self.backends:
            names.append(entry.api_key_env)
            options = entry.options.items()
            names += [v for k, v in options if k.endswith("_env") and isinstance(v, str)]
            values += [v for k, v in entry.headers.items() if _CREDENTIAL.search(k)]
        values += [os.environ.get(name, "") for name in names if name]
        return [v for v in values if v]

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        seen: set[str] = set()
        for backend in self.backends:
            if backend.name in seen:
                raise ValueError(
                    f"backend name {backend.name!r} is used twice; names must be unique"
                )
            seen.add(backend.name)
        names = [limit.name for limit in self.limits]
        if len(set(names)) != len(names):
            raise ValueError("limits: each [[limits]] entry needs a distinct name")
        return self


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parse and validate TOML text; errors carry ``source:line``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise ConfigurationError(f"not valid TOML: {exc}", source=source, line=line) from None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, text, source) from None
    config = config.model_copy(update={"source": source})
    config._text = text
    return config


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read and validate a config file."""
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)
        fix = "; write one with `intentmesh config init`" if missing else ""
        raise ConfigurationError(unreadable(exc) + fix, source=str(file)) from None
    return parse_config(text, str(file))


def discover_config_path() -> Path | None:
    """The first config file found: $INTENTMESH_CONFIG, ./intentmesh.toml, user config dir."""
    env = os.environ.get("INTENTMESH_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                "no such file (named by $INTENTMESH_CONFIG); fix or unset it", source=str(path)
            )
        return path
    for candidate in (
        Path.cwd() / "intentmesh.toml",
        Path(platformdirs.user_config_dir("intentmesh")) / "intentmesh.toml",
    ):
        if candidate.is_file():
            return candidate
    return None


def _line_from_message(message: str) -> int | None:
    """tomllib before 3.14 puts the line only in the message: '... (at line 3, column 1)'."""
    found = re.search(r"at line (\d+)", message)
    return int(found.group(1)) if found else None


def _config_error(exc: ValidationError, text: str, source: str) -> ConfigurationError:
    err = exc.errors()[0]
    loc: Sequence[str | int] = err["loc"]
    where = ".".join(str(p) for p in loc) or "config"
    if err["type"] == "extra_forbidden":
        message = f"{where}: unknown key; remove it or check its spelling"
    else:
        message = f"{where}: {validation_message(err)}"
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigurationError(message, source=source, line=locate(text, loc))


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    """Best-effort line number (1-based) of a validation location in TOML text."""
    lines = text.splitlines()
    start = 0
    path: list[str] = []
    entry = False  # inside one [[array]] entry: its keys end at the next table header
    for part in loc:
        if isinstance(part, int):
            header = re.compile(r"^\s*\[\[\s*" + re.escape(".".join(path)) + r"\s*\]\]")
            hits = [i for i in range(start, len(lines)) if header.match(lines[i])]
            if part >= len(hits):
                return start + 1 if lines else None
            start, entry = hits[part], True
        else:
            path.append(part)
            key = re.compile(r"^\s*" + re.escape(part) + r"\s*=")
            for i in range(start, len(lines)):
                if entry and i > start and lines[i].lstrip().startswith("["):
                    break  # a key missing from this entry: point at the entry
                if key.match(lines[i]):
                    start = i
                    break
    return start + 1 if lines else None
