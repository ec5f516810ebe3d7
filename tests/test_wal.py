"""Checkpoints of the write-ahead logs from a thread of their own (ndustria.store.wal): the writer never
stops for one, the log stays bounded, and a crash, a second process or an exit loses nothing. The
thresholds are lowered (module attributes, as a script can set them) so that a few megabytes make
several checkpoints; SQLite's own fallback stays at hundreds of megabytes, so only the thread can have
kept the logs this small."""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import subprocess
import sys
import time
import weakref

import pytest

from ndustria.record.catalog import Catalog
from ndustria.store import wal
from ndustria.store.blobs import FILE, Blobs

SMALL = 1 << 20  # CHECKPOINT_AT in these tests
KEEP = 256 << 10

WRITER = f"""
import sys, time
from ndustria.store import wal
wal.CHECKPOINT_AT, wal.LOG_KEEP = {SMALL}, {KEEP}
from ndustria.store.blobs import Blobs
root, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
blobs = Blobs.of(root)
for i in range(n):
    blobs.put(f"{{tag}}{{i:031x}}", (f"{{tag}}{{i}}-" * 300).encode(), 1.0, "c" * 32, commit=False)
    if i % 50 == 49:
        blobs.commit()
        print(i, blobs._checkpointer.checkpoints, flush=True)  # rows up to i are committed
print("done", blobs._checkpointer.checkpoints, flush=True)
"""


def rows(root, tag: str) -> dict[str, bytes]:
    db = sqlite3.connect(root / FILE)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return {k: d for k, d in db.execute("SELECT k.key, d.data FROM blob_keys k JOIN blob_data d ON d.id = k.id"
                                            " WHERE k.key LIKE ?", (tag + "%",))}
    finally:
        db.close()


def expected(tag: str, upto: int) -> dict[str, bytes]:
    return {f"{tag}{i:031x}": (f"{tag}{i}-" * 300).encode() for i in range(upto)}


def writer(tmp_path, tag: str, n: int) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path), tag, str(n)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_thread_checkpoints_and_the_log_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "CHECKPOINT_AT", SMALL)
    monkeypatch.setattr(wal, "LOG_KEEP", KEEP)
    blobs = Blobs(str(tmp_path))
    log = tmp_path / (FILE + "-wal")
    largest = 0
    for i in range(4000):  # ~11 MB of rows
        blobs.put(f"{i:032x}", os.urandom(2000), 1.0, "c" * 32, commit=i % 100 == 99)
        if i % 100 == 99:
            time.sleep(0.02)  # tasks compute between commits: the thread runs meanwhile
            largest = max(largest, log.stat().st_size)
    assert blobs._checkpointer.checkpoints >= 3
    assert wal.FALLBACK_PAGES * wal.PAGE > 100 * SMALL  # SQLite's own checkpoint cannot have run
    assert largest < 8 * SMALL, largest  # the log starts over instead of growing to 11 MB
    assert len(list(blobs.keys())) == 4000
    blobs._close_at_exit()
    assert not log.exists()  # the writer's connection closed last: the log is folded in and removed


def test_a_writer_killed_while_checkpoints_run_loses_no_committed_row(tmp_path):
    proc = writer(tmp_path, "k", 100_000)
    committed, checkpoints = -1, 0
    for line in proc.stdout:
        if line.startswith("done"):
            break
        committed, checkpoints = (int(x) for x in line.split())
        if checkpoints >= 6:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert checkpoints >= 6, proc.stderr.read()
    found = rows(tmp_path, "k")
    want = expected("k", committed + 1)
    assert {k: found.get(k) for k in want} == want  # every row reported committed, whole
    assert all(data == (f"k{int(k[1:], 16)}-" * 300).encode() for k, data in found.items())  # nothing torn


def test_two_processes_writing_with_their_checkpointers_keep_every_row(tmp_path):
    procs = {tag: writer(tmp_path, tag, 3000) for tag in ("a", "b")}
    for proc in procs.values():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert err == ""
        assert int(out.split()[-1]) >= 1, out[-200:]  # each process's thread checkpointed
    for tag in procs:
        assert rows(tmp_path, tag) == expected(tag, 3000)
    assert not (tmp_path / (FILE + "-wal")).exists()  # the last process to exit folded the log in


def test_the_catalog_checkpoints_from_its_thread_and_closes_last(tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "CHECKPOINT_AT", SMALL)
    monkeypatch.setattr(wal, "LOG_KEEP", KEEP)
    catalog = Catalog(tmp_path)
    for batch in range(60):
        catalog.record_file_digests([(os.fsencode(f"/data/{batch}/{i}"), 1, 2, 3, 4, os.urandom(200), 5)
                                     for i in range(300)])
        time.sleep(0.005)
    assert catalog._checkpointer is not None and catalog._checkpointer.checkpoints >= 2
    assert len(catalog.file_digests(b"/data")) == 60 * 300
    catalog.close()
    assert not (tmp_path / "catalog.sqlite-wal").exists()
    again = Catalog(tmp_path, readonly=True)
    try:
        assert len(again.file_digests(b"/data")) == 60 * 300
    finally:
        again.close()


def test_a_read_only_catalog_starts_no_thread(tmp_path):
    Catalog(tmp_path).close()
    catalog = Catalog(tmp_path, readonly=True)
    try:
        assert catalog._checkpointer is None
    finally:
        catalog.close()


