"""Bittensor native (advanced): Epistula-signed OpenAI calls straight to miner axons.

Axons come from a metagraph source: a JSON snapshot file (offline, testable) or the chain via
the ``bittensor`` package when it is installed. Every request is signed with your hotkey
(``BT_HOTKEY_SEED``: the 32-byte hex seed of a *registered, staked validator* hotkey; miners
answer ``401 "Signer not in metagraph"`` or a stake error to anyone else) for the chosen
miner's hotkey. Requests rotate over the top axons by incentive; one that fails is rested for
``cooldown_s``. Miners stream SSE, so a whole answer is assembled from the stream.

Miner rejections (stale timestamp, wrong ``signed_for``, bad signature: 400; unknown or
unstaked signer: 401) are raised as :class:`AuthenticationError`, so the executor fails over.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field

from intentmesh.adapters._epistula import Hotkey, epistula_headers, verify_epistula
from intentmesh.adapters.base import ChatRequest, Chunk, Completion, Usage
from intentmesh.adapters.openai import OpenAIBackend, OpenAIProfile
from intentmesh.config import BackendConfig
from intentmesh.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailable,
    ConfigurationError,
)

__all__ = [
    "Axon",
    "BittensorNativeBackend",
    "BittensorOptions",
    "ChainMetagraph",
    "Hotkey",
    "MetagraphSource",
    "SigningTransport",
    "SnapshotMetagraph",
    "epistula_headers",
    "verify_epistula",
]


@dataclass(frozen=True, slots=True)
class Axon:
    """One miner's serving address and standing in the metagraph."""

    uid: int
    hotkey: str
    ip: str
    port: int
    stake: float = 0.0
    incentive: float = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{self.ip}:{self.port}/v1"


class MetagraphSource(Protocol):
    """Where axons come from."""

    async def aaxons(self) -> list[Axon]: ...


class SnapshotMetagraph:
    """A JSON file ``{"netuid": 1, "axons": [{"uid", "hotkey", "ip", "port", "stake",
    "incentive"}]}``: offline, reproducible, and what tests use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def aaxons(self) -> list[Axon]:
        data = json.loads(await anyio.Path(self.path).read_text("utf-8"))
        return [
            Axon(**{k: a[k] for k in Axon.__dataclass_fields__ if k in a}) for a in data["axons"]
        ]


class ChainMetagraph:
    """The live metagraph of ``netuid`` through the ``bittensor`` package (imported lazily)."""

    def __init__(self, netuid: int, network: str = "finney") -> None:
        self.netuid = netuid
        self.network = network

    async def aaxons(self) -> list[Axon]:
        return await anyio.to_thread.run_sync(self._load)

    def _load(self) -> list[Axon]:
        try:
            import bittensor as bt  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise ConfigurationError(
                "metagraph = 'chain' needs the bittensor package: pip install bittensor"
            ) from exc
        mg = bt.Metagraph(netuid=self.netuid, network=self.network)
        return [
            Axon(uid, str(ax.hotkey), str(ax.ip), int(ax.port), float(mg.S[uid]), float(mg.I[uid]))
            for uid, ax in enumerate(mg.axons)
            if int(ax.port) > 0 and str(ax.ip) not in ("0.0.0.0", "")
        ]


class SigningTransport(httpx.AsyncBaseTransport):
    """Adds Epistula v2 headers, signed for ``signed_for``, to every request it sends."""

    def __init__(self, hotkey: Hotkey, signed_for: str, inner: httpx.AsyncBaseTransport) -> None:
        self.hotkey = hotkey
        self.signed_for = signed_for
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        request.headers.update(epistula_headers(self.hotkey, body, self.signed_for))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class BittensorOptions(BaseModel):
    """``[[backends]]`` keys for ``type = "bittensor-native"``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    netuid: int = Field(1, ge=0)
    metagraph: str = Field("chain", description="'chain' or the path of a snapshot JSON file")
    subtensor_network: str = Field("finney", description="finney | test | ws://...")
    hotkey_seed_env: str = "BT_HOTKEY_SEED"
    uids: list[int] | None = None
    top_k: int = Field(8, ge=1, description="rotate over this many axons by incentive")
    min_stake: float = Field(0.0, ge=0)
    cooldown_s: float = Field(60.0, ge=0)


