"""Two processes on one cache: every shared task is computed once, both get correct results."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import lock_state, write_script

from ndustria.record.catalog import Catalog
from ndustria.records import TaskPayload
from ndustria.run.worker import execute, get_store
from ndustria.store.locks import LOCK_DIR, LOCK_FILE, key_lock

N_TASKS = 20

SCRIPT = """
import os, sys, time
from pathlib import Path

import pytest
import pytest

from ndustria import Pipeline

side, go, order, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]
pipe = Pipeline(name=name, verbose=False)

@pipe.AddFunction()
def square(i):
    with open(side, "a") as fh:
        fh.write(f"{i} {os.getpid()}\\n")
    time.sleep(0.05)
    return i * i

@pipe.AddFunction()
def total(values):
    return sum(values)

indices = range(N) if order == "up" else reversed(range(N))
handles = [square(i) for i in indices]
all_ = total([square(i) for i in range(N)])  # the same task in both processes
while not go.exists():  # start both runs together
    time.sleep(0.005)
summary = pipe.run()
assert sorted(h.result() for h in handles) == [i * i for i in range(N)]
assert all_.result() == sum(i * i for i in range(N))
print("executed", summary.executed, "cached", summary.cached)
"""


@pytest.mark.slow
def test_two_processes_compute_each_shared_task_once(tmp_path: Path, cache_dir: Path) -> None:
    script = write_script(tmp_path / "shared.py", SCRIPT.replace("N)", f"{N_TASKS})"))
    side, go = tmp_path / "calls.txt", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # The same order in both: they race for every task (without the lock, ~18 of 20 run twice).
    procs = [subprocess.Popen([sys.executable, str(script), str(side), str(go), "up", name], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("first", "second")]
    time.sleep(1.5)  # both interpreters import ndustria and declare their tasks
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
    calls = [line.split()[0] for line in side.read_text().splitlines()]
    assert sorted(calls, key=int) == [str(i) for i in range(N_TASKS)]  # each task exactly once
    catalog = Catalog(cache_dir)
    keys = {row["key"] for row in catalog.entries()}
    assert len(keys) == N_TASKS + 1
    for name in ("first", "second"):
        run = catalog.latest_run(name)
        assert run["state"] == "done"
        assert {r["status"] for r in catalog.tasks(run["run_id"])} <= {"done", "cached"}


def test_waiting_process_reports_entry_as_found(tmp_path: Path) -> None:
    calls: list[int] = []

    def work(i: int) -> int:
        calls.append(i)
        return i + 1

    root = str(tmp_path / "c")
    payload = TaskPayload(key="abc123", name="work(1)", func=work, args=(1,), kwargs={}, store_root=root)
    get_store(root).save("abc123", 2)  # another process stored it while this one waited for the lock
    report = execute(payload)
    assert (report.status, report.found, calls) == ("done", True, [])
    assert report.size > 0 and report.checksum
    payload.rerun = True  # a rerun task is computed whatever is stored
    report = execute(payload)
    assert (report.status, report.found, calls) == ("done", False, [1])


def test_lock_excludes_threads_and_leaves_no_file_per_key(tmp_path: Path) -> None:
    root = tmp_path / "c"
    inside: list[int] = []
    overlap = []

    def hold(key: str) -> None:
        with key_lock(root, key):
            inside.append(1)
            overlap.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold, args=("k",)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap == [1, 1, 1, 1]
    for i in range(50):
        with key_lock(root, f"key{i}"):
            pass
    assert sorted(os.listdir(root / LOCK_DIR)) == [LOCK_FILE]  # one byte of one file per key


HOLDER = """
import sys, time
from ndustria.store.locks import key_lock
with key_lock(sys.argv[1], "k"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_lock_excludes_other_processes_until_the_holder_is_killed(tmp_path: Path) -> None:
    root = tmp_path / "c"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        got = threading.Event()

        def take() -> None:
            with key_lock(root, "k"):
                got.set()

        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not got.wait(0.5)  # the other process holds it
        with key_lock(root, "another key"):  # other keys are free
            pass
        holder.kill()
        assert got.wait(30)  # the kernel released the dead holder's lock: nothing to clean
        waiter.join()
    finally:
        holder.kill()
        holder.wait()


def test_opening_a_catalog_another_process_is_creating_waits_instead_of_failing() -> None:
    """Two runs starting together on a new cache both set it up; SQLite reports some of those
    conflicts at once ("database is locked") rather than after its busy timeout."""
    import sqlite3

    from ndustria.record.catalog import retry_locked

    attempts = []

    def contended() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "ready"

    assert retry_locked(contended) == "ready" and len(attempts) == 3

    def broken() -> None:
        raise sqlite3.OperationalError("no such table: runs")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_locked(broken)  # other errors are not retried

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_locked(always_locked, patience=0.05)  # not for ever


def test_a_cache_directory_made_again_gets_a_lock_file_other_processes_see(tmp_path: Path, monkeypatch) -> None:
    import shutil

    from ndustria.store import locks

    root = tmp_path / "c"
    with key_lock(root, "k"):  # this process now keeps a descriptor of the lock file
        pass
    shutil.rmtree(root)  # rm -rf of the cache between two runs of a long-lived kernel
    monkeypatch.setattr(locks, "RECHECK", 0.0, raising=False)
    held = locks.KeyLock(root, "k")
    held.acquire()
    try:
        assert lock_state(root, "k") == "held", "locked in the new lock file, not in the deleted one"
    finally:
        held.release()