def test_no_thread_while_the_log_stays_small(tmp_path):
    blobs = Blobs(str(tmp_path))
    for i in range(300):
        blobs.put(f"{i:032x}", b"x" * 100, 1.0, "c" * 32)
    assert blobs._checkpointer._thread is None
    blobs._close_at_exit()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_checkpoints_with_a_thread_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "CHECKPOINT_AT", 1)  # any log is due
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"x", 1.0, "c" * 32)
    checkpointer = wal.Checkpointer(tmp_path / FILE)
    checkpointer.wrote()
    assert checkpointer._thread is not None
    pid = os.fork()
    if pid == 0:  # the child: its parent's thread did not come along; wrote() makes its own
        code = 1
        try:
            checkpointer.wrote()
            code = 0 if checkpointer._thread is not None and checkpointer._thread.is_alive() else 2
            checkpointer.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    checkpointer.close()
    assert not checkpointer._thread.is_alive()
    assert checkpointer.checkpoints >= 1
    blobs._close_at_exit()


def test_a_reader_on_an_old_snapshot_is_waited_for_not_hammered(tmp_path, monkeypatch):
    """While another connection keeps a read transaction open, the log cannot start over: the thread tries
    again only once the log grew by a quarter of the threshold (each try may hold writers back for
    ``RESTART_PATIENCE``), and once the reader is gone the log starts over and is cut back."""
    monkeypatch.setattr(wal, "CHECKPOINT_AT", SMALL)
    monkeypatch.setattr(wal, "LOG_KEEP", KEEP)
    blobs = Blobs(str(tmp_path))
    blobs.put("0" * 32, b"first", 1.0, "c" * 32)
    log = tmp_path / (FILE + "-wal")
    reader = sqlite3.connect(tmp_path / FILE, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM blob_keys").fetchone() == (1,)  # holds this snapshot
    commits = 0
    for i in range(1, 3001):
        blobs.put(f"{i:032x}", os.urandom(1000), 1.0, "c" * 32, commit=i % 100 == 0)
        if i % 100 == 0:
            commits += 1
            time.sleep(0.02)
    grown = log.stat().st_size
    assert grown > 3 * SMALL  # the log could not start over
    tries = blobs._checkpointer.attempts
    assert 1 <= tries <= (grown - SMALL) / (SMALL // 4) + 2 < commits
    reader.execute("COMMIT")
    reader.close()
    for i in range(3001, 4001):
        blobs.put(f"{i:032x}", os.urandom(1000), 1.0, "c" * 32, commit=i % 100 == 0)
        if i % 100 == 0:
            time.sleep(0.02)
            if log.stat().st_size < SMALL:
                break
    assert log.stat().st_size < SMALL  # started over and cut back once the reader let go
    assert len(list(blobs.keys())) == i + 1
    blobs._close_at_exit()


def test_a_writer_committing_back_to_back_still_has_its_log_started_over_by_the_thread(tmp_path, monkeypatch):
    """A writer that commits again as soon as it can (tiny tasks, no pause) wins the race for the write
    lock against the thread's commit of nothing: the thread must still make the log start over, or the
    log grows until SQLite's own checkpoint stops the writer (twice the threshold; it grew to all 40 MB
    here). The thread waits for the GIL of a writer that never pauses: the log overshoots a little."""
    monkeypatch.setattr(wal, "CHECKPOINT_AT", 2 * SMALL)
    monkeypatch.setattr(wal, "LOG_KEEP", KEEP)
    blobs = Blobs(str(tmp_path))
    log = tmp_path / (FILE + "-wal")
    largest = 0
    for i in range(30_000):  # ~40 MB of log, commits back to back
        blobs.put(f"{i:032x}", os.urandom(1000), 1.0, "c" * 32, commit=i % 100 == 99)
        if i % 100 == 99:
            largest = max(largest, log.stat().st_size)
    assert blobs._checkpointer.checkpoints >= 3
    assert largest < 20 * SMALL, largest
    assert len(list(blobs.keys())) == 30_000
    blobs._close_at_exit()


def test_an_idle_thread_ends_and_an_unclosed_catalog_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(wal, "CHECKPOINT_AT", SMALL)
    monkeypatch.setattr(wal, "LOG_KEEP", KEEP)
    monkeypatch.setattr(wal, "IDLE_AFTER", 0.2)
    catalog = Catalog(tmp_path)
    for batch in range(20):
        catalog.record_file_digests([(os.fsencode(f"/d/{batch}/{i}"), 1, 2, 3, 4, os.urandom(200), 5)
                                     for i in range(300)])
    checkpointer = catalog._checkpointer
    thread = checkpointer._thread
    assert thread is not None and checkpointer.checkpoints >= 1
    thread.join(5)
    assert not thread.is_alive() and checkpointer._thread is None  # idle: gone, its connection closed
    for batch in range(40):  # the log is due again: a new thread
        catalog.record_file_digests([(os.fsencode(f"/e/{batch}/{i}"), 1, 2, 3, 4, os.urandom(200), 5)
                                     for i in range(300)])
        if checkpointer._thread is not None:
            break
    assert checkpointer._thread is not None
    checkpointer._thread.join(5)
    ref = weakref.ref(checkpointer)
    del catalog, checkpointer, thread
    gc.collect()
    assert ref() is None  # nothing (not the exit hook) keeps an unclosed catalog's checkpointer
