"""The engine side of a batch: results are saved behind the tasks and made durable per batch."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
from support import lock_state

from ndustria import Pipeline
from ndustria.records import TaskPayload
from ndustria.run import remote, worker
from ndustria.store import blobs, locks, writer
from ndustria.store.entries import Store


def double(x):
    return 2 * x


def payloads_for(cache_dir, func=double, n=5, fsync=True):
    return [TaskPayload(key=f"{i:032x}", name=f"{func.__name__}({i})", func=func, args=(i,), kwargs={},
                        store_root=str(cache_dir), fsync=fsync) for i in range(n)]


def run_inline(payloads):
    """execute_batch_inline as the serial scheduler uses it: its reports once they come (a future when the
    commit lands on the store's thread: a local run's payloads, without fsync), then the next batch's
    settle, which releases the locks."""
    out = remote.execute_batch_inline(payloads)
    reports = out.result(timeout=60) if isinstance(out, Future) else out
    for root in {p.store_root for p in payloads}:
        Store(root).settle()
    return reports


def test_a_batch_syncs_after_its_saves_instead_of_fsyncing_each_result(cache_dir, monkeypatch):
    # The cache and the account's signing key exist already, as after an engine's first batch: making them
    # is fsynced once (FORMAT, secret.key); what is counted here is the results' fsyncs. Without this line
    # the test passed only when an earlier test of the session had made the key.
    Store(cache_dir).keyring  # noqa: B018
    payloads = payloads_for(cache_dir)
    Store(cache_dir).keyring  # noqa: B018 - the signing key exists (its creation is fsynced, once)
    fsyncs, events = [], []
    real_fsync, real_save = os.fsync, Store.save
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(Store, "sync", lambda self: events.append("sync"))
    monkeypatch.setattr(Store, "save", lambda self, key, value, **kw: (events.append(key), real_save(self, key, value, **kw))[1])
    reports = remote.execute_batch(payloads)
    assert [r.status for r in reports] == ["done"] * 5
    assert fsyncs == [], "no result is fsynced on its own"
    assert sorted(e for e in events if e != "sync") == [p.key for p in payloads]
    assert events[-1] == "sync", "the filesystem is synced after the last save, before the reports leave"
    store = Store(cache_dir)
    for i, p in enumerate(payloads):
        store.verify(p.key)
        assert store.load(p.key) == 2 * i


def test_a_long_batch_syncs_before_its_last_tasks_so_that_its_final_sync_is_short(cache_dir, monkeypatch):
    payloads = payloads_for(cache_dir, n=60)
    events: list[str] = []
    real_save = Store.save
    monkeypatch.setattr(Store, "sync", lambda self: events.append("sync"))
    monkeypatch.setattr(Store, "save", lambda self, key, value, **kw: (events.append(key), real_save(self, key, value, **kw))[1])
    monkeypatch.setattr(writer, "SYNC_EVERY", 3600.0)  # no background sync on a slow machine either
    assert [r.status for r in remote.execute_batch(payloads)] == ["done"] * 60
    syncs = [i for i, e in enumerate(events) if e == "sync"]
    assert len(syncs) == 2 and syncs[-1] == len(events) - 1
    saved_after = len(events) - 1 - syncs[0] - 1
    # the saves run behind the tasks, by at most the writer's depth (16)
    assert 0 < saved_after <= remote.FLUSH_BEFORE_END + 16, "an early sync leaves only the last ones to the final one"


def test_a_single_task_keeps_its_own_fsync(cache_dir, monkeypatch):
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    payload = TaskPayload(key="f" * 32, name="double(1)", func=double, args=(1,), kwargs={},
                          store_root=str(cache_dir))
    assert remote.execute_batch([payload])[0].status == "done"
    assert fsyncs  # the file (and its directory) were fsynced before the rename was reported


def test_the_writer_holds_each_task_lock_until_its_result_is_stored(cache_dir, monkeypatch):
    payloads = payloads_for(cache_dir)
    seen = {}
    real_save = Store.save

    def save(self, key, value, **kw):
        seen[key] = (threading.current_thread().name, lock_state(self.root, key))
        return real_save(self, key, value, **kw)

    monkeypatch.setattr(Store, "save", save)
    reports = remote.execute_batch(payloads)
    assert [r.status for r in reports] == ["done"] * 5
    assert seen == {p.key: ("ndustria-writer", "held") for p in payloads}, "saved behind the task, under its lock"
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}, "every lock released after its save"


def test_a_batch_releases_no_key_before_its_row_is_committed(cache_dir, monkeypatch):
    # A free key whose row is not committed yet lets another process compute the task again.
    monkeypatch.setattr(blobs, "COMMIT_AFTER", 600.0)  # only the batch commits (the clock would, after 0.1 s)
    payloads = payloads_for(cache_dir)
    seen = []
    real_sync = Store.sync

    def sync(self, written=()):
        listed = subprocess.run([sys.executable, "-c", "import sys; from ndustria.store.entries import Store; "
                                 "print(' '.join(Store(sys.argv[1]).keys()))", str(cache_dir)],
                                capture_output=True, text=True, check=True).stdout.split()
        seen.append({p.key: lock_state(cache_dir, p.key) == "held" or p.key in listed for p in payloads})
        return real_sync(self, written)

    monkeypatch.setattr(Store, "sync", sync)
    assert [r.status for r in remote.execute_batch(payloads)] == ["done"] * 5
    assert seen and all(all(ok.values()) for ok in seen), seen
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}


class Unpicklable:
    def __reduce__(self):
        raise TypeError("this object refuses to be pickled")


def maybe_unpicklable(i):
    return Unpicklable() if i == 2 else i


def test_a_result_the_writer_cannot_store_fails_only_its_own_task(cache_dir):
    payloads = payloads_for(cache_dir, maybe_unpicklable)
    reports = remote.execute_batch(payloads)
    assert [r.status for r in reports] == ["done", "done", "failed", "done", "done"]
    assert "cannot be stored" in reports[2].error and "refuses to be pickled" in reports[2].error
    store = Store(cache_dir)
    assert sorted(store.keys()) == sorted(p.key for i, p in enumerate(payloads) if i != 2)
    assert os.listdir(cache_dir / "tmp") == [], "nothing half-written left behind"
    assert lock_state(cache_dir, payloads[2].key) == "free"


def test_tasks_with_instruments_are_saved_in_line(cache_dir, monkeypatch):
    payloads = payloads_for(cache_dir)
    for p in payloads:
        p.instruments = ("timeit",)
    threads = []
    real_save = Store.save
    monkeypatch.setattr(Store, "save", lambda self, key, value, **kw: (threads.append(threading.current_thread().name),
                                                                        real_save(self, key, value, **kw))[1])
    assert [r.status for r in remote.execute_batch(payloads)] == ["done"] * 5
    assert set(threads) == {threading.main_thread().name}


HOLDER = """
import sys, time
from ndustria.store.locks import key_lock
from ndustria.store.entries import Store
root, key = sys.argv[1], sys.argv[2]
with key_lock(root, key):
    print("held", flush=True)
    time.sleep(1.0)
    Store(root).save(key, "stored by the other process")
