"""Fleet mode across separate OS processes: two ``intentmesh serve`` replicas, SDK processes,
one Redis. Assertions are on state (budgets, counts, breaker states), never on timings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_support import (
    INTENTMESH,
    MODEL,
    REDIS_URL,
    backend_toml,
    free_port,
    state_toml,
    wait_for,
)

from intentmesh import Gateway
from intentmesh.config import StateConfig
from intentmesh.fleet import Limits, RedisAccounts, RedisState
from intentmesh.testing import FakeOpenAIProvider, Fault

pytest.importorskip("starlette", reason="the server extra is not installed")
pytestmark = pytest.mark.timeout(240)

KEY = "fleet-test-secret"
PRICE = 100.0  # USD per 1M tokens: a tiny request costs about $0.001
SDK_SCRIPT = """
import json, os, sys, time
from intentmesh import Gateway, LimitExceeded
costs = []
with Gateway(sys.argv[1]) as gw:
    team = gw.limit("team")
    print("ready", flush=True)
    for _ in range(2400):  # start together with the others (bounded wait)
        if os.path.exists(sys.argv[3]):
            break
        time.sleep(0.05)
    for _ in range(400):
        try:
            costs.append(team.infer(model=sys.argv[2], prompt="hi", max_tokens=8).cost_usd)
        except LimitExceeded:
            break
print(json.dumps(costs))
"""
BREAK_SCRIPT = """
import sys
from intentmesh import ExecutionError, Gateway
with Gateway(sys.argv[1]) as gw:
    try:
        gw.infer(model=sys.argv[2], prompt="hi", max_tokens=8)
    except ExecutionError:
        pass
    print(gw.health.breaker("fake").state)
