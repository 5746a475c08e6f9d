"""The ``local`` adapter: autostart, reuse, pricing, and failover when the server dies."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from intentmesh import Gateway, Intent
from intentmesh.adapters._registry import register
from intentmesh.adapters.base import ChatRequest
from intentmesh.adapters.local import LocalBackend
from intentmesh.config import BackendConfig, parse_config
from intentmesh.errors import BackendUnavailable, ConfigurationError
from intentmesh.local_backend import LocalServer
from intentmesh.testing import FakeOpenAIProvider

MODEL = "tiny-chat"


@pytest.fixture(autouse=True)
def _local_type() -> None:
    register("local", "intentmesh.adapters.local:LocalBackend")


@pytest.fixture
def remote() -> Iterator[FakeOpenAIProvider]:
    provider = FakeOpenAIProvider(["remote-tiny"])
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture
def stop_servers(port: int) -> Iterator[None]:
    yield
    LocalServer(port=port).stop()


def config(tiny_model: Path, port: int, remote: FakeOpenAIProvider, tmp_path: Path) -> str:
    return f"""
[receipts]
ledger = "{tmp_path / "ledger.sqlite3"}"
key = "{tmp_path / "key.pem"}"

[routing]
backoff_s = 0.01

[[backends]]
name = "local"
type = "local"
model = "{tiny_model}"
engine = "torch"
port = {port}
retries = 0
[[backends.models]]
name = "{MODEL}"
id = "tiny"

[[backends]]
name = "remote"
base_url = "{remote.base_url}"
retries = 0
[[backends.models]]
name = "{MODEL}"
id = "remote-tiny"
input_price = 0.5
output_price = 1.0
"""


@pytest.mark.usefixtures("stop_servers")
def test_gateway_autostarts_the_local_server_then_fails_over_when_it_dies(
    tiny_model: Path, port: int, remote: FakeOpenAIProvider, tmp_path: Path
) -> None:
    with Gateway(parse_config(config(tiny_model, port, remote, tmp_path))) as gateway:
        first = gateway.infer(Intent(model=MODEL, prompt="hello", max_tokens=5, seed=1))
        assert first.backend == "local"
        assert first.usage.completion_tokens == 5
        assert first.cost_usd == 0

        record = LocalServer(port=port).status()
        assert record is not None
        os.killpg(record.pid, signal.SIGKILL)
        time.sleep(0.2)

        second = gateway.infer(Intent(model=MODEL, prompt="hello", max_tokens=5))
        assert second.backend == "remote"
        assert [(a.backend, a.error_kind) for a in second.attempts][0] == ("local", "connection")


def test_options_are_validated() -> None:
    entry = BackendConfig(name="local", type="local", enginee="torch")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="enginee"):
        LocalBackend.from_config(entry)


async def test_without_autostart_a_missing_server_is_unavailable(port: int) -> None:
    entry = BackendConfig(name="local", type="local", autostart=False, port=port)  # type: ignore[call-arg]
    backend = LocalBackend.from_config(entry)
    with pytest.raises(BackendUnavailable, match="intentmesh local start"):
        await backend.acomplete(
            ChatRequest(model="x", messages=[{"role": "user", "content": "hi"}])
        )
    await backend.aclose()


@pytest.mark.usefixtures("stop_servers")
async def test_stream_reuse_and_prices_from_measured_throughput(
    tiny_model: Path, port: int
) -> None:
    entry = BackendConfig(  # type: ignore[call-arg]
        name="local", type="local", model=str(tiny_model), engine="torch", port=port,
        usd_per_hour=3.6,
    )  # fmt: skip
    backend = LocalBackend.from_config(entry)
    request = ChatRequest(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=6)
    chunks = [chunk async for chunk in backend.astream(request)]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    pid = LocalServer(port=port).status().pid  # type: ignore[union-attr]

    again = LocalBackend.from_config(entry)
    answer = await again.acomplete(request)
    assert answer.usage is not None and answer.usage.completion_tokens == 6
    assert LocalServer(port=port).status().pid == pid  # type: ignore[union-attr]

    [listing] = await again.alist_models()
    rate = listing.attributes["tokens_per_s"]
    assert listing.id == "tiny" and rate > 0
    assert 0 < listing.attributes["ttft_s"] < 10
    # 3.6 USD/hour = 0.001 USD/s; at `rate` tokens/s one million tokens cost 1000/rate USD.
    assert listing.output_price == pytest.approx(1000 / rate)
    await backend.aclose()
    await again.aclose()
