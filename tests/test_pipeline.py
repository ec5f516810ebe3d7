"""The Pipeline API by behaviour: what runs, what is cached, what the user sees."""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np
import pytest
from support import StoredEntry

from ndustria import (
    NdustriaError,
    NdustriaWarning,
    Pipeline,
    ResultNotPicklableError,
    TaskError,
    TaskNotComputedError,
    UnhashableError,
)


class CallLog(list):
    """A side-effect log that tasks append to; its token keeps it out of the code fingerprint."""

    def __ndustria_token__(self) -> str:
        return "call-log"


CALLS = CallLog()


def make_pipeline(**kwargs) -> Pipeline:
    return Pipeline(name="test", **kwargs)


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def build(pipe: Pipeline):
    @pipe.AddFunction()
    def produce(N, scale=1):
        CALLS.append(("produce", N))
        return np.arange(N) * scale

    @pipe.AddFunction()
    def total(values):
        CALLS.append(("total",))
        return int(np.sum(values))

    return produce, total


def test_declaring_runs_nothing_and_run_computes_once(cache_dir):
    pipe = make_pipeline()
    produce, total = build(pipe)
    h = total(produce(10))
    assert CALLS == []
    assert len(h.id) == 32
    assert h.key is None, "a dependent's cache key names its input's result, which does not exist yet"
    pipe.run()
    assert CALLS == [("produce", 10), ("total",)]
    assert h.result() == 45 and len(h.key) == 32

    again = make_pipeline()
    produce2, total2 = build(again)
    h2 = total2(produce2(10))
    again.run()
    assert CALLS == [("produce", 10), ("total",)], "the second pipeline must hit the cache"
    assert h2.key == h.key and h2.result() == 45


def test_positional_and_keyword_calls_are_the_same_task(cache_dir):
    pipe = make_pipeline()
    produce, _ = build(pipe)
    assert produce(64).key == produce(N=64).key == produce(64, 1).key == produce(N=64, scale=1).key
    assert produce(64).key != produce(65).key
    assert produce(64).key != produce(64, scale=2).key


def test_str_shows_the_call_as_written(cache_dir):
    pipe = make_pipeline()
    produce, total = build(pipe)
    assert str(total(produce(N=1024))) == "total(produce(N=1024))"
    assert str(produce(5)) == "produce(5)"
    long_text = "x" * 500
    assert len(str(produce(N=long_text))) < 80


def test_handles_nested_in_containers_are_dependencies(cache_dir):
    pipe = make_pipeline()
    produce, _ = build(pipe)

    @pipe.AddFunction()
    def combine(items, mapping, pair, group):
        return (sum(int(v.sum()) for v in items), sorted(mapping), int(pair[1].sum()), sorted(group))

    a, b = produce(3), produce(4)
    h = combine([a, b], {"a": a, "b": [b]}, (1, b), {a.key[:4]})
    assert {d.key for d in h.deps} == {a.key, b.key}
    pipe.run()
    assert h.result() == (3 + 6, ["a", "b"], 6, [a.key[:4]])


def test_keys_ignore_the_pipeline_name(cache_dir):
    keys = []
    for name in ("first", "second"):
        pipe = Pipeline(name=name)
        produce, _ = build(pipe)
        keys.append(produce(7).key)
    assert keys[0] == keys[1]


def test_each_pipeline_has_its_own_tasks(cache_dir):
    p1, p2 = make_pipeline(), make_pipeline()
    produce1, _ = build(p1)
    build(p2)
    produce1(3)
    assert len(p1.tasks) == 1 and p2.tasks == []


def test_rerun_runs_the_task_but_not_its_dependencies(cache_dir):
    pipe = make_pipeline()
    produce, total = build(pipe)
    total(produce(5))
    pipe.run()
    CALLS.clear()

    pipe2 = make_pipeline()
    produce2, _ = build(pipe2)

    @pipe2.AddFunction(rerun=True)
    def total(values):  # noqa: F811 - the same task, now with rerun=True
        CALLS.append(("total",))
        return int(np.sum(values))

    total(produce2(5))
    pipe2.run()
    assert CALLS == [("total",)]


