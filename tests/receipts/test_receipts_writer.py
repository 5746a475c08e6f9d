"""The background receipt writer: group commit, and what a crash may and may not lose."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from intentmesh.errors import ReceiptError
from intentmesh.receipts import Ledger, SigningKey
from intentmesh.receipts._writer import ReceiptWriter
from intentmesh.testing import FakeOpenAIProvider

MODEL = "llama-3.1-8b-instruct"


def gateway_toml(tmp_path: Path, base_url: str, receipts_extra: str = "") -> str:
    return (
        f'[receipts]\nledger = "{tmp_path / "ledger.sqlite3"}"\nkey = "{tmp_path / "key.pem"}"\n'
        f"{receipts_extra}"
        f'[[backends]]\nname = "fake"\nbase_url = "{base_url}"\ntimeout_s = 10\n'
        f'[[backends.models]]\nname = "{MODEL}"\nid = "fake-llama"\n'
        "input_price = 0.1\noutput_price = 0.2\n"
    )


@pytest.fixture
def provider() -> object:
    p = FakeOpenAIProvider(["fake-llama"], record=False)
    p.start()
    yield p
    p.stop()


def test_every_receipt_returned_is_already_committed(tmp_path: Path, provider: object) -> None:
    """Default mode: a second connection sees each receipt the moment ``ainfer`` returns."""
    from intentmesh import Gateway
    from intentmesh.config import parse_config

    gw = Gateway(parse_config(gateway_toml(tmp_path, provider.base_url)))  # type: ignore[attr-defined]
    other = Ledger(tmp_path / "ledger.sqlite3")
    seen: list[str] = []

    async def one(i: int) -> None:
        res = await gw.ainfer(model=MODEL, prompt=f"hi {i}", max_tokens=8)
        assert res.receipt is not None
        assert other.get(res.receipt.id) is not None, "returned before its commit"
        seen.append(res.receipt.id)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(40)))
        await gw.aclose()

    asyncio.run(main())
    gw.close()
    assert len(seen) == 40 and len(other) == 40
    assert other.verify()
    other.close()


CRASH = textwrap.dedent(
    """
    import asyncio, os, sys
    from intentmesh import Gateway
    from intentmesh.config import parse_config

    gw = Gateway(parse_config(open(sys.argv[1]).read()))

    async def one(i):
        res = await gw.ainfer(model="{model}", prompt=f"hi {{i}}", max_tokens=8)
        print(res.receipt.id, flush=True)

    async def main():
        await asyncio.gather(*(one(i) for i in range(int(sys.argv[2]))))

    asyncio.run(main())
    os._exit(3)  # no close(), no atexit: as if the process were killed
    """
).format(model=MODEL)


def crash_run(tmp_path: Path, toml: str, n: int) -> list[str]:
    config = tmp_path / "intentmesh.toml"
    config.write_text(toml)
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(config), str(n)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    return done.stdout.split()


def test_a_crash_loses_no_receipt_in_the_default_mode(tmp_path: Path, provider: object) -> None:
    ids = crash_run(tmp_path, gateway_toml(tmp_path, provider.base_url), 30)  # type: ignore[attr-defined]
    assert len(ids) == 30
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert all(ledger.get(i) is not None for i in ids)
        assert ledger.verify()


def test_async_mode_may_lose_its_window_but_the_ledger_verifies(
    tmp_path: Path, provider: object
) -> None:
    toml = gateway_toml(
        tmp_path,
        provider.base_url,  # type: ignore[attr-defined]
        'commit = "async"\nasync_window_ms = 10000\n',
    )
    ids = crash_run(tmp_path, toml, 30)
    assert len(ids) == 30  # handed back, maybe before their commit
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        kept = [i for i in ids if ledger.get(i) is not None]
        assert len(ledger) == len(kept) <= 30  # what was lost was never half-written
        assert ledger.verify()


def test_async_mode_commits_on_close_and_flush(tmp_path: Path) -> None:
    key = SigningKey.generate()
    ledger = Ledger(tmp_path / "l.sqlite3")
    writer = ReceiptWriter(ledger, key, mode="async", async_window_ms=10_000)
    with Ledger(tmp_path / "l.sqlite3") as other:
        first = writer.append({"n": 1})
        assert first.seq == 1
        writer.flush()
        assert other.get(first.id) is not None
        receipts = [writer.submit({"n": i}) for i in range(2, 6)]
        writer.close()
        assert [f.result().seq for f in receipts] == [2, 3, 4, 5]
        assert len(other) == 5 and other.verify()
    with pytest.raises(ReceiptError, match="closed"):
        writer.submit({"n": 9})
    ledger.close()


def test_a_bad_receipt_fails_alone(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        writer = ReceiptWriter(ledger, key)
        futures = [writer.submit({"n": i}) for i in range(5)]
        bad = writer.submit({"api_key": "sk-123"})
        clash = writer.submit({"seq": 7})
        more = [writer.submit({"n": i}) for i in range(5, 10)]
        with pytest.raises(ReceiptError, match="secret"):
            bad.result(timeout=30)
        with pytest.raises(ReceiptError, match="seq"):
            clash.result(timeout=30)
        seqs = [f.result(timeout=30).seq for f in futures + more]
        assert seqs == list(range(1, 11))
        writer.close()
        assert len(ledger) == 10 and ledger.verify()


def test_group_commit_chains_many_rows_in_one_transaction(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3", batch_size=4) as ledger:
        ledger.append({"n": 0}, key)
        with ledger._store.writing() as add:
            rows = [add(ledger.row_builder({"n": i}, key)) for i in range(1, 10)]
        assert [r.seq for r in rows] == list(range(2, 11))
        assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
        writer = ReceiptWriter(ledger, key)
        last = writer.append({"n": 10})  # seals the full Merkle batches behind it
        writer.close()
        assert last.seq == 11
        assert [c.last_seq for c in ledger.checkpoints()] == [4, 8, 11]
        assert ledger.verify()
        assert json.loads(last.to_json())["body"]["n"] == 10


def test_a_failed_transaction_fails_every_receipt_in_it(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        writer = ReceiptWriter(ledger, key)
        writer.append({"n": 1})
        ledger._store._conn.execute(
            "CREATE TRIGGER stop BEFORE INSERT ON receipts "  # type: ignore[union-attr]
            "BEGIN SELECT RAISE(ABORT, 'disk says no'); END"
        )
        with pytest.raises(Exception, match="disk says no"):
            writer.append({"n": 2})
        writer.close()
        assert len(ledger) == 1 and ledger.verify()


# -- a lone caller writes in its own thread when that waits on no one ----------------------------


def test_a_lone_caller_commits_in_its_own_thread(tmp_path: Path) -> None:
    """``alone=True`` with an idle writer and a free ledger: committed before it returns, and
    the writer's thread is never started for it."""
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        writer = ReceiptWriter(ledger, key)
        other = Ledger(tmp_path / "l.sqlite3")

        async def main() -> list[int]:
            seqs = []
            for i in range(5):
                r = await writer.asubmit({"n": i}, alone=True)
                assert other.get(r.id) is not None, "returned before its commit"
                seqs.append(r.seq)
            return seqs

        assert asyncio.run(main()) == [1, 2, 3, 4, 5]
        assert writer._thread is None
        writer.close()
        other.close()
        assert ledger.verify()


