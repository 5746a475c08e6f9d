"""Many writers, one chain: threads, separate processes, and forked children."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from intentmesh import Gateway
from intentmesh.config import parse_config
from intentmesh.receipts import Ledger, SigningKey
from intentmesh.testing import FakeOpenAIProvider

PER_WRITER = 50


def check_one_chain(path: Path, key: SigningKey, expected: int) -> None:
    with Ledger(path) as ledger:
        receipts = list(ledger)
        assert len(receipts) == len(ledger) == expected
        assert [r.seq for r in receipts] == list(range(1, expected + 1))
        assert len({r.id for r in receipts}) == expected
        report = ledger.verify({key.key_id: key.public_key_bytes()})
        assert report, str(report)


def append_in_process(path: str, key_path: str, writer: int) -> None:
    key = SigningKey.load(key_path)
    with Ledger(path) as ledger:
        for i in range(PER_WRITER):
            ledger.append({"writer": writer, "i": i}, key)


def test_threads_sharing_one_ledger(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "threads.sqlite3"
    with Ledger(path) as ledger:

        def work(writer: int) -> None:
            for i in range(PER_WRITER):
                ledger.append({"writer": writer, "i": i}, key)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    check_one_chain(path, key, 8 * PER_WRITER)


def test_threads_with_a_ledger_each(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "threads-own.sqlite3"
    Ledger(path).close()

    def work(writer: int) -> None:
        with Ledger(path) as own:
            for i in range(PER_WRITER):
                own.append({"writer": writer, "i": i}, key)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_one_chain(path, key, 4 * PER_WRITER)


def append_after(path: str, key_path: str, writer: int, go: Any) -> None:
    go.wait(300)  # every writer opens the new ledger at once
    append_in_process(path, key_path, writer)


def test_processes_keep_one_chain(tmp_path: Path) -> None:
    key_path = tmp_path / "key.pem"
    key = SigningKey.load_or_create(key_path)
    path = tmp_path / "procs.sqlite3"  # not created up front: the writers race to create it
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [
        ctx.Process(target=append_after, args=(str(path), str(key_path), w, go)) for w in range(4)
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(timeout=300)  # generous: spawning imports cryptography on a loaded machine
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"
    check_one_chain(path, key, 4 * PER_WRITER)


class WriteLock:
    """Another process's connection in the middle of creating the ledger: it holds SQLite's
    write lock on a file still in rollback-journal mode. Switching such a file to WAL fails at
    once with "database is locked" (SQLite skips its busy handler there)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS other (x)")
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT INTO other VALUES (1)")

    def release(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_opening_waits_for_a_writer_that_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "held.sqlite3"
    key = SigningKey.generate()
    lock = WriteLock(path)

    def open_and_append() -> None:
        with Ledger(path) as ledger:
            ledger.append({"opened": "while locked"}, key)

    thread, errors = in_thread(open_and_append)
    thread.join(1.0)  # today's code failed here at once; now it waits for the lock
    lock.release()
    thread.join(120)
    assert not thread.is_alive() and errors == []
    check_one_chain(path, key, 1)


def test_a_gateway_and_the_cli_started_together_both_work(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    key_path = tmp_path / "key.pem"
    lock = WriteLock(path)
    cli = subprocess.Popen(
        [sys.executable, "-c", "from intentmesh.cli import main; main()",
         "receipts", "list", "--ledger", str(path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with FakeOpenAIProvider(["fake-llama"]) as provider:
        text = (
            f'[receipts]\nledger = "{path}"\nkey = "{key_path}"\n[[backends]]\nname = "b"\n'
            f'base_url = "{provider.base_url}"\n[[backends.models]]\n'
            'name = "llama-3.1-8b-instruct"\nid = "fake-llama"\n'
        )
        with Gateway(parse_config(text)) as gw:
            infer = lambda: gw.infer(model="llama-3.1-8b-instruct", prompt="hi", max_tokens=4)  # noqa: E731
            thread, errors = in_thread(infer)
            _wait_until_open(cli.pid, path)
            thread.join(1.0)
            lock.release()
            thread.join(120)
            assert not thread.is_alive() and errors == []
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert "total" in json.loads(out)
    check_one_chain(path, SigningKey.load(key_path), 1)


def _wait_until_open(pid: int, path: Path) -> None:
    """Until process ``pid`` has ``path`` open (Linux; elsewhere a fixed grace period)."""
    fds = Path(f"/proc/{pid}/fd")
    deadline = time.monotonic() + 60
    while fds.is_dir() and time.monotonic() < deadline:
        try:
            if any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir()):
                return
        except OSError:  # the process exited, or an fd closed while listing
            return
        time.sleep(0.05)
    time.sleep(0 if fds.is_dir() else 2.0)


@pytest.mark.skipif(sys.platform == "win32", reason="fork is POSIX only")
def test_forked_children_reuse_an_open_ledger(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "forked.sqlite3"
    ledger = Ledger(path)
    ledger.append({"writer": "parent"}, key)

    def work(writer: int) -> None:
        for i in range(PER_WRITER):
            ledger.append({"writer": writer, "i": i}, key)  # reconnects after fork

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(w,)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
        assert p.exitcode == 0
    ledger.append({"writer": "parent"}, key)
    ledger.close()
    check_one_chain(path, key, 4 * PER_WRITER + 2)
