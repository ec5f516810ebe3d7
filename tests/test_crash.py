"""Processes really killed while a ~500 MB result is being written: nothing partial survives."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import AS_IN_A_TERMINAL, write_script

from ndustria import Pipeline
from ndustria.store.entries import Store
from ndustria.store.locks import STALE_AFTER

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")]

SIZE = 500 * 2**20
KILL_AT = 64 * 2**20  # bytes of the temp file written when the signal is sent

SCRIPT = """
import os, sys
from pathlib import Path
import numpy as np
from ndustria import Pipeline

side, backend = Path(sys.argv[1]), sys.argv[2]
pipe = Pipeline(name="crash", backend=backend, engines=1, verbose=False)

@pipe.AddFunction()
def big(n):
    with open(side, "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    return np.full(n, 7, dtype=np.uint8)

handle = big(SIZE)
pipe.run()
arr = handle.result(mmap=True)
assert arr.shape == (SIZE,) and arr[0] == 7 and arr[-1] == 7 and arr[SIZE // 2] == 7
print("ok")
pipe.close()
"""


def start(tmp_path: Path, backend: str, **popen) -> subprocess.Popen:
    script = write_script(tmp_path / "crash.py", SCRIPT.replace("SIZE", str(SIZE)))
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "calls.txt"), backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for_write(cache: Path, proc: subprocess.Popen) -> tuple[int, int]:
    """Wait until a temp file holds KILL_AT bytes; returns (pid that writes it, its size)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        for f in (cache / "tmp").glob("*.tmp") if (cache / "tmp").is_dir() else ():
            try:
                size = f.stat().st_size
            except FileNotFoundError:
                continue
            if size >= KILL_AT:
                return int(re.fullmatch(r".*-(\d+)-(\d+)\.tmp", f.name)[1]), size
        time.sleep(0.002)
    raise AssertionError("the result was never written")


def assert_no_partial_entry(cache: Path) -> list[str]:
    """Every entry in the store verifies; returns their keys."""
    store = Store(cache, fsync=False)
    keys = list(store.keys())
    for key in keys:
        store.verify(key)
    return keys


def rerun_ok(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(tmp_path / "crash.py"), str(tmp_path / "calls.txt"), "serial"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def calls(tmp_path: Path) -> int:
    return len((tmp_path / "calls.txt").read_text().splitlines())


def test_sigkill_of_driver_while_writing(tmp_path: Path, cache_dir: Path) -> None:
    proc = start(tmp_path, "serial")
    pid, size = wait_for_write(cache_dir, proc)
    assert pid == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert assert_no_partial_entry(cache_dir) == []  # the killed write left no entry
    leftovers = list((cache_dir / "tmp").glob("*.tmp"))
    assert len(leftovers) == 1  # only its temp file, which is not an entry
    rerun_ok(tmp_path)
    assert calls(tmp_path) == 2  # recomputed
    assert len(assert_no_partial_entry(cache_dir)) == 1
    # A later run cleans the killed writer's temp file once it is stale.
    assert leftovers[0].exists()
    old = time.time() - STALE_AFTER - 60
    os.utime(leftovers[0], (old, old))
    Pipeline(name="cleanup", verbose=False).store  # noqa: B018 - opening the store cleans
    assert not leftovers[0].exists()
    shutil.rmtree(cache_dir)


def test_sigkill_of_loky_worker_while_writing(tmp_path: Path, cache_dir: Path) -> None:
    proc = start(tmp_path, "processes")
    pid, size = wait_for_write(cache_dir, proc)
    assert pid != proc.pid  # a worker process writes the result
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    # The killed worker broke loky's pool; the scheduler retries the task on a new one.
    assert proc.returncode == 0, err
    assert out.strip() == "ok" and "retrying big(524288000) after its worker died (TerminatedWorkerError" in err
    assert calls(tmp_path) == 2  # the killed attempt and the retry
    assert len(assert_no_partial_entry(cache_dir)) == 1
    rerun_ok(tmp_path)
    assert calls(tmp_path) == 2  # a cache hit
    shutil.rmtree(cache_dir)


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_ctrl_c_while_writing(tmp_path: Path, cache_dir: Path, backend: str) -> None:
    proc = start(tmp_path, backend, start_new_session=True, **AS_IN_A_TERMINAL)
    wait_for_write(cache_dir, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    assert assert_no_partial_entry(cache_dir) == []
    if backend == "serial":
        assert list((cache_dir / "tmp").glob("*.tmp")) == []  # the interrupted writer removed its temp file
    rerun_ok(tmp_path)
    assert calls(tmp_path) == 2
    assert len(assert_no_partial_entry(cache_dir)) == 1
    shutil.rmtree(cache_dir)


# -- many tiny tasks, saved in groups: a kill loses only what was not reported saved -------------

GROUPS = """
import os, signal, sys, time
from ndustria import Pipeline

backend, log = sys.argv[1], sys.argv[2]
os.environ["DRIVER_PID"] = str(os.getpid())  # loky's workers inherit it when they start
pipe = Pipeline(name="groups", backend=backend, engines=2)

@pipe.AddFunction()
def tiny(i):
    if i == KILL_AT and os.environ.get("KILL"):
        os.kill(int(os.environ["DRIVER_PID"]), signal.SIGKILL)  # the process that reports what was saved
        time.sleep(60)
    with open(log, "a") as fh:
        fh.write(f"{i}\\n")
    return i * 3

handles = [tiny(i) for i in range(N)]
pipe.run()
print("sum", sum(h.result() for h in handles))
pipe.close()
"""
N, KILL_AT = 3000, 2200


def run_groups(tmp_path: Path, backend: str, kill: bool) -> subprocess.CompletedProcess:
    script = write_script(tmp_path / "groups.py", GROUPS.replace("KILL_AT", str(KILL_AT)).replace("N)", f"{N})"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"KILL": "1"} if kill else {})}
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:  # files: orphaned loky workers keep pipes open
        proc = subprocess.Popen([sys.executable, str(script), backend, str(tmp_path / "log.txt")], env=env,
                                stdout=stdout, stderr=stderr, text=True, start_new_session=True)
        try:
            proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # loky workers of a killed driver
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), err.read_text())


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_a_killed_run_keeps_every_result_it_reported_saved(tmp_path: Path, cache_dir: Path, backend: str) -> None:
    killed = run_groups(tmp_path, backend, kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    reported = {int(m) for m in re.findall(r"^Saved result of tiny\((\d+)\)", killed.stdout, re.M)}
    assert reported and KILL_AT not in reported, "some results were reported saved before the kill"
    store = Store(cache_dir, fsync=False)
    keys = assert_no_partial_entry(cache_dir)  # every entry there verifies: nothing half-written
    assert len(keys) >= len(reported)
    first = (tmp_path / "log.txt").read_text().split()
    (tmp_path / "log.txt").unlink()
    again = run_groups(tmp_path, backend, kill=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == f"sum {3 * sum(range(N))}"
    recomputed = {int(i) for i in (tmp_path / "log.txt").read_text().split()}
    assert not recomputed & reported, "a result reported saved before the kill was computed again"
    assert recomputed | {int(i) for i in first} >= set(range(N)) - {KILL_AT} and KILL_AT in recomputed
    assert len(list(store.keys())) == N