"""


def test_a_key_another_process_holds_waits_for_the_end_of_the_batch_and_is_found(cache_dir):
    payloads = payloads_for(cache_dir)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(cache_dir), payloads[1].key],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        held_at = time.time()
        reports = remote.execute_batch(payloads)
    finally:
        holder.wait(timeout=60)
    assert [r.status for r in reports] == ["done"] * 5
    assert reports[1].found and not any(r.found for i, r in enumerate(reports) if i != 1)
    assert max(r.end for r in reports if not r.found) < held_at + 0.9, "the free tasks did not wait for it"
    assert Store(cache_dir).load(payloads[1].key) == "stored by the other process", "computed once, not twice"
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}


@pytest.mark.parametrize("fsync", [True, False])
def test_an_inline_batch_looks_its_keys_up_at_once_and_finds_what_was_stored_meanwhile(cache_dir, monkeypatch, fsync):
    payloads = payloads_for(cache_dir, fsync=fsync)
    Store(cache_dir).save(payloads[2].key, "stored before")  # found by the batch's look-up
    lookups = []
    real = Store.known_checksums
    monkeypatch.setattr(Store, "known_checksums", lambda self, keys: (lookups.append(len(keys)), real(self, keys))[1])
    monkeypatch.setattr(Store, "contains", lambda self, key: pytest.fail("a key looked up alone"))
    reports = run_inline(payloads)
    assert [r.status for r in reports] == ["done"] * 5
    assert lookups == [5], "one look-up for the batch"
    assert [r.found for r in reports] == [False, False, True, False, False]
    assert Store(cache_dir).load(payloads[2].key) == "stored before", "found, not computed again"
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}


NESTED = """
import sys
from ndustria import Pipeline