"""


def _config(tmp_path: Path, provider: FakeOpenAIProvider, prefix: str, **opts: Any) -> Path:
    budget = opts.get("budget", 0.02)
    key = opts.get("key", f"budget_usd = {budget}")
    text = (
        state_toml(prefix, reservation_ttl_s=opts.get("ttl", 300), sync_interval_s=0.1)
        + "[receipts]\nenabled = false\n"
        + f"[routing]\nbackoff_s = 0\nfailure_threshold = {opts.get('threshold', 5)}\n"
        + backend_toml("fake", provider.base_url, price=PRICE)
        + f'[[limits]]\nname = "team"\nbudget_usd = {budget}\n'
        + '[server]\naccess_log = false\n[[server.keys]]\nname = "team"\nkey_env = "TEAM_KEY"\n'
        + key
        + "\n"
    )
    path = tmp_path / "intentmesh.toml"
    path.write_text(text)
    return path


class Replica:
    """``intentmesh serve`` in its own process."""

    def __init__(self, config: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "TEAM_KEY": KEY}
        cmd = [INTENTMESH, "serve", "--config", str(config), "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        wait_for(self._ready, timeout_s=90, what=f"replica on port {self.port}")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"replica exited: {self.proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            return httpx.get(self.url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def post(self, client: httpx.Client) -> httpx.Response:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
        headers = {"authorization": f"Bearer {KEY}"}
        return client.post(self.url + "/v1/chat/completions", json=body, headers=headers)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def _balance(prefix: str, limits: Limits) -> tuple[float, float]:
    async def read() -> tuple[float, float]:
        state = RedisState(StateConfig(url=REDIS_URL, prefix=prefix), REDIS_URL)
        found = await RedisAccounts(state).abalance("team", limits)
        await state.aclose()
        return found.spent, found.reserved

    return asyncio.run(read())


def _spend_over_http(replica: Replica, costs: list[float], statuses: list[int]) -> None:
    with httpx.Client(timeout=60) as client:
        for _ in range(400):
            response = replica.post(client)
            statuses.append(response.status_code)
            if response.status_code != 200:
                return
            costs.append(float(response.headers["x-intentmesh-cost-usd"]))


def test_replicas_and_sdk_processes_never_exceed_one_budget(
    tmp_path: Path, provider: FakeOpenAIProvider, prefix: str, replicas: list[Replica]
) -> None:
    budget = 0.05
    config = _config(tmp_path, provider, prefix, budget=budget)
    replicas += [Replica(config), Replica(config)]
    script, go = tmp_path / "spend.py", tmp_path / "go"
    script.write_text(SDK_SCRIPT)
    sdks = [
        subprocess.Popen(
            [sys.executable, str(script), str(config), MODEL, str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in sdks:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    http_costs: list[float] = []
    statuses: list[int] = []
    threads = [
        threading.Thread(target=_spend_over_http, args=(r, http_costs, statuses))
        for r in replicas
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    sdk_costs: list[float] = []
    for proc in sdks:
        out, _ = proc.communicate(timeout=200)
        assert proc.returncode == 0
        sdk_costs += json.loads(out)
    for t in threads:
        t.join(timeout=180)
    total = sum(http_costs) + sum(sdk_costs)
    spent, reserved = _balance(prefix, Limits(budget_usd=budget))
    assert http_costs and sdk_costs, "both the replicas and the SDK processes spent"
    assert set(statuses) <= {200, 402} and 402 in statuses
    assert total <= budget + 1e-9
    assert spent == pytest.approx(total, abs=1e-9) and reserved == 0
    assert total > budget / 2, "the budget was actually used up, not refused early"


def test_a_rate_limit_holds_across_replicas(
    tmp_path: Path, provider: FakeOpenAIProvider, prefix: str, replicas: list[Replica]
) -> None:
    config = _config(tmp_path, provider, prefix, key="requests_per_min = 5")
    replicas += [Replica(config), Replica(config)]
    responses: list[httpx.Response] = []

    def send(replica: Replica) -> None:
        with httpx.Client(timeout=60) as client:
            for _ in range(6):
                responses.append(replica.post(client))

    threads = [threading.Thread(target=send, args=(r,)) for r in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(responses) == 12 and len(ok) + len(limited) == 12
    assert 5 <= len(ok) <= 6  # within one request of the limit, across both replicas
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)
    assert all(r.json()["error"]["code"] == "requests_per_min_exceeded" for r in limited)


def test_a_breaker_opened_by_one_process_is_seen_by_another(
    tmp_path: Path, provider: FakeOpenAIProvider, prefix: str
) -> None:
    config = _config(tmp_path, provider, prefix, threshold=1)
    script = tmp_path / "break.py"
    script.write_text(BREAK_SCRIPT)
    with Gateway(config) as watcher:
        assert watcher.health.breaker("fake").state == "closed"
        provider.always(Fault.status(503))
        out = subprocess.run(
            [sys.executable, str(script), str(config), MODEL],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert out.strip() == "open"
        # The fleet syncs every sync_interval_s (0.1 s here, at most 0.5 s): poll generously.
        wait_for(lambda: watcher.health.breaker("fake").state == "open", what="the open circuit")
        assert not watcher.plan(model=MODEL, prompt="hi", max_tokens=8).candidates


def test_a_killed_replica_leaves_no_reservation_past_its_expiry(
    tmp_path: Path, prefix: str, replicas: list[Replica]
) -> None:
    budget = 0.02
    with FakeOpenAIProvider(["fake-llama"]) as provider:
        provider.always(Fault.hang())
        config = _config(tmp_path, provider, prefix, budget=budget, ttl=3)
        replica = Replica(config)
        replicas.append(replica)

        def doomed() -> None:
            with httpx.Client(timeout=120) as client, pytest.raises(httpx.HTTPError):
                replica.post(client)

        caller = threading.Thread(target=doomed)
        caller.start()
        wait_for(lambda: provider.calls["/v1/chat/completions"] >= 1, what="the request upstream")
        held = _balance(prefix, Limits(budget_usd=budget))[1]
        assert held > 0, "the request in flight holds a reservation"
        os.kill(replica.proc.pid, signal.SIGKILL)
        replica.proc.wait(timeout=30)
        caller.join(timeout=60)
        # Documented expiry: [state] reservation_ttl_s (3 s here); poll well past it.
        wait_for(
            lambda: _balance(prefix, Limits(budget_usd=budget))[1] == 0,
            timeout_s=60,
            what="the dead replica's reservation to expire",
        )
        assert _balance(prefix, Limits(budget_usd=budget))[0] == 0  # nothing was spent


def test_serve_with_an_unreachable_store_fails_at_start_up(
    tmp_path: Path, provider: FakeOpenAIProvider
) -> None:
    config = _config(tmp_path, provider, "unused")
    dead = "redis://127.0.0.1:1/0"
    env = {**os.environ, "TEAM_KEY": KEY, "INTENTMESH_STATE_URL": dead}
    done = subprocess.run(
        [INTENTMESH, "serve", "--config", str(config), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode != 0
    assert "shared state store redis://127.0.0.1:1/0 unavailable during start-up" in done.stderr
    assert "Traceback" not in done.stderr