class BittensorNativeBackend:
    """Rotates signed requests over a subnet's best axons."""

    def __init__(
        self,
        name: str,
        hotkey: Hotkey,
        metagraph: MetagraphSource,
        options: BittensorOptions | None = None,
        *,
        timeout_s: float = 60.0,
    ) -> None:
        self.name = name
        self.hotkey = hotkey
        self.metagraph = metagraph
        self.options = options or BittensorOptions()
        self.timeout_s = timeout_s
        self._axons: list[Axon] | None = None
        self._next = 0
        self._resting: dict[int, float] = {}
        self._clients: dict[int, OpenAIBackend] = {}
        self.last_axon: Axon | None = None

    @classmethod
    def from_config(cls, config: BackendConfig) -> BittensorNativeBackend:
        options = config.parse_options(BittensorOptions)
        seed = os.environ.get(options.hotkey_seed_env)
        if not seed:
            raise ConfigurationError(
                f"backend {config.name!r}: set the hotkey seed in {options.hotkey_seed_env}"
            )
        source: MetagraphSource = (
            ChainMetagraph(options.netuid, options.subtensor_network)
            if options.metagraph == "chain"
            else SnapshotMetagraph(options.metagraph)
        )
        try:
            hotkey = Hotkey.from_seed(seed)
        except ImportError as exc:
            raise ConfigurationError(f"backend {config.name!r}: {exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(
                f"backend {config.name!r}: {options.hotkey_seed_env}: {exc}"
            ) from None
        return cls(config.name, hotkey, source, options, timeout_s=config.timeout_s)

    @property
    def endpoint_host(self) -> str:
        return self.last_axon.ip if self.last_axon else ""

    async def axons(self) -> list[Axon]:
        """The candidate axons, best incentive first (loaded once; :meth:`arefresh` reloads)."""
        if self._axons is None:
            await self.arefresh()
        assert self._axons is not None
        return self._axons

    async def arefresh(self) -> None:
        opts = self.options
        found = await self.metagraph.aaxons()
        chosen = [
            a
            for a in found
            if (opts.uids is None or a.uid in opts.uids) and a.stake >= opts.min_stake
        ]
        chosen.sort(key=lambda a: (-a.incentive, a.uid))
        self._axons = chosen[: opts.top_k]

    async def _pick(self) -> Axon:
        axons = await self.axons()
        if not axons:
            raise BackendUnavailable("no axon in the metagraph matches", backend=self.name)
        now = time.monotonic()
        for _ in range(len(axons)):
            axon = axons[self._next % len(axons)]
            self._next += 1
            if self._resting.get(axon.uid, 0.0) <= now:
                self.last_axon = axon
                return axon
        raise BackendUnavailable("every axon is resting after failures", backend=self.name)

    def _client(self, axon: Axon) -> OpenAIBackend:
        client = self._clients.get(axon.uid)
        if client is None:
            transport = SigningTransport(self.hotkey, axon.hotkey, httpx.AsyncHTTPTransport())
            client = OpenAIBackend(
                f"{self.name}/uid{axon.uid}",
                axon.base_url,
                profile=OpenAIProfile(),
                timeout_s=self.timeout_s,
                transport=transport,
            )
            self._clients[axon.uid] = client
        return client

    @contextmanager
    def _resting_on_failure(self, axon: Axon) -> Iterator[None]:
        try:
            yield
        except BackendError as exc:
            self._resting[axon.uid] = time.monotonic() + self.options.cooldown_s
            if exc.status_code in (400, 401, 403):
                raise AuthenticationError(
                    f"axon uid {axon.uid} refused the signed request: {exc}",
                    backend=self.name,
                    status_code=exc.status_code,
                    body=exc.body,
                    headers=exc.headers,
                ) from exc
            exc.backend = self.name
            raise

    async def astream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        axon = await self._pick()
        with self._resting_on_failure(axon):
            async for chunk in self._client(axon).astream(request):
                yield chunk

    async def acomplete(self, request: ChatRequest) -> Completion:
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        model = ""
        async for chunk in self.astream(request):
            parts.append(chunk.text)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
            model = chunk.model or model
        return Completion("".join(parts), finish, usage, model=model)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
