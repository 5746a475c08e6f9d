"""The local server's errors, each a leaf of the one tree in :mod:`intentmesh.errors`.

ConfigurationError                 the user's mistake; the message says what to do
├── EngineNotInstalled             names the extra or package to install
├── LocalModelNotFound             not a folder, not a .gguf file, not in the HF cache
└── PortInUse                      something else listens on the port
BackendUnavailable
└── ServerStartFailed              the server process exited while starting; ``.log_tail``
BackendTimeout
└── ServerStartTimeout             not ready in time; ``.log_tail``
"""

from __future__ import annotations

from intentmesh.errors import BackendTimeout, BackendUnavailable, ConfigurationError

__all__ = [
    "EngineNotInstalled",
    "LocalModelNotFound",
    "PortInUse",
    "ServerStartFailed",
    "ServerStartTimeout",
]


class EngineNotInstalled(ConfigurationError):
    """The engine's Python packages are missing; ``install`` is the command that adds them."""

    def __init__(self, engine: str, install: str):
        super().__init__(f"the {engine} engine is not installed; install it with: {install}")
        self.engine = engine
        self.install = install


class LocalModelNotFound(ConfigurationError):
    """The model is neither a local folder or file nor in the local Hugging Face cache."""

    def __init__(self, model: str, hint: str = ""):
        text = f"model {model!r} not found"
        super().__init__(f"{text}: {hint}" if hint else text)
        self.model = model


class PortInUse(ConfigurationError):
    """Another process listens on the port the local server wants."""

    def __init__(self, host: str, port: int, detail: str = ""):
        text = f"port {port} on {host} is already in use"
        super().__init__(f"{text} ({detail})" if detail else f"{text}; choose another --port")
        self.host = host
        self.port = port


class ServerStartFailed(BackendUnavailable):
    """The server process exited before it was ready; ``log_tail`` is the end of its log."""

    def __init__(self, message: str, *, log_tail: str = "", backend: str = "local"):
        super().__init__(f"{message}\n{log_tail}" if log_tail else message, backend=backend)
        self.log_tail = log_tail


class ServerStartTimeout(BackendTimeout):
    """The server process did not become ready in time; ``log_tail`` is the end of its log."""

    def __init__(self, message: str, *, log_tail: str = "", backend: str = "local"):
        super().__init__(f"{message}\n{log_tail}" if log_tail else message, backend=backend)
        self.log_tail = log_tail
