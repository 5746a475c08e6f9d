"""A tiny random-weights Llama with a real tokenizer and chat template, made in seconds.

It talks nonsense, but it is a real transformers model: tokenization, chat template, generation,
stop sequences and seeds behave exactly as with a large one, and the same seed gives the same
files, bit for bit. Tests use it; so can users who want to try the local server without a model::

    from intentmesh.local_backend.tiny import create_tiny_model
    create_tiny_model("/tmp/tiny")        # then: intentmesh local serve --model /tmp/tiny
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

__all__ = ["CHAT_TEMPLATE", "TINY_MODEL_NAME", "create_tiny_model"]

TINY_MODEL_NAME = "intentmesh-tiny-llama"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Local training text for the tokenizer: plain English about the thing it will be used for.
_CORPUS = """\
The router reads the intent of a request and sends it to the backend that can serve it best.
A local model runs on this machine: it is free, private and always there, but it may be slow.
Remote networks are fast and cheap, yet they can fail, time out or ask for more money than the
caps allow. The gateway compares prices per million tokens, measured throughput in tokens per
second and the time to the first token, then it picks a plan with fallbacks.
When a backend fails, the executor moves on to the next candidate and records every attempt.
Streaming answers arrive as small chunks of text; the last chunk carries the usage counts.
Stop sequences end the answer early. The maximum number of tokens ends it when nothing else does.
A seed makes sampling repeatable: the same seed gives the same tokens on the same machine.
Hello! How are you today? I am fine, thank you. What is the capital of France? Paris is.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: , . ; : ! ? ( ) [ ] { } " ' - _ / \\ @ #.
"""


def create_tiny_model(
    path: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = 384,
    hidden_size: int = 64,
    num_layers: int = 2,
    max_position_embeddings: int = 512,
) -> Path:
    """Write a tiny random Llama (about 107k parameters) and its tokenizer to ``path``.

    The folder loads with ``AutoModelForCausalLM``/``AutoTokenizer`` and serves with the torch
    engine and with vLLM (two heads of 32: vLLM's CPU attention wants a head size of 32 or more).
    Nothing is downloaded. Returns the folder.
    """
    import torch

    transformers: Any = import_module("transformers")  # untyped for us; may be absent

    transformers.utils.logging.disable_progress_bar()

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.LlamaForCausalLM(config)
        # Wider than the default init so that sampling and greedy decoding visibly differ.
        for param in model.parameters():
            if param.dim() > 1:
                torch.nn.init.normal_(param, std=0.3)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def _train_tokenizer(vocab_size: int) -> Any:
    tk: Any = import_module("tokenizers")
    pre_tokenizers = tk.pre_tokenizers

    bpe = tk.Tokenizer(tk.models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS.splitlines(), trainer=trainer)
    tokenizer = import_module("transformers").PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
