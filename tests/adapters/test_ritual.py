"""Ritual Infernet adapter against a fake node and container: the job lifecycle end to end."""

from __future__ import annotations

import httpx
import pytest
from net_support import chat, collect

from intentmesh.adapters.ritual import RitualBackend
from intentmesh.errors import (
    AuthenticationError,
    BackendUnavailable,
    ModelNotFound,
    RateLimited,
)
from intentmesh.testing.networks import ContainerSpec, FakeInfernetContainer, FakeInfernetNode


@pytest.fixture
def container():
    with FakeInfernetContainer("openai") as server:
        yield server


@pytest.fixture
def node(container):
    spec = ContainerSpec("llm-inference", container.url)
    with FakeInfernetNode([spec], job_delay_s=0.05) as server:
        yield server


def ritual(make_backend, node, **options) -> RitualBackend:
    options.setdefault("container", "llm-inference")
    options.setdefault("poll_interval_s", 0.02)
    return make_backend("ritual", node.url, None, **options)


async def test_job_lifecycle_running_then_success(make_backend, node, container) -> None:
    backend = ritual(make_backend, node)
    done = await backend.acomplete(chat("fake-llm"))
    assert done.text == "echo: hello there"
    assert done.usage is not None and done.usage.completion_tokens == 3
    sent = container.received[-1]
    assert sent["source"] == 1 and sent["destination"] == 1 and sent["requires_proof"] is False
    assert sent["data"]["messages"][0]["content"] == "hello there"
    assert await backend.ajob(done.id) == {
        "id": done.id,
        "status": "success",
        "result": {"container": "llm-inference", "output": sent and node_output(node, done.id)},
    }


def node_output(node, job_id):
    (job,) = [j for (_, jid), j in node.jobs.items() if jid == job_id]
    return job.result["output"]


async def test_running_state_is_visible_while_polling(make_backend, node) -> None:
    node.job_delay_s = 0.3
    backend = ritual(make_backend, node)
    created = await backend._call("POST", "/api/jobs", backend.job_request(chat("fake-llm")))
    first = await backend.ajob(created["id"])
    assert first is not None and first["status"] == "running" and first["result"] is None


async def test_failed_job(make_backend, node, container) -> None:
    container.fail_next = 1
    backend = ritual(make_backend, node)
    with pytest.raises(BackendUnavailable, match="failed in llm-inference"):
        await backend.acomplete(chat("fake-llm"))


async def test_stream_endpoint_first_line_is_the_job_id(make_backend, node) -> None:
    backend = ritual(make_backend, node)
    text, chunks = await collect(backend, chat("fake-llm"))
    assert text == "echo: hello there" and chunks[-1].finish_reason == "stop"
    (job,) = node.jobs.values()
    assert job.status == "success" and job.result["output"] == {"output": "echo: hello there"}


async def test_guardian_unsupported_container_fails_over(make_backend, node) -> None:
    backend = ritual(make_backend, node, container="other")
    with pytest.raises(ModelNotFound, match="Container not supported"):
        await backend.acomplete(chat("fake-llm"))
    with pytest.raises(ModelNotFound):
        await collect(backend, chat("fake-llm"))


async def test_guardian_proof_and_allow_list(make_backend, container) -> None:
    spec = ContainerSpec("llm-inference", container.url, allowed_ips=("10.0.0.9",))
    with FakeInfernetNode([spec]) as node:
        backend = ritual(make_backend, node)
        with pytest.raises(AuthenticationError, match="Container not allowed for address"):
            await backend.acomplete(chat("fake-llm"))
        allowed = ritual(make_backend, node, requires_proof=True)
        with pytest.raises(AuthenticationError, match="Container does not generate proof"):
            await allowed.acomplete(chat("fake-llm"))


async def test_rate_limit_429_with_retry_after(make_backend, container) -> None:
    spec = ContainerSpec("llm-inference", container.url)
    with FakeInfernetNode([spec], rate_limit=(2, 100.0)) as node:
        backend = ritual(make_backend, node, poll_interval_s=0.01)
        with pytest.raises(RateLimited) as info:
            await backend.acomplete(chat("fake-llm"))  # POST + GETs exceed 2 requests
        assert info.value.retry_after is not None and info.value.retry_after > 0


async def test_jobs_are_scoped_to_the_client_ip(node) -> None:
    async with httpx.AsyncClient(base_url=node.url) as client:
        body = {"containers": ["llm-inference"], "data": {"messages": []}}
        mine = (await client.post("/api/jobs", json=body)).json()["id"]
        other = {"X-Forwarded-For": "10.1.1.1"}
        assert (await client.get("/api/jobs", params={"id": mine}, headers=other)).json() == []
        assert (await client.get("/api/jobs", headers=other)).json() == []
        assert (await client.get("/api/jobs")).json() == [mine]


async def test_batch_and_delegated_stream_refusal(node) -> None:
    async with httpx.AsyncClient(base_url=node.url) as client:
        good = {"containers": ["llm-inference"], "data": {"messages": []}}
        answer = await client.post("/api/jobs/batch", json=[good, {"containers": ["x"]}])
        first, second = answer.json()
        assert "id" in first and second["error"] == "Container not supported"
        assert (await client.post("/api/jobs/batch", json={})).status_code == 400
        refused = await client.post("/api/jobs/stream", json={"subscription": {}, "data": {}})
        assert refused.status_code == 405
        assert refused.json()["error"] == "Streaming only supported for OffchainJob requests."


async def test_health_and_info(make_backend, node) -> None:
    backend = ritual(make_backend, node)
    assert await backend.ahealth() is True
    info = await backend.ainfo()
    assert info["containers"][0]["id"] == "llm-inference" and "pending" in info


@pytest.mark.parametrize(("io", "key"), [("css", "output"), ("prompt", "message")])
async def test_other_container_io_styles(make_backend, io, key) -> None:
    with (
        FakeInfernetContainer(io) as box,
        FakeInfernetNode([ContainerSpec("llm", box.url)]) as node,
    ):
        backend = ritual(make_backend, node, container="llm", io=io)
        done = await backend.acomplete(chat("gpt-4"))
        assert done.text == "echo: hello there"
        data = box.received[-1]["data"]
        if io == "css":
            assert data["provider"] == "OPENAI" and data["params"]["messages"]
        else:
            assert data == {"prompt": "hello there"}