cache = sys.argv[1]
outer = Pipeline(name="outer", backend="serial", cache_dir=cache, verbose=False)
inner = Pipeline(name="inner", backend="serial", cache_dir=cache, verbose=False)


def g(i):
    if i == 100:  # a task of a batch runs a pipeline that needs a later task of the same batch
        h = inner_g(150)
        inner.run()
        return h.result() + 1
    return i


outer_g = outer.AddFunction(version="1")(g)
inner_g = inner.AddFunction(version="1")(g)
hs = [outer_g(i) for i in range(200)]
outer.run()
print(hs[100].result(), hs[150].result(), outer.last_scheduler.submissions)
"""


NESTED_ON_OTHER_WORKERS = """
import sys
from concurrent.futures import ThreadPoolExecutor

from ndustria import Pipeline

CACHE, INNER = sys.argv[1], sys.argv[2]


def g(i):
    if i == 100:  # the inner pipeline runs its tasks on other threads or processes than this batch's
        if INNER == "threads":
            with ThreadPoolExecutor(2) as pool:
                inner = Pipeline(name="inner", executor=pool, cache_dir=CACHE, verbose=False)
                h = inner.AddFunction(version="1")(g)(150)
                inner.run()
        else:
            inner = Pipeline(name="inner", backend="processes", engines=1, cache_dir=CACHE, verbose=False)
            h = inner.AddFunction(version="1")(g)(150)
            inner.run()
            inner.close()
        return h.result() + 1
    return i


if __name__ == "__main__":
    outer = Pipeline(name="outer", backend=sys.argv[3], engines=1, cache_dir=CACHE, verbose=False)
    outer_g = outer.AddFunction(version="1")(g)
    hs = [outer_g(i) for i in range(200)]
    outer.run()
    print(hs[100].result(), hs[150].result(), outer.last_scheduler.submissions)
    outer.close()
"""


def run_nested(text: str, cache_dir, tmp_path, *args: str) -> None:
    """Run a NESTED script (it hung for good before batches gave back their claims) and check what it printed."""
    script = tmp_path / "nested.py"
    script.write_text(text)
    proc = subprocess.run([sys.executable, str(script), str(cache_dir), *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    value, other, submissions = map(int, proc.stdout.split())
    assert (value, other) == (151, 150)
    assert submissions < 100, "the tasks went in batches (else this tests nothing)"


def test_a_task_of_a_serial_batch_may_run_a_pipeline_that_needs_a_later_task_of_the_batch(cache_dir, tmp_path):
    run_nested(NESTED, cache_dir, tmp_path)


NESTED_ON_ENGINES = """
import sys
from ndustria import Pipeline

CACHE = sys.argv[1]


def g(i):
    if i == 100:  # on an engine: a task of a batch runs a pipeline that needs a later task of the same batch
        inner = Pipeline(name="inner", backend="serial", cache_dir=CACHE, verbose=False)
        h = inner.AddFunction(version="1")(g)(150)
        inner.run()
        return h.result() + 1
    return i