def test_dryrun_calls_nothing_and_says_what_would_run(cache_dir, capsys):
    pipe = make_pipeline(dryrun=True)
    produce, total = build(pipe)
    h = total(produce(5))
    pipe.run()
    out = capsys.readouterr().out
    assert CALLS == []
    assert "[Dry run] would run: produce(5)" in out
    assert "[Dry run] would run: total(produce(5))" in out
    assert out.index("would run: produce(5)") < out.index("would run: total(")
    with pytest.raises(TaskNotComputedError):
        h.result()


@pytest.mark.parametrize("value", [None, "results/file.txt", "", 0, b"", (), {"a": None}])
def test_any_return_value_is_a_cached_result(cache_dir, value):
    runs = CallLog()
    pipe = make_pipeline()

    @pipe.AddFunction()
    def give(tag):
        runs.append(tag)
        return value

    h = give(repr(value))
    pipe.run()
    assert h.result() == value
    pipe2 = make_pipeline()
    pipe2.AddFunction()(give.func)(repr(value))
    pipe2.run()
    assert runs == [repr(value)]


def test_console_lines_match_the_original(cache_dir, capsys):
    pipe = make_pipeline()
    produce, total = build(pipe)
    total(produce(N=3))
    pipe.run()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "[Added Task] produce(N=3)"
    assert out[1] == "[Added Task] total(produce(N=3))"
    assert out[2:5] == ["---", " Starting a run with 2 tasks.", "---"]
    saved = [line for line in out if line.startswith("Saved result of ")]
    assert saved[0].startswith(f"Saved result of produce(N=3) to {cache_dir}")
    assert saved[1].startswith("Saved result of total(produce(N=3)) to ")
    assert out[-1] == "All done."

    pipe2 = make_pipeline()
    produce2, total2 = build(pipe2)
    total2(produce2(N=3))
    pipe2.run()
    out = capsys.readouterr().out.splitlines()
    assert out == ["[Cache hit!] produce(N=3) can be skipped",
                   "[Cache hit!] total(produce(N=3)) can be skipped",
                   "---", " Starting a run with 0 tasks.", "---", "All done."]


def test_a_failing_task_skips_its_dependents_and_nothing_else(cache_dir, capsys):
    pipe = make_pipeline()

    @pipe.AddFunction()
    def maybe_fail(x):
        CALLS.append(("maybe_fail", x))
        if x == 2:
            raise ValueError(f"bad input {x}")
        return x

    @pipe.AddFunction()
    def plus_one(x):
        CALLS.append(("plus_one", x))
        return x + 1

    good = [plus_one(maybe_fail(x)) for x in (1, 3)]
    bad = plus_one(maybe_fail(2))
    with pytest.raises(TaskError) as info:
        pipe.run()
    err = info.value
    assert len(err.failures) == 1
    failure = err.failures[0]
    assert failure.task == "maybe_fail(2)"
    assert isinstance(failure.exception, ValueError)
    assert "bad input 2" in failure.traceback and "raise ValueError" in failure.traceback
    assert failure.skipped == ["plus_one(maybe_fail(2))"]
    assert "maybe_fail(2)" in str(err) and "ValueError" in str(err)
    assert [h.result() for h in good] == [2, 4]
    assert ("plus_one", None) not in CALLS and len([c for c in CALLS if c[0] == "plus_one"]) == 2
    with pytest.raises(TaskNotComputedError, match="skipped"):
        bad.result()
    out = capsys.readouterr().out
    assert "[Failed] maybe_fail(2): ValueError: bad input 2" in out
    assert "All done." not in out

    # The completed tasks were cached: a fixed re-run only computes what failed.
    CALLS.clear()
    pipe2 = make_pipeline()

    @pipe2.AddFunction()
    def maybe_fail(x):  # noqa: F811 - fixed version of the same function
        CALLS.append(("maybe_fail", x))
        return x

    pipe2.AddFunction()(plus_one.func)
    for x in (1, 2, 3):
        plus_one_fixed = pipe2.AddFunction()(plus_one.func)
        plus_one_fixed(maybe_fail(x))
    pipe2.run()
    assert sorted(CALLS) == [("maybe_fail", 1), ("maybe_fail", 2), ("maybe_fail", 3),
                             ("plus_one", 1), ("plus_one", 2), ("plus_one", 3)]


