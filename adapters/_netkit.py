"""Helpers shared by the network adapters: their own config options, and price strings.

Network adapters extend :class:`~intentmesh.adapters.openai.OpenAIOptions` with keys of their
own (Apex's ``task``, Akash's ``gpu``); :func:`split_options` validates them and hands the
OpenAI base a config without them.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from pydantic import BaseModel

from intentmesh.adapters.openai import OpenAIOptions
from intentmesh.config import BackendConfig

__all__ = ["per_million", "split_options"]

OptionsT = TypeVar("OptionsT", bound=BaseModel)

# A price below this, read as "per 1M tokens", would be absurdly cheap ($1e-3 per 1M); such a
# string is a per-token price (AkashML and io.net do not document the unit).
_PER_TOKEN_BELOW = 1e-3


def split_options(config: BackendConfig, options: type[OptionsT]) -> tuple[OptionsT, BackendConfig]:
    """Validate the adapter's options; return them and the config the OpenAI base accepts."""
    parsed = config.parse_options(options)
    own = set(config.options) - set(OpenAIOptions.model_fields)
    base = BackendConfig.model_validate(config.model_dump(exclude=own))
    return parsed, base


def per_million(value: Any) -> float | None:
    """USD per 1M tokens from a price that may be a number or a string, per token or per 1M.

    ``None``, empty or unparsable values give ``None`` (unknown), never ``0.0``.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(price) or price < 0:
        return None
    if 0 < price < _PER_TOKEN_BELOW:
        return price * 1e6
    return price