if __name__ == "__main__":
    outer = Pipeline(name="outer", backend="processes", engines=1, cache_dir=CACHE, verbose=False)
    outer_g = outer.AddFunction(version="1")(g)
    hs = [outer_g(i) for i in range(200)]
    outer.run()
    print(hs[100].result(), hs[150].result(), outer.last_scheduler.submissions)
    outer.close()
"""


def test_a_task_of_an_engine_batch_may_run_a_pipeline_that_needs_a_later_task_of_the_batch(cache_dir, tmp_path):
    run_nested(NESTED_ON_ENGINES, cache_dir, tmp_path)


SEEN: dict[str, Any] = {}

COUNTED = """
import os


def counted(i):
    with open(os.environ["COUNT_LOG"], "a") as f:
        f.write(f"{i} {os.getpid()}\\n")
    return 10 * i
"""

OTHER_ENGINE = """
import sys
from counted import counted
from ndustria.records import TaskPayload
from ndustria.run import worker
report = worker.execute(TaskPayload(key=f"{3:032x}", name="counted(3)", func=counted, args=(3,), kwargs={},
                                    store_root=sys.argv[1]))
print("found" if report.found else "computed", flush=True)
"""


def inner_exits(i):
    raise SystemExit(3)  # e.g. a task calling a command-line main()


def runs_a_pipeline_that_exits(i):
    cache = os.environ["NDUSTRIA_CACHE_DIR"]
    if i == 0:  # a pipeline of its own, ended by SystemExit (its Ctrl-C path); the task carries on
        inner = Pipeline(name="inner", backend="serial", cache_dir=cache, verbose=False)
        inner.AddFunction(version="1")(inner_exits)(0)
        with pytest.raises(SystemExit):
            inner.run()
        SEEN["own key after the inner run"] = lock_state(cache, f"{0:032x}")
    if i == 1:  # another engine wants task 3 meanwhile (its claim was given back when the inner run started)
        SEEN["other"] = subprocess.Popen([sys.executable, "-c", OTHER_ENGINE, cache], stdout=subprocess.PIPE, text=True)
        SEEN["other"].wait(timeout=60)
    return i


def test_a_pipeline_run_inside_a_task_gives_back_the_batchs_claims_and_each_task_runs_once(
        cache_dir, tmp_path, monkeypatch):
    (tmp_path / "counted.py").write_text(COUNTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("COUNT_LOG", str(tmp_path / "computed.log"))
    from counted import counted

    payloads = payloads_for(cache_dir, runs_a_pipeline_that_exits)
    payloads[3] = payloads_for(cache_dir, counted)[3]
    reports = remote.execute_batch(payloads)
    assert [r.status for r in reports] == ["done"] * 5
    assert SEEN["own key after the inner run"] == "held", "the inner run's interrupt released its task's own key"
    assert SEEN["other"].stdout.read().strip() == "computed" and reports[3].found, "the batch found it"
    assert (tmp_path / "computed.log").read_text().splitlines() == [f"3 {SEEN['other'].pid}"], "computed once"
    assert Store(cache_dir).load(payloads[3].key) == 30
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}


class InterruptedWrite(io.StringIO):
    """A stdout whose write of ``at`` raises KeyboardInterrupt (a Ctrl-C landing as a task is announced)."""

    def __init__(self, at: str) -> None:
        super().__init__()
        self.at = at

    def write(self, s: str) -> int:
        if self.at in s:
            self.at = "\0never"
            raise KeyboardInterrupt
        return super().write(s)


def side(i):
    return -i


def runs_a_pipeline_first(i):
    if i == 0:  # any pipeline run in a task: the batch's later claims are given back, then claimed again
        p = Pipeline(name="side", cache_dir=os.environ["NDUSTRIA_CACHE_DIR"], verbose=False)
        p.AddFunction(version="1")(side)(1000 + i)
        p.run()
    return 2 * i


@pytest.mark.parametrize("func", [double, runs_a_pipeline_first])
@pytest.mark.parametrize("run_batch", ["execute_batch", "execute_batch_inline"])
def test_a_ctrl_c_as_a_task_of_a_batch_starts_leaves_no_key_locked(cache_dir, monkeypatch, run_batch, func):
    # Between the task's claim leaving the batch and worker.execute's try/finally (MPI script mode
    # announces each task there): nothing else would ever release that lock in this process.
    payloads = payloads_for(cache_dir, func)
    monkeypatch.setattr(remote, "_ANNOUNCE", True)
    monkeypatch.setattr(sys, "stdout", InterruptedWrite(f"{func.__name__}(2)"))
    with pytest.raises(KeyboardInterrupt):
        getattr(remote, run_batch)(payloads)
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}, "a key left locked"


def test_a_failed_claim_of_a_nested_batch_leaves_the_outer_batchs_claims_to_it(cache_dir, monkeypatch):
    payloads = payloads_for(cache_dir)
    outer = worker.claim_batch(payloads[:3])  # as a batch does before its first task
    try:
        def failing(self, keys):
            raise sqlite3.OperationalError("disk I/O error")

        with monkeypatch.context() as patch:  # a pipeline run by the first task: its batch's look-up fails
            patch.setattr(Store, "known_checksums", failing)
            with pytest.raises(sqlite3.OperationalError):
                worker.claim_batch(payloads[1:])
        # the key the failed batch tried: still the outer batch's, which starts its task with it
        assert worker.start_claimed(payloads[1], outer[1]) is outer[1], "the outer batch's claim was lost"
    finally:
        worker.release_claims(outer)
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}


@pytest.mark.parametrize(("inner", "outer"), [("threads", "processes"), ("processes", "serial")])
def test_a_task_of_a_batch_may_run_a_pipeline_on_other_workers_that_needs_a_later_task_of_the_batch(
        cache_dir, tmp_path, inner, outer):
    run_nested(NESTED_ON_OTHER_WORKERS, cache_dir, tmp_path, inner, outer)


CROSS_BATCH = """
import os, sys, threading
from ndustria import Pipeline
from ndustria.records import TaskPayload
from ndustria.run import remote

