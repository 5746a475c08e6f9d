"""Many writers, one chain: threads, separate processes, and forked children."""

from __future__ import annotations

import multiprocessing
import sys
import threading
from pathlib import Path

import pytest

from intentmesh.receipts import Ledger, SigningKey

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


def test_processes_keep_one_chain(tmp_path: Path) -> None:
    key_path = tmp_path / "key.pem"
    key = SigningKey.load_or_create(key_path)
    path = tmp_path / "procs.sqlite3"  # not created up front: the writers race to create it
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=append_in_process, args=(str(path), str(key_path), w)) for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
        assert p.exitcode == 0
    check_one_chain(path, key, 4 * PER_WRITER)


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
