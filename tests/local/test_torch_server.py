"""The torch engine end to end over real HTTP, with the tiny random model."""

from __future__ import annotations

import functools
import json
from typing import Any

import anyio
import httpx
import pytest

CHAT = [{"role": "user", "content": "Hello, what is the capital of France?"}]


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60)


def chat(url: str, **fields: Any) -> dict[str, Any]:
    body = {"model": "tiny", "messages": CHAT, "return_token_ids": True, **fields}
    response = post(url, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def stream(url: str, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    chunks = []
    with httpx.stream("POST", url + path, json={**body, "stream": True}, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert line.startswith("data: ")
        chunks.append(json.loads(line.removeprefix("data: ")))
    return chunks


def test_models_lists_every_served_name(tiny_url: str) -> None:
    data = httpx.get(tiny_url + "/v1/models").json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == ["tiny", "tiny-alias"]
    assert data["data"][0]["max_model_len"] == 512


def test_health_is_200_with_empty_body(tiny_url: str) -> None:
    response = httpx.get(tiny_url + "/health")
    assert response.status_code == 200
    assert response.content == b""


def test_chat_answer_shape_and_usage_from_the_real_tokenizer(tiny_url: str, tiny_engine) -> None:
    data = chat(tiny_url, max_tokens=12, seed=1)
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert data["model"] == "tiny"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == "length"
    prompt_ids = tiny_engine._tokenizer.apply_chat_template(
        CHAT, add_generation_prompt=True, tokenize=False
    )
    expected_prompt = len(tiny_engine._tokenizer.encode(prompt_ids, add_special_tokens=False))
    assert data["usage"] == {
        "prompt_tokens": expected_prompt,
        "completion_tokens": 12,
        "total_tokens": expected_prompt + 12,
    }
    assert len(choice["token_ids"]) == 12
    assert len(data["prompt_token_ids"]) == expected_prompt
    assert choice["message"]["content"] == tiny_engine.decode(choice["token_ids"])


def test_an_alias_is_accepted_and_the_first_name_reported(tiny_url: str) -> None:
    data = chat(tiny_url, model="tiny-alias", max_tokens=2)
    assert data["model"] == "tiny"


def test_same_seed_gives_the_same_token_ids(tiny_url: str) -> None:
    first = chat(tiny_url, max_tokens=24, seed=42, temperature=1.0)
    again = chat(tiny_url, max_tokens=24, seed=42, temperature=1.0)
    other = chat(tiny_url, max_tokens=24, seed=43, temperature=1.0)
    assert first["choices"][0]["token_ids"] == again["choices"][0]["token_ids"]
    assert first["choices"][0]["token_ids"] != other["choices"][0]["token_ids"]


def test_temperature_zero_is_greedy_whatever_the_seed(tiny_url: str) -> None:
    a = chat(tiny_url, max_tokens=16, seed=1, temperature=0)
    b = chat(tiny_url, max_tokens=16, seed=2, temperature=0)
    assert a["choices"][0]["token_ids"] == b["choices"][0]["token_ids"]


def test_max_tokens_bounds_the_answer(tiny_url: str) -> None:
    for n in (1, 5, 30):
        data = chat(tiny_url, max_tokens=n, seed=7)
        assert data["usage"]["completion_tokens"] <= n
        if data["choices"][0]["finish_reason"] == "length":
            assert data["usage"]["completion_tokens"] == n


def test_stop_sequence_cuts_the_text_before_it(tiny_url: str) -> None:
    full = chat(tiny_url, max_tokens=40, seed=5)["choices"][0]["message"]["content"]
    stop = full[10:13]
    cut = full.index(stop)
    data = chat(tiny_url, max_tokens=40, seed=5, stop=[stop, "never-there"])
    choice = data["choices"][0]
    assert choice["message"]["content"] == full[:cut]
    assert choice["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] < 40


def test_completions_endpoint(tiny_url: str) -> None:
    body = {"model": "tiny", "prompt": "The router", "max_tokens": 8, "seed": 3}
    data = post(tiny_url, "/v1/completions", body).json()
    assert data["object"] == "text_completion"
    assert data["id"].startswith("cmpl-")
    assert isinstance(data["choices"][0]["text"], str)
    assert data["usage"]["completion_tokens"] == 8


def test_completions_default_to_16_tokens(tiny_url: str) -> None:
    data = post(tiny_url, "/v1/completions", {"prompt": "A seed", "seed": 3}).json()
    assert data["usage"]["completion_tokens"] <= 16


def test_completions_accept_token_ids_as_prompt(tiny_url: str) -> None:
    data = post(tiny_url, "/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 3}).json()
    assert data["usage"]["prompt_tokens"] == 3


def test_chat_stream_matches_the_whole_answer(tiny_url: str) -> None:
    whole = chat(tiny_url, max_tokens=30, seed=11)
    body = {"model": "tiny", "messages": CHAT, "max_tokens": 30, "seed": 11,
            "stream_options": {"include_usage": True}}  # fmt: skip
    chunks = stream(tiny_url, "/v1/chat/completions", body)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]


def test_stream_without_include_usage_has_no_usage_chunk(tiny_url: str) -> None:
    body = {"messages": CHAT, "max_tokens": 4, "seed": 1}
    chunks = stream(tiny_url, "/v1/chat/completions", body)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_completion_stream_with_stop_never_shows_the_stop_text(tiny_url: str) -> None:
    body = {"prompt": "The gateway", "max_tokens": 40, "seed": 9}
    full = post(tiny_url, "/v1/completions", body).json()["choices"][0]["text"]
    stop = full[8:11]
    chunks = stream(tiny_url, "/v1/completions", {**body, "stop": stop})
    assert all(c["object"] == "text_completion" for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == full[: full.index(stop)]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_concurrent_requests_are_each_answered_as_if_alone(tiny_url: str) -> None:
    seeds = list(range(8))
    alone = {s: chat(tiny_url, max_tokens=20, seed=s)["choices"][0]["token_ids"] for s in seeds}
    results: dict[int, list[int]] = {}

    async def one(client: httpx.AsyncClient, seed: int) -> None:
        body = {"messages": CHAT, "max_tokens": 20, "seed": seed, "return_token_ids": True}
        if seed % 2:
            chunks = []
            async with client.stream("POST", "/v1/chat/completions", json={
                **body, "stream": True}) as response:  # fmt: skip
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        chunks.append(json.loads(line[6:]))
            results[seed] = chunks[-1]["choices"][0]["token_ids"]
        else:
            response = await client.post("/v1/chat/completions", json=body)
            results[seed] = response.json()["choices"][0]["token_ids"]

    client = httpx.AsyncClient(base_url=tiny_url, timeout=60)
    async with client, anyio.create_task_group() as group:
        for seed in seeds:
            group.start_soon(one, client, seed)
    assert results == alone


async def test_the_event_loop_stays_free_during_generation(tiny_url: str) -> None:
    client = httpx.AsyncClient(base_url=tiny_url, timeout=60)
    async with client, anyio.create_task_group() as group:
        body = {"messages": CHAT, "max_tokens": 400, "temperature": 0}
        group.start_soon(functools.partial(client.post, "/v1/chat/completions", json=body))
        await anyio.sleep(0.05)
        with anyio.fail_after(2):
            assert (await client.get("/health")).status_code == 200


def test_metrics_count_requests_and_tokens(tiny_url: str) -> None:
    before = _metric(tiny_url, "intentmesh_local:generation_tokens_total")
    chat(tiny_url, max_tokens=5, seed=1)
    text = httpx.get(tiny_url + "/metrics").text
    assert _metric(tiny_url, "intentmesh_local:generation_tokens_total") == before + 5
    assert (
        'intentmesh_local:requests_total{model_name="tiny",endpoint="/v1/chat/completions",' in text
    )
    assert "intentmesh_local:time_to_first_token_seconds_bucket" in text
    assert "intentmesh_local:e2e_request_latency_seconds_count" in text
    assert "intentmesh_local:num_requests_running" in text


def test_a_client_that_leaves_a_stream_cancels_its_generation(tiny_url: str) -> None:
    name = "intentmesh_local:generation_tokens_total"
    before = _metric(tiny_url, name)
    body = {"messages": CHAT, "max_tokens": 480, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", tiny_url + "/v1/chat/completions", json=body) as response:
        for n, _ in enumerate(response.iter_lines()):
            if n > 4:
                break
    chat(tiny_url, max_tokens=1)  # queued behind the cancelled job, so it has finished
    assert _metric(tiny_url, name) - before < 480


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not found")


@pytest.mark.parametrize(
    ("path", "body", "status", "kind", "param"),
    [
        ("/v1/chat/completions", {"model": "no", "messages": CHAT}, 404, "NotFoundError", "model"),
        ("/v1/chat/completions", {"messages": []}, 400, "BadRequestError", "messages"),
        ("/v1/chat/completions", {"messages": CHAT, "temperature": 3}, 400, "BadRequestError",
         "temperature"),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 10_000}, 400, "BadRequestError",
         "messages"),
        ("/v1/chat/completions", {"messages": CHAT, "n": 2}, 400, "BadRequestError", "n"),
        ("/v1/completions", {"prompt": ["a", "b"]}, 400, "BadRequestError", "prompt"),
        ("/v1/completions", {}, 400, "BadRequestError", "prompt"),
    ],
)  # fmt: skip
def test_errors_are_openai_shaped(
    tiny_url: str, path: str, body: dict[str, Any], status: int, kind: str, param: str
) -> None:
    response = post(tiny_url, path, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == (kind, param, status)
    assert error["message"]


def test_an_over_long_prompt_says_the_context_length(tiny_url: str) -> None:
    long_prompt = "word " * 2000
    response = post(tiny_url, "/v1/completions", {"prompt": long_prompt, "max_tokens": 1})
    assert response.status_code == 400
    assert "maximum context length is 512" in response.json()["error"]["message"]


def test_unknown_route_is_an_openai_error(tiny_url: str) -> None:
    response = httpx.get(tiny_url + "/v1/nothing")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == 404


WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [WEATHER]}, "tools"),
        ({"tools": [WEATHER], "tool_choice": "required"}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
         "messages[0].content[0]"),
    ],
)  # fmt: skip
def test_what_a_token_engine_cannot_honour_is_a_400_not_dropped(
    tiny_url: str, fields: dict[str, Any], param: str
) -> None:
    response = post(tiny_url, "/v1/chat/completions", {"messages": CHAT, **fields})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_tool_choice_none_on_a_token_engine_answers_in_text(tiny_url: str) -> None:
    data = chat(tiny_url, tools=[WEATHER], tool_choice="none", max_tokens=4)
    assert data["choices"][0]["message"]["tool_calls"] == []