def test_a_lone_caller_never_waits_on_another_process_lock(tmp_path: Path) -> None:
    """Another connection holds the write lock: the receipt goes to the writer's thread,
    which waits for the lock, so the event loop never does."""
    import sqlite3

    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        writer = ReceiptWriter(ledger, key)
        holder = sqlite3.connect(tmp_path / "l.sqlite3", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")

        async def main() -> int:
            task = asyncio.ensure_future(writer.asubmit({"n": 1}, alone=True))
            await asyncio.sleep(0.3)  # the loop keeps running while the lock is held
            assert not task.done()
            holder.execute("COMMIT")
            return (await asyncio.wait_for(task, 30)).seq

        assert asyncio.run(main()) == 1
        assert writer._thread is not None
        writer.close()
        holder.close()
        assert ledger.verify()


def test_a_lone_caller_leaves_sealing_to_the_writer_thread(tmp_path: Path) -> None:
    """A Merkle batch that falls due behind an inline receipt is sealed on the writer's thread."""
    import threading

    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3", batch_size=4) as ledger:
        writer = ReceiptWriter(ledger, key)
        sealers: list[str] = []
        seal = ledger.seal

        def recording_seal(*args: object, **kwargs: object) -> object:
            sealers.append(threading.current_thread().name)
            return seal(*args, **kwargs)  # type: ignore[arg-type]

        ledger.seal = recording_seal  # type: ignore[method-assign]

        async def main() -> None:
            for i in range(9):
                await writer.asubmit({"n": i}, alone=True)

        asyncio.run(main())
        writer.flush()
        writer.close()
        assert sealers and set(sealers) == {"intentmesh-receipts"}
        assert [c.last_seq for c in ledger.checkpoints()] == [4, 8]
        assert ledger.verify()


def test_a_lone_callers_bad_fields_raise_at_once(tmp_path: Path) -> None:
    key = SigningKey.generate()
    with Ledger(tmp_path / "l.sqlite3") as ledger:
        writer = ReceiptWriter(ledger, key)
        with pytest.raises(ReceiptError, match="secret"):
            asyncio.run(writer.asubmit({"api_key": "sk-123"}, alone=True))
        with pytest.raises(ReceiptError, match="surrogate"):
            asyncio.run(writer.asubmit({"text": "\ud800"}, alone=True))
        writer.close()
        assert len(ledger) == 0


def test_concurrent_calls_hand_receipts_to_the_writer(tmp_path: Path, provider: object) -> None:
    """The gateway writes inline only for a call with nothing else in flight."""
    from intentmesh import Gateway
    from intentmesh.config import parse_config

    gw = Gateway(parse_config(gateway_toml(tmp_path, provider.base_url)))  # type: ignore[attr-defined]
    calls: list[bool] = []
    writer = gw._receipt_writer()
    assert writer is not None
    submit = writer.asubmit

    async def recording(fields: object, *, alone: bool = False) -> object:
        calls.append(alone)
        return await submit(fields, alone=alone)  # type: ignore[arg-type]

    writer.asubmit = recording  # type: ignore[method-assign]

    async def main() -> None:
        await gw.ainfer(model=MODEL, prompt="alone", max_tokens=8)
        await asyncio.gather(
            *(gw.ainfer(model=MODEL, prompt=f"hi {i}", max_tokens=8) for i in range(4))
        )
        stream = gw.astream(model=MODEL, prompt="streamed", max_tokens=8)
        async for _ in stream:
            pass
        await gw.aclose()

    asyncio.run(main())
    assert gw.verify_ledger()
    gw.close()
    assert calls[0] is True and calls[-1] is True  # one call, one stream: each alone
    assert calls[1:5].count(False) >= 3  # four at once: at most the last one is alone
    assert gw._in_flight == 0


def test_inline_receipts_leave_wal_checkpoints_to_the_writer_thread(tmp_path: Path) -> None:
    """The caller's connection never checkpoints (no fsync on the event loop), yet the WAL
    stays bounded: the writer thread checkpoints when it commits the Merkle seals."""
    key = SigningKey.generate()
    path = tmp_path / "l.sqlite3"
    with Ledger(path, batch_size=256) as ledger:
        writer = ReceiptWriter(ledger, key)

        async def main() -> int:
            largest = 0
            for i in range(2500):
                await writer.asubmit({"n": i, "pad": "x" * 1500}, alone=True)
                if i % 250 == 249:
                    writer.flush()  # the seals queued so far are done
                    largest = max(largest, (tmp_path / "l.sqlite3-wal").stat().st_size)
            return largest

        largest = asyncio.run(main())
        assert ledger._store._nowait.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0  # type: ignore[union-attr]
        writer.close()
        assert largest < 15 * 2**20, f"WAL grew to {largest} bytes: nothing checkpointed it"
        assert [c.last_seq for c in ledger.checkpoints()][-1] == 2304
        assert ledger.verify()
