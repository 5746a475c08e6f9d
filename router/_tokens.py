"""Token estimates that need no tokenizer: a safe upper bound for the price cap, and a guess."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["estimate_prompt_tokens", "estimate_text_tokens"]

# Chat templates add a few tokens per message (role markers) and a few per conversation.
_PER_MESSAGE = 8
_PER_CONVERSATION = 16


def estimate_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """Return ``(upper_bound, expected)`` prompt tokens for a conversation.

    The upper bound counts one token per UTF-8 byte of content (no byte-level BPE or
    byte-fallback tokenizer produces more) plus template overhead, so a price cap computed from
    it holds for any backend. The expected count uses the usual four characters per token.
    """
    total_bytes = 0
    total_chars = 0
    count = 0
    for message in messages:
        count += 1
        text = _content_text(message.get("content"))
        extra = {k: v for k, v in message.items() if k not in ("role", "content")}
        if extra:
            text += json.dumps(extra, separators=(",", ":"))
        total_bytes += len(text.encode())
        total_chars += len(text)
    overhead = _PER_MESSAGE * count + _PER_CONVERSATION
    return total_bytes + overhead, -(-total_chars // 4) + overhead


def estimate_text_tokens(text: str) -> int:
    """A guess of a text's token count (four characters per token, at least one if non-empty)."""
    return -(-len(text) // 4) if text else 0


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content]
        return "".join(str(p) for p in parts)
    return str(content)
