"""The raw ASGI generation route: what it reads, what it answers, and that it encodes once."""

from __future__ import annotations

import json

import httpx
from server_support import MODEL

from intentmesh.server import ThreadedServer


def test_one_response_is_a_complete_json_document_with_its_headers(server: ThreadedServer) -> None:
    url = server.base_url + "/chat/completions"
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "héllo ✓"}]}
    response = httpx.post(url, json=payload)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    data = json.loads(response.content)
    assert data["object"] == "chat.completion"
    assert "héllo ✓" in data["choices"][0]["message"]["content"]
    assert response.headers["x-intentmesh-backend"] == data["intentmesh"]["backend"]


def test_integers_past_64_bits_are_read_then_refused_by_name(server: ThreadedServer) -> None:
    """orjson refuses such a document; the route falls back to json, so the error names the
    field instead of calling the body invalid JSON."""
    url = server.base_url + "/chat/completions"
    messages = '[{"role": "user", "content": "x"}]'
    text = f'{{"model": "{MODEL}", "messages": {messages}, "seed": {2**70}}}'
    response = httpx.post(url, content=text.encode(), headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" not in response.text
    assert "seed" in response.text


def test_a_body_that_is_not_an_object_is_400(server: ThreadedServer) -> None:
    response = httpx.post(server.base_url + "/completions", json=[1, 2])
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_get_on_a_generation_route_is_405(server: ThreadedServer) -> None:
    assert httpx.get(server.base_url + "/chat/completions").status_code == 405
