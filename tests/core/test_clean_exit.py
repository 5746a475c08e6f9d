"""A user who never closes the gateway gets no 'unclosed session' noise at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import asyncio
from intentmesh import Gateway, Intent
from intentmesh.testing import DemoNetwork

with DemoNetwork(latency_scale=0.01) as net:
    gw = Gateway.from_config(net.write_config(r"{config}"))
    async def main():
        print((await gw.ainfer(Intent(model="llama-3.1-8b-instruct", prompt="a"))).text)
    asyncio.run(main())
    print(gw.infer(Intent(model="llama-3.1-8b-instruct", prompt="b")).text)
"""


def run_script(script: str, tmp_path: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``script`` (its ``{config}`` filled in) in a fresh interpreter with warnings shown."""
    code = script.format(config=tmp_path / "demo.toml")
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
        timeout=timeout_s, env={"INTENTMESH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_unclosed_gateway_exits_quietly(tmp_path: Path) -> None:
    out = run_script(SCRIPT, tmp_path, timeout_s=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["echo:", "a", "echo:", "b"]
    assert "Unclosed" not in out.stderr and "unclosed" not in out.stderr, out.stderr


SEVERAL = """
import asyncio
from intentmesh import Gateway, Intent
from intentmesh.testing import DemoNetwork

intent = Intent(model="llama-3.1-8b-instruct", prompt="one two three four five six seven eight")
net = DemoNetwork(latency_scale=0.01).start()
path = net.write_config(r"{config}")
kept = []
for _ in range(3):  # several gateways, never closed, each with a stream left half read
    gw = Gateway.from_config(path)
    print(gw.infer(intent).text.split()[0])
    chunks = iter(gw.stream(intent))
    next(chunks)
    kept += [gw, chunks]

async def main():
    gw = Gateway.from_config(path)
    stream = await gw.astream(intent).aopen()
    kept.append((gw, stream, await stream.__aiter__().__anext__()))

asyncio.run(main())
print("end")
"""


def test_several_unclosed_gateways_with_open_streams_exit_quietly(tmp_path: Path) -> None:
    out = run_script(SEVERAL, tmp_path, timeout_s=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["echo:"] * 3 + ["end"]
    for noise in ("nclosed", "Traceback", "error occurred"):
        assert noise not in out.stderr, out.stderr


OWN_LOOP = """
import asyncio
from intentmesh import Gateway, Intent
from intentmesh.testing import DemoNetwork

intent = Intent(model="llama-3.1-8b-instruct", prompt="one two three")
net = DemoNetwork(latency_scale=0.01).start()
path = net.write_config(r"{config}")
loop = asyncio.new_event_loop()  # the script's own loop, driven and never shut down
gateways = [Gateway.from_config(path) for _ in range(3)]
for gw in gateways:
    print(loop.run_until_complete(gw.ainfer(intent)).text.split()[0])
print("end")
"""


def test_gateways_on_a_loop_that_is_never_shut_down_exit_quietly(tmp_path: Path) -> None:
    out = run_script(OWN_LOOP, tmp_path, timeout_s=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["echo:"] * 3 + ["end"]
    # The script's own loop is its business ("unclosed event loop"); our connections are ours.
    for noise in ("Unclosed connector", "Unclosed client session", "unclosed transport"):
        assert noise not in out.stderr, out.stderr