CACHE, RUN = sys.argv[1], getattr(remote, sys.argv[2])
A, B, C = threading.Event(), threading.Event(), threading.Event()


def value(i):
    return 10 * i


def unrelated(i):
    return -i


def b1_first(i):  # any pipeline run: batch 1's claim on K is given back, and batch 2 claims K
    p = Pipeline(name="side", cache_dir=CACHE, verbose=False)
    p.AddFunction(version="1")(unrelated)(i)
    p.run()
    A.set()
    B.wait(30)
    return i


def b1_last(i):  # batch 1 has passed K (held by batch 2: left to its end)
    C.set()
    return i


def b2_first(i):  # a pipeline needing K, a later task of batch 2
    B.set()
    C.wait(30)
    p = Pipeline(name="inner", cache_dir=CACHE, verbose=False)
    h = p.AddFunction(version="1")(value)(7)
    p.run()
    return h.result()


K = Pipeline(name="k", cache_dir=CACHE, verbose=False).AddFunction(version="1")(value)(7).key


def payload(key, func, arg):
    return TaskPayload(key=key, name=f"{func.__name__}({arg})", func=func, args=(arg,), kwargs={}, store_root=CACHE)


out = {}


def batch2():
    A.wait(30)
    out[2] = RUN([payload("d" * 32, b2_first, 4), payload(K, value, 7)])


threads = [threading.Thread(target=lambda: out.setdefault(1, RUN([payload("a" * 32, b1_first, 1), payload(K, value, 7),
                                                                    payload("c" * 32, b1_last, 3)]))),
           threading.Thread(target=batch2)]
for t in threads:
    t.start()
for t in threads:
    t.join(60)
if any(t.is_alive() for t in threads):
    print("hung", flush=True)
    os._exit(3)
