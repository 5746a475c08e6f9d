"""Bittensor native: Epistula v2 signing checked by fake axons exactly as SN1 miners check."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("sr25519")

from net_support import chat  # noqa: E402

from intentmesh.adapters._epistula import (  # noqa: E402
    Hotkey,
    epistula_headers,
    ss58_decode,
    ss58_encode,
    verify_epistula,
)
from intentmesh.adapters.bittensor_native import (  # noqa: E402
    BittensorNativeBackend,
    SnapshotMetagraph,
)
from intentmesh.errors import AuthenticationError  # noqa: E402
from intentmesh.testing.networks import FakeAxon, write_snapshot  # noqa: E402

VALIDATOR = Hotkey.from_seed(bytes(range(32)))
MINER_A = Hotkey.from_seed(bytes([1] * 32))
MINER_B = Hotkey.from_seed(bytes([2] * 32))
STRANGER = Hotkey.from_seed(bytes([3] * 32))
STAKES = {VALIDATOR.ss58_address: 50_000.0, MINER_A.ss58_address: 10.0}


def test_ss58_known_vector() -> None:
    alice = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
    assert ss58_encode(alice) == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    assert ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY") == alice
    with pytest.raises(ValueError, match="checksum"):
        ss58_decode("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQZ")


def test_headers_verify_and_detect_tampering() -> None:
    body = b'{"model":"m"}'
    headers = epistula_headers(VALIDATOR, body, MINER_A.ss58_address)
    assert headers["Epistula-Version"] == "2"
    assert headers["Epistula-Signed-By"] == VALIDATOR.ss58_address
    assert all(f"Epistula-Secret-Signature-{i}" in headers for i in range(3))
    assert verify_epistula(headers, body) is None
    assert verify_epistula(headers, b'{"model":"x"}') == "Signature Mismatch"
    forged = {**headers, "Epistula-Signed-By": STRANGER.ss58_address}
    assert verify_epistula(forged, body) == "Signature Mismatch"
    old = epistula_headers(VALIDATOR, body, MINER_A.ss58_address, now_ms=0)
    assert verify_epistula(old, body) == "Request is too stale"
    assert verify_epistula(old, body, now_ms=5000) is None


@pytest.fixture
def axons():
    a = FakeAxon(MINER_A, STAKES, ["Qwen/Qwen3-8B"]).start()
    b = FakeAxon(MINER_B, STAKES, ["Qwen/Qwen3-8B"]).start()
    yield a, b
    a.stop()
    b.stop()


def snapshot(tmp_path, axons, hotkeys=None):
    rows = [
        {
            "uid": uid,
            "hotkey": (hotkeys or {}).get(uid, ax.hotkey.ss58_address),
            "ip": "127.0.0.1",
            "port": ax.port,
            "stake": 10.0,
            "incentive": 1.0 - uid / 10,
        }
        for uid, ax in enumerate(axons)
    ]
    return SnapshotMetagraph(write_snapshot(tmp_path / "metagraph.json", 1, rows))


async def test_signed_calls_rotate_over_axons(tmp_path, axons) -> None:
    backend = BittensorNativeBackend("sn1", VALIDATOR, snapshot(tmp_path, axons))
    try:
        first = await backend.acomplete(chat("Qwen/Qwen3-8B"))
        second = await backend.acomplete(chat("Qwen/Qwen3-8B"))
        chunks = [c async for c in backend.astream(chat("Qwen/Qwen3-8B"))]
    finally:
        await backend.aclose()
    assert first.text == second.text == "echo: hello there"
    assert "".join(c.text for c in chunks) == "echo: hello there"
    assert [len(a.requests) for a in axons] == [2, 1]
    sent = axons[0].requests[0]
    assert sent.headers["epistula-signed-for"] == MINER_A.ss58_address
    assert sent.json()["stream"] is True


async def test_unknown_signer_is_refused_as_auth(tmp_path, axons) -> None:
    backend = BittensorNativeBackend("sn1", STRANGER, snapshot(tmp_path, axons))
    try:
        with pytest.raises(AuthenticationError, match="Signer not in metagraph"):
            await backend.acomplete(chat("Qwen/Qwen3-8B"))
    finally:
        await backend.aclose()


async def test_unstaked_signer_is_refused(tmp_path, axons) -> None:
    axons[0].stakes[STRANGER.ss58_address] = 5.0
    backend = BittensorNativeBackend("sn1", STRANGER, snapshot(tmp_path, axons))
    try:
        with pytest.raises(AuthenticationError, match="Stake below minimum"):
            await backend.acomplete(chat("Qwen/Qwen3-8B"))
    finally:
        await backend.aclose()


async def test_wrong_signed_for_after_a_hotkey_change(tmp_path, axons) -> None:
    """A stale metagraph: uid 0 now belongs to another hotkey; the miner says 400."""
    graph = snapshot(tmp_path, axons, hotkeys={0: STRANGER.ss58_address})
    backend = BittensorNativeBackend("sn1", VALIDATOR, graph)
    try:
        with pytest.raises(AuthenticationError, match="not intended for self"):
            await backend.acomplete(chat("Qwen/Qwen3-8B"))
        # the refused axon rests; the next call goes to the other one
        assert (await backend.acomplete(chat("Qwen/Qwen3-8B"))).text
    finally:
        await backend.aclose()
    assert axons[0].rejections == ["Bad Request, message is not intended for self"]


async def test_stale_signature_is_refused(axons) -> None:
    import httpx

    body = b'{"model":"Qwen/Qwen3-8B","messages":[{"role":"user","content":"hi"}]}'
    old_ms = round(time.time() * 1000) - 20_000
    headers = epistula_headers(VALIDATOR, body, MINER_A.ss58_address, now_ms=old_ms)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            axons[0].base_url + "/chat/completions", content=body, headers=headers
        )
    assert response.status_code == 400 and response.json() == {"detail": "Request is too stale"}


def test_from_config_needs_the_hotkey_seed(monkeypatch, tmp_path) -> None:
    from intentmesh.adapters._registry import build_backend
    from intentmesh.config import BackendConfig
    from intentmesh.errors import ConfigurationError

    config = BackendConfig.model_validate(
        {"name": "sn1", "type": "bittensor-native", "metagraph": str(tmp_path / "m.json")}
    )
    monkeypatch.delenv("BT_HOTKEY_SEED", raising=False)
    with pytest.raises(ConfigurationError, match="BT_HOTKEY_SEED"):
        build_backend(config)
    monkeypatch.setenv("BT_HOTKEY_SEED", "0x" + bytes(range(32)).hex())
    backend = build_backend(config)
    assert isinstance(backend, BittensorNativeBackend)
    assert backend.hotkey.ss58_address == VALIDATOR.ss58_address
