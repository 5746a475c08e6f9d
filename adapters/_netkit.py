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

__all__ = ["per_million", "price_value", "split_options"]

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


def price_value(value: Any) -> float | None:
    """A price as given (number or string), for networks that document its unit.

    ``None``, empty, negative or unparsable values give ``None`` (unknown), never ``0.0``.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(price) or price < 0:
        return None
    return price


def per_million(value: Any) -> float | None:
    """USD per 1M tokens from a price whose unit is undocumented: per token or per 1M.

    Only for networks that do not say (AkashML, io.net); use :func:`price_value` where the
    unit is known (Chutes: USD per 1M tokens).
    """
    price = price_value(value)
    if price is not None and 0 < price < _PER_TOKEN_BELOW:
        return price * 1e6
    return price
