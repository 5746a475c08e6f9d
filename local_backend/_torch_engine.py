"""The torch engine: any transformers causal LM folder (or GGUF file), sampled token by token.

torch and transformers are imported only when a :class:`TorchEngine` is loaded.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

from intentmesh.local_backend._generation import SamplingParams
from intentmesh.local_backend._toploc import commit, verify

__all__ = ["TorchEngine"]

_FALLBACK_CONTEXT = 2048
_SMALL_MODEL = 20_000_000  # parameters


class TorchEngine:
    """A transformers model and tokenizer on the CPU (or the first CUDA device when present)."""

    def __init__(self, model_id: str, model: Any, tokenizer: Any, device: str = "cpu"):
        self.model_id = model_id
        self._model = model
        self._tokenizer = tokenizer
        self._device = device
        self.context_length = _context_length(model, tokenizer)
        self.eos_token_ids = _eos_ids(model, tokenizer)
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @classmethod
    def load(cls, path: str | Path, *, model_id: str | None = None) -> TorchEngine:
        """Load a model folder, or a ``.gguf`` file through transformers' GGUF loader."""
        import torch

        transformers: Any = import_module("transformers")  # untyped for us; may be absent

        transformers.utils.logging.disable_progress_bar()
        source = Path(path)
        kwargs: dict[str, Any] = {}
        if source.suffix == ".gguf":
            kwargs["gguf_file"] = source.name
            source = source.parent
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if device == "cuda" else torch.float32
        tokenizer = transformers.AutoTokenizer.from_pretrained(source, **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
        model.to(device).eval()
        if device == "cpu" and sum(p.numel() for p in model.parameters()) < _SMALL_MODEL:
            torch.set_num_threads(1)  # thread hand-offs cost more than small matmuls gain
        return cls(model_id or Path(path).stem, model, tokenizer, device)

    def encode_chat(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        if getattr(self._tokenizer, "chat_template", None):
            text = self._tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        else:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        ids = self._tokenizer.encode(text, add_special_tokens=False)
        return [int(i) for i in ids]

    def encode_prompt(self, prompt: str) -> list[int]:
        return [int(i) for i in self._tokenizer.encode(prompt, add_special_tokens=True)]

    def decode(self, token_ids: Sequence[int]) -> str:
        text = self._tokenizer.decode(
            list(token_ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return str(text)

    def sample(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[int]:
        import torch

        seed = params.seed if params.seed is not None else secrets.randbits(63)
        generator = torch.Generator(device=self._device).manual_seed(seed)
        with torch.inference_mode():
            ids = torch.tensor([list(prompt_ids)], device=self._device)
            out = self._model(input_ids=ids, use_cache=True, **self._keep)
            while True:
                token = _pick(out.logits[0, -1].float(), params, generator)
                yield token
                step = torch.tensor([[token]], device=self._device)
                cache = {self._cache_arg: getattr(out, self._cache_arg)}
                out = self._model(input_ids=step, use_cache=True, **self._keep, **cache)

    def answer_states(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> Any:
        """The last layer's hidden states that produced each of ``token_ids`` after the prompt."""
        import torch

        if not token_ids:
            return torch.zeros((0, 1))
        ids = [*prompt_ids, *token_ids[:-1]]
        with torch.inference_mode():
            out = self._model(
                input_ids=torch.tensor([ids], device=self._device), output_hidden_states=True
            )
        return out.hidden_states[-1][0, len(prompt_ids) - 1 :].float().cpu()

    def toploc_proofs(self, prompt_ids: Sequence[int], token_ids: Sequence[int]) -> list[str]:
        """TOPLOC commitments of the answer's final hidden states (see :mod:`._toploc`)."""
        return commit(self.answer_states(prompt_ids, token_ids))

    def toploc_verify(
        self, prompt_ids: Sequence[int], token_ids: Sequence[int], proofs: Sequence[str]
    ) -> dict[str, Any]:
        """Check another server's commitments against this model's own prefill."""
        return verify(self.answer_states(prompt_ids, token_ids), proofs)


def _pick(logits: Any, params: SamplingParams, generator: Any) -> int:
    import torch

    if params.temperature <= 0:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs, 1, generator=generator).item())


def _context_length(model: Any, tokenizer: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else _FALLBACK_CONTEXT


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)