print(sorted(r.status for k in (1, 2) for r in out[k]), out[2][0].status, flush=True)
"""


@pytest.mark.parametrize("run_batch", ["execute_batch", "execute_batch_inline"])
def test_two_batches_of_one_process_listing_one_key_in_turn_do_not_wait_on_each_other(cache_dir, run_batch):
    # Batch 1 lists K; a run in its first task gives K back; batch 2 lists K; batch 1 reaches K (held: left to its
    # end); batch 2's first task runs a pipeline needing K, which must give back batch 2's claim, not find it gone.
    proc = subprocess.run([sys.executable, "-c", CROSS_BATCH, str(cache_dir), run_batch], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.split("]")[0] + "]" == str(["done"] * 5) and proc.stdout.split()[-1] == "done"


def interrupted_at_2(i):
    if i == 2:
        raise KeyboardInterrupt
    return 2 * i


@pytest.mark.parametrize("fsync", [True, False])
def test_an_interrupted_inline_batch_keeps_what_it_saved_and_releases_every_lock(cache_dir, fsync):
    payloads = payloads_for(cache_dir, interrupted_at_2, fsync=fsync)
    with pytest.raises(KeyboardInterrupt):
        remote.execute_batch_inline(payloads)
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}, "no key left locked"
    listed = subprocess.run([sys.executable, "-c", "import sys; from ndustria.store.entries import Store; "
                             "print(sorted(Store(sys.argv[1]).keys()))", str(cache_dir)],
                            capture_output=True, text=True, check=True).stdout
    assert listed.strip() == str(sorted(p.key for p in payloads[:2])), "the results saved before it, committed"


@pytest.mark.parametrize("fsync", [True, False])
def test_a_key_held_in_this_process_runs_after_the_inline_batch(cache_dir, fsync):
    payloads = payloads_for(cache_dir, fsync=fsync)
    held = locks.KeyLock(str(cache_dir), payloads[3].key)
    assert held.acquire(False)
    done = threading.Timer(0.5, held.release)  # e.g. another pipeline's thread computing it
    done.start()
    try:
        reports = run_inline(payloads)
    finally:
        done.join()
    assert [r.status for r in reports] == ["done"] * 5
    assert reports[3].start > max(r.end for i, r in enumerate(reports) if i != 3), "after the others"


def test_code_shipped_by_value_keeps_its_file_for_tracebacks():
    """cloudpickle names such code "<dynamic-code>"; calls sent to engines keep the defining file."""
    import traceback

    import cloudpickle

    from ndustria.run import pickling

    def outer(x):
        helper = lambda y: 1 / y  # noqa: E731 - nested code objects keep their file too
        return helper(x)

    shipped = cloudpickle.loads(pickling.dumps(outer))
    assert shipped.__code__.co_filename == __file__
    assert cloudpickle.loads(cloudpickle.dumps(outer)).__code__.co_filename == "<dynamic-code>"
    try:
        shipped(0)
    except ZeroDivisionError as exc:
        text = "".join(traceback.format_exception(exc))
    assert text.count(f'File "{__file__}"') == 3 and "helper = lambda y: 1 / y" in text
    assert shipped(4) == 0.25


def test_a_local_inline_batch_reports_once_its_rows_are_committed_and_releases_its_locks_at_the_next_settle(cache_dir):
    """Without fsync (a local run) the batch's commit lands on the store's thread: the reports come (as a
    future, unless it landed already) only once another process can read every result; the keys stay
    locked until the next batch (or flush) settles that commit, then every one is free."""
    payloads = payloads_for(cache_dir, n=40, fsync=False)
    out = remote.execute_batch_inline(payloads)
    reports = out.result(timeout=60) if isinstance(out, Future) else out
    assert [r.status for r in reports] == ["done"] * 40
    listed = subprocess.run([sys.executable, "-c", "import sys; from ndustria.store.entries import Store; "
                             "print(len(list(Store(sys.argv[1]).keys())))", str(cache_dir)],
                            capture_output=True, text=True, check=True).stdout
    assert listed.strip() == "40", "reported before another process could read the results"
    assert lock_state(cache_dir, payloads[0].key) == "held", "released before its commit was settled"
    Store(cache_dir).settle()
    assert {lock_state(cache_dir, p.key) for p in payloads} == {"free"}
