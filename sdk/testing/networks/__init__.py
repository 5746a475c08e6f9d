"""Loopback fakes of the decentralized networks intentmesh routes across.

Each reproduces its network's wire format — paths, auth rule, error bodies and status codes,
SSE framing and in-stream errors, rate limiting, price lists — so adapters and apps can be
tested without the internet::

    from intentmesh.testing.networks import FakeChutes, ChutesModel

    with FakeChutes([ChutesModel("Qwen/Qwen3-32B-TEE", 0.1, 0.4, confidential=True)]) as chutes:
        chutes.fail_next(1, chutes.fault(429))
        ...  # point a ``type = "chutes"`` backend at chutes.base_url, key chutes.key

See ``docs/networks/``.
"""

from intentmesh.testing.networks._base import NetworkFake
from intentmesh.testing.networks.akash import (
    FakeAkashChat,
    FakeAkashConsole,
    FakeAkashML,
    FakeVLLM,
    gpu_price_entry,
)
from intentmesh.testing.networks.apex import FakeApex
from intentmesh.testing.networks.bittensor import FakeAxon, write_snapshot
from intentmesh.testing.networks.chutes import ChutesModel, FakeChutes, fake_chutes_key
from intentmesh.testing.networks.ionet import FakeIONet
from intentmesh.testing.networks.nearai import FakeNearAI, FakePhala
from intentmesh.testing.networks.nineteen import FakeNineteen
from intentmesh.testing.networks.nras import FakeNras
from intentmesh.testing.networks.pccs import FakePccs
from intentmesh.testing.networks.ritual import (
    ContainerSpec,
    FakeInfernetContainer,
    FakeInfernetNode,
)
from intentmesh.testing.networks.targon import FakeTargon
from intentmesh.testing.networks.tinfoil import FakeTinfoil

__all__ = [
    "ChutesModel",
    "ContainerSpec",
    "FakeAkashChat",
    "FakeAkashConsole",
    "FakeAkashML",
    "FakeApex",
    "FakeAxon",
    "FakeChutes",
    "FakeIONet",
    "FakeInfernetContainer",
    "FakeInfernetNode",
    "FakeNearAI",
    "FakeNineteen",
    "FakeNras",
    "FakePccs",
    "FakePhala",
    "FakeTargon",
    "FakeTinfoil",
    "FakeVLLM",
    "NetworkFake",
    "fake_chutes_key",
    "gpu_price_entry",
    "write_snapshot",
]
