"""Gateway API keys: bearer authentication and each key's model/network policy."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from intentmesh._catalog import Catalog
from intentmesh._intent import Intent
from intentmesh.adapters import add_secrets
from intentmesh.errors import ConfigurationError
from intentmesh.server._config import KeyConfig
from intentmesh.server._errors import ApiError

__all__ = ["KeyRing", "apply_policy"]


class KeyRing:
    """Looks up a presented bearer token by its SHA-256; open access when no key is configured."""

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self.keys = list(keys)
        add_secrets(*(key.secret() for key in self.keys))  # never echoed back from upstreams
        self._by_digest: dict[str, KeyConfig] = {}
        for key in self.keys:
            digest = key.digest()
            if digest is None:
                raise ConfigurationError(
                    f"server key {key.label!r}: environment variable {key.key_env} is not set"
                )
            self._by_digest[digest] = key

    @property
    def open(self) -> bool:
        return not self.keys

    def authenticate(self, authorization: str | None) -> KeyConfig | None:
        """The key for an ``Authorization: Bearer ...`` header; raises 401 when it is wrong."""
        if self.open:
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        key = self._by_digest.get(hashlib.sha256(token.strip().encode()).hexdigest())
        if key is None:
            raise _unauthorized("incorrect API key provided")
        return key


def apply_policy(intent: Intent, key: KeyConfig | None, catalog: Catalog) -> Intent:
    """Refuse models and networks the key may not use; default its networks into the intent."""
    if key is None:
        return intent
    if key.models is not None:
        allowed = {catalog.resolve(m) for m in key.models}
        denied = [m for m in intent.models if catalog.resolve(m) not in allowed]
        if denied:
            raise ApiError(
                403,
                f"this API key may not use model {denied[0]!r} (allowed: {sorted(allowed)})",
                "permission_error",
                "model_not_allowed",
                "model",
            )
    if key.networks is None:
        return intent
    if intent.networks is None:
        return intent.model_copy(update={"networks": list(key.networks)})
    outside = sorted(set(intent.networks) - set(key.networks))
    if outside:
        raise ApiError(
            403,
            f"this API key may not use networks {outside} (allowed: {sorted(key.networks)})",
            "permission_error",
            "network_not_allowed",
            "intent.networks",
        )
    return intent


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "authentication_error", "invalid_api_key")