def test_unhashable_arguments_fail_before_anything_runs(cache_dir, tmp_path):
    pipe = make_pipeline()
    produce, total = build(pipe)
    produce(3)
    with pytest.raises(UnhashableError) as info:
        total(x for x in range(3))
    message = str(info.value)
    assert "total" in message and "'values'" in message and "generator" in message
    assert isinstance(info.value, NdustriaError)
    with open(tmp_path / "f.txt", "w") as fh, pytest.raises(NdustriaError, match="values"):
        total(fh)
    assert CALLS == []


def test_two_arrays_with_the_same_str_are_different_tasks(cache_dir):
    pipe = make_pipeline()
    _, total = build(pipe)
    a = np.zeros(10_000)
    b = a.copy()
    b[5_000] = 1.0
    assert str(a) == str(b)
    assert total(a).key != total(b).key


def test_unpicklable_result_names_the_task_and_leaves_nothing(cache_dir):
    import threading

    pipe = make_pipeline()

    @pipe.AddFunction()
    def make_lock(n):
        return threading.Lock()

    h = make_lock(1)
    with pytest.raises(TaskError) as info:
        pipe.run()
    assert "make_lock(1)" in str(info.value)
    assert isinstance(info.value.failures[0].exception, ResultNotPicklableError)
    assert not pipe.store.contains(h.key)
    assert list((cache_dir / "tmp").iterdir()) == []


def test_a_damaged_entry_is_reported_removed_and_recomputed(cache_dir, tmp_path):
    pipe = make_pipeline()

    @pipe.AddFunction()
    def payload(n):
        CALLS.append(("payload", n))
        return {"n": n}

    h = payload(1)
    pipe.run()
    path = StoredEntry(pipe.store, h.key)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))

    pipe2 = make_pipeline()
    h2 = pipe2.AddFunction()(payload.func)(1)
    pipe2.run()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = h2.result()
    assert any(issubclass(w.category, NdustriaWarning) and "payload(1)" in str(w.message) for w in caught)
    assert CALLS == [("payload", 1), ("payload", 1)]
    assert value == {"n": 1}


def test_a_damaged_input_is_recomputed_before_its_consumer_runs(cache_dir):
    pipe = make_pipeline()
    produce, total = build(pipe)
    p = produce(6)
    pipe.run()
    path = StoredEntry(pipe.store, p.key)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    CALLS.clear()

    pipe2 = make_pipeline()
    produce2, total2 = build(pipe2)
    t = total2(produce2(6))
    with pytest.warns(NdustriaWarning, match=r"produce\(6\)"):
        pipe2.run()
    assert CALLS == [("produce", 6), ("total",)]  # the consumer never ran on damaged input
    assert t.result() == 15


def test_result_before_run_says_what_to_do(cache_dir):
    pipe = make_pipeline()
    produce, _ = build(pipe)
    with pytest.raises(TaskNotComputedError, match=r"run\(\)"):
        produce(99).result()


def test_cache_directory_is_private(cache_dir):
    pipe = make_pipeline()
    produce, _ = build(pipe)
    produce(2)
    pipe.run()
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700


def test_processes_backend_runs_in_other_processes(cache_dir):
    pipe = make_pipeline(backend="processes", engines=2)

    @pipe.AddFunction()
    def where(i):
        return os.getpid()

    @pipe.AddFunction()
    def collect(pids):
        return sorted(set(pids))

    handles = [where(i) for i in range(6)]
    c = collect(handles)
    pipe.run()
    assert os.getpid() not in c.result()
    assert pipe.run().executed == 0  # nothing pending: nothing runs again


def test_processes_backend_failure_is_reported(cache_dir):
    pipe = make_pipeline(parallel=True, backend="processes", engines=2)

    @pipe.AddFunction()
    def boom(i):
        if i == 1:
            raise KeyError("missing")
        return i

    hs = [boom(i) for i in range(3)]
    with pytest.raises(TaskError) as info:
        pipe.run()
    assert [f.task for f in info.value.failures] == ["boom(1)"]
    assert isinstance(info.value.failures[0].exception, KeyError)
    assert hs[0].result() == 0 and hs[2].result() == 2


def test_version_overrides_the_code_fingerprint(cache_dir):
    pipe = make_pipeline()

    @pipe.AddFunction(version="1")
    def f(x):
        return x

    k1 = f(1).key

    @pipe.AddFunction(version="1")
    def f(x):  # noqa: F811
        return x + 1  # a refactor the user declares equivalent

    assert f(1).key == k1


