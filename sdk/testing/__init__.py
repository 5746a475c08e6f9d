"""Loopback fakes of OpenAI-compatible providers, for testing apps built on intentmesh.

Everything here runs on ``127.0.0.1`` in a background thread, needs only the standard library,
and works from sync and async tests alike::

    from intentmesh.testing import FakeOpenAIProvider, Fault

    with FakeOpenAIProvider(["my-model"]) as provider:
        provider.fail_next(1, Fault.status(503))
        ...  # point your client at provider.base_url

See ``docs/testing.md``.
"""

from intentmesh.testing._demo import DemoNetwork
from intentmesh.testing._faults import Fault
from intentmesh.testing._openai import FakeOpenAIProvider, refused_url
from intentmesh.testing._pricecatalog import FakeModelCatalog, catalog_model
from intentmesh.testing._server import FakeRequest, FakeResponse, LoopbackServer

__all__ = [
    "DemoNetwork",
    "FakeModelCatalog",
    "FakeOpenAIProvider",
    "FakeRequest",
    "FakeResponse",
    "Fault",
    "LoopbackServer",
    "catalog_model",
    "refused_url",
]
