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


def test_unclosed_gateway_exits_quietly(tmp_path: Path) -> None:
    code = SCRIPT.format(config=tmp_path / "demo.toml")
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True,
                         text=True, timeout=60, env={"INTENTMESH_HOME": str(tmp_path),
                                                     "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["echo:", "a", "echo:", "b"]
    assert "Unclosed" not in out.stderr and "unclosed" not in out.stderr, out.stderr