def test_a_cached_result_removed_behind_our_back_is_recomputed_on_demand(cache_dir):
    pipe = make_pipeline()
    produce, _ = build(pipe)
    produce(4)
    pipe.run()
    pipe2 = make_pipeline()
    produce2, _ = build(pipe2)
    h = produce2(4)
    pipe2.run()
    assert h.status == "cached"
    pipe2.store.remove(h.key)
    CALLS.clear()
    with pytest.warns(NdustriaWarning, match=r"produce\(4\).*removed"):
        assert list(h.result()) == [0, 1, 2, 3]
    assert CALLS == [("produce", 4)]


def test_a_serial_batch_of_tiny_tasks_is_not_marked_running_all_at_once(cache_dir):
    # The serial backend runs a batch in the scheduler's thread, one task after the other: the catalog
    # would have called the whole batch "running" while one of them ran (and paid an update per task).
    seen = CallLog()
    pipe = Pipeline(name="statuses", backend="serial", verbose=False)

    @pipe.AddFunction()
    def tiny(i):
        if i == 150:
            import sqlite3

            db = sqlite3.connect(cache_dir / "catalog.sqlite")
            seen.extend(db.execute("SELECT status, count(*) FROM task_runs WHERE run_id = (SELECT max(run_id)"
                                   " FROM runs) GROUP BY status").fetchall())
            db.close()
        return i

    handles = [tiny(i) for i in range(200)]
    pipe.run()
    assert pipe.last_scheduler.submissions < 100, "the tiny tasks went in batches"
    counts = dict(seen)
    assert counts.get("running", 0) <= 1 and counts.get("queued", 0) > 1, counts
    assert [h.result() for h in handles[:3]] == [0, 1, 2]
    assert pipe.catalog.tasks(pipe._run_id) and {t["status"] for t in pipe.catalog.tasks(pipe._run_id)} == {"done"}


def test_a_ctrl_c_that_lands_between_a_lock_and_its_release_leaves_no_key_locked(cache_dir, monkeypatch):
    # Python raises KeyboardInterrupt at any bytecode: here, just after a batch lent a task its lock.
    from support import lock_state

    from ndustria.run import worker

    pipe = Pipeline(name="interrupted", backend="serial", verbose=False)
    tiny = pipe.AddFunction()(lambda i: i)
    handles = [tiny(i) for i in range(300)]
    real, started = worker.start_claimed, []

    def interrupted(payload, claimed):
        started.append(payload.key)
        if len(started) == 150:
            real(payload, claimed)  # the lock is the task's now, and nothing will release it
            raise KeyboardInterrupt
        return real(payload, claimed)

    monkeypatch.setattr(worker, "start_claimed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipe.run()
    assert len(started) >= 150, "the tasks went in batches (else this tests nothing)"
    assert {lock_state(cache_dir, h.key) for h in handles[140:160]} == {"free"}
    monkeypatch.setattr(worker, "start_claimed", real)
    again = [tiny(i) for i in range(300)]  # the same cell again: nothing waits for a lock this process holds
    pipe.run()
    assert [h.result() for h in again[148:152]] == [148, 149, 150, 151]


def test_binding_by_position_matches_the_signatures_at_every_arity(tmp_path):
    """TaskFunction.bind's shortcuts (one, two, more positional arguments, defaults filled in) give what
    ``inspect.Signature.bind`` + ``apply_defaults`` give."""
    import inspect

    from ndustria.task import TaskFunction

    def f0():
        return 0

    def f1(a):
        return a

    def f2(a, b=2):
        return a, b

    def f3(a, b, c=3, d=(4,)):
        return a, b, c, d

    pipe = Pipeline(name="arity", cache_dir=tmp_path / "cache", verbose=False)
    for func, calls in ((f0, [()]), (f1, [(1,)]), (f2, [(1,), (1, 5)]), (f3, [(1, 2), (1, 2, 3), (1, 2, 3, 4)])):
        task = TaskFunction(func, pipe)
        for args in calls:
            bound = inspect.signature(func).bind(*args)
            bound.apply_defaults()
            assert task.bind(args, {}) == (bound.args, bound.kwargs, dict(bound.arguments)), (func, args)
    with pytest.raises(TypeError):
        TaskFunction(f2, pipe).bind((), {})
