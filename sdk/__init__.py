"""intentmesh: route LLM inference by intent across decentralized networks."""

from intentmesh._intent import Intent, Message
from intentmesh.errors import *  # noqa: F403
from intentmesh.errors import __all__ as _errors_all

__version__ = "0.1.0"

__all__ = ["Intent", "Message", "__version__", *_errors_all]
