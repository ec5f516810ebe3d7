"""Instruments by behaviour: timing files that survive cached reruns, per-task memory peaks,
line profiles of tasks and their helpers (run once, in-process and in worker processes)."""

from __future__ import annotations

import csv
import os
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from ndustria import Pipeline, TaskError
from ndustria.record.instruments import call_instrumented
from ndustria.records import TaskReport


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def summing_helper(n):
    total = 0
    for i in range(n):
        total += i * i
    return total


def test_cached_rerun_keeps_the_timings_of_the_run_that_computed_them(cache_dir):
    def build(pipe):
        @pipe.AddFunction()
        def slow(i):
            return summing_helper(20_000 * (i + 1))

        @pipe.AddFunction()
        def combine(values):
            return sum(values)

        return slow, combine

    first = Pipeline(name="timed", timeit=True, verbose=False)
    slow, combine = build(first)
    combine([slow(i) for i in range(3)])
    first.run()
    path = cache_dir / "timed_timing.csv"
    rows1 = read_csv(path)
    assert {"task", "function", "key", "engine", "start", "end", "wall_s", "cpu_s"} <= set(rows1[0])
    assert [r["task"] for r in rows1] == ["slow(0)", "slow(1)", "slow(2)", "combine([slow(0), slow(1), slow(2)])"]
    assert all(float(r["wall_s"]) > 0 and r["start"] and r["end"] for r in rows1)

    second = Pipeline(name="timed", timeit=True, verbose=False)
    slow, combine = build(second)
    combine([slow(i) for i in range(4)])  # three cached inputs, one new input, a new combine
    summary = second.run()
    assert summary.cached == 3
    rows2 = {r["task"]: r for r in read_csv(path)}
    for row in rows1[:3]:
        assert rows2[row["task"]] == row, "a cached task keeps the timing of the run that computed it"
    assert float(rows2["slow(3)"]["wall_s"]) > 0
    assert rows2["slow(3)"]["run_id"] != rows1[0]["run_id"]

    third = Pipeline(name="timed", timeit=True, verbose=False)  # everything cached: same file again
    slow, combine = build(third)
    combine([slow(i) for i in range(4)])
    assert third.run().executed == 0
    assert {r["task"]: r for r in read_csv(path)} == rows2


def test_files_are_written_only_for_the_instruments_asked_for(cache_dir):
    pipe = Pipeline(name="quiet", verbose=False)

    @pipe.AddFunction()
    def f(x):
        return x

    f(1)
    pipe.run()
    assert [p.name for p in cache_dir.glob("quiet_*")] == ["quiet_log.txt"]  # the run's log (ndustria -l) only
    assert pipe.catalog.tasks(1)[0]["wall_s"] is not None  # timing is always recorded in the catalog


def test_memory_peak_belongs_to_the_task_that_allocated(cache_dir):
    pipe = Pipeline(name="mem", memcheck=True, verbose=False)

    @pipe.AddFunction()
    def allocate(n):
        a = np.ones(n)  # 80 MB for 10 million float64
        return float(a.sum())

    @pipe.AddFunction()
    def small(x):
        return [x] * 10

    small(allocate(10_000_000))
    pipe.run()
    rows = {r["function"]: r for r in read_csv(cache_dir / "mem_memcheck.csv")}
    big, little = rows["allocate"], rows["small"]
    assert int(big["peak_bytes"]) >= 80_000_000
    assert int(big["final_bytes"]) < 1_000_000, "the array was freed before the task ended"
    assert int(little["peak_bytes"]) < 1_000_000, "the previous task's peak must not leak into this one"
    assert int(big["rss_peak_bytes"]) >= int(big["rss_initial_bytes"]) + 70_000_000
    for field in ("initial_bytes", "rss_initial_bytes", "rss_final_bytes"):
        assert int(little[field]) >= 0
    assert not tracemalloc.is_tracing(), "memcheck stops tracemalloc when it started it"


def test_memcheck_leaves_a_users_own_tracemalloc_running(cache_dir):
    pipe = Pipeline(name="mem2", memcheck=True, verbose=False)

    @pipe.AddFunction()
    def f(n):
        return list(range(n))

    f(1000)
    tracemalloc.start()
    try:
        pipe.run()
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()
    assert int(read_csv(cache_dir / "mem2_memcheck.csv")[0]["peak_bytes"]) > 0


def test_a_profiled_task_runs_once_and_its_helpers_are_profiled(cache_dir, tmp_path):
    counter = tmp_path / "calls.txt"
    pipe = Pipeline(name="prof", profiling=True, timeit=True, verbose=False)

    @pipe.AddFunction()
    def work(path, n):
        with open(path, "a") as f:
            f.write("called\n")
        return summing_helper(n)

    original = summing_helper.__code__
    h = work(str(counter), 500)
    pipe.run()
    assert counter.read_text() == "called\n", "the task ran exactly once"
    assert h.result() == summing_helper(500)
    assert summing_helper.__code__ is original, "profiling gives the helper its own code back"

    text = (cache_dir / "prof_profile.txt").read_text()
    assert "Task: work(" in text
    assert "work at line" in text and "Function: summing_helper at line" in text
    helper_lines = [line for line in text.splitlines() if "total += i * i" in line]
    assert helper_lines and helper_lines[0].split()[1] == "500", "per-line hits of the helper"

    rows = pipe.catalog.profile_lines(key=h.key)
    assert {r["func_name"].rsplit(".", 1)[-1] for r in rows} == {"work", "summing_helper"}
    assert any(r["func_name"] == "summing_helper" and r["hits"] == 500 for r in rows)


def test_profiles_travel_back_from_worker_processes(cache_dir, tmp_path):
    pipe = Pipeline(name="remote", backend="processes", engines=2, profiling=True, memcheck=True, verbose=False)

    def inner_helper(n):
        return sum(range(n))

    @pipe.AddFunction()
    def task(i, path):
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        return inner_helper(1000 * (i + 1))

    handles = [task(i, str(tmp_path / f"c{i}.txt")) for i in range(4)]
    pipe.run()
    assert [h.result() for h in handles] == [sum(range(1000 * (i + 1))) for i in range(4)]
    pids = {int((tmp_path / f"c{i}.txt").read_text()) for i in range(4)}
    assert os.getpid() not in pids
    assert all(len((tmp_path / f"c{i}.txt").read_text().splitlines()) == 1 for i in range(4))

    text = (cache_dir / "remote_profile.txt").read_text()
    for i in range(4):
        assert f"Task: task({i}, " in text
    assert text.count("inner_helper at line") == 4
    engines = {r["engine"] for r in read_csv(cache_dir / "remote_memcheck.csv")}
    assert engines and all(e != f"pid{os.getpid()}" for e in engines)


def test_a_failing_task_is_still_measured_and_its_traceback_is_the_users(cache_dir):
    pipe = Pipeline(name="fail", memcheck=True, profiling=True, timeit=True, verbose=False)

    @pipe.AddFunction()
    def broken(x):
        raise ValueError(f"bad {x}")

    broken(1)
    with pytest.raises(TaskError) as info:
        pipe.run()
    failure = info.value.failures[0] if hasattr(info.value, "failures") else None
    text = failure.traceback if failure is not None else str(info.value)
    assert "ValueError: bad 1" in text and "ndustria/instruments.py" not in text
    assert not tracemalloc.is_tracing()
    row = pipe.catalog.tasks(1)[0]
    assert row["status"] == "failed" and row["wall_s"] is not None and "memory" in row["metrics"]


def test_instrument_metrics_are_plain_data():
    report = TaskReport(key="k", status="done")
    value = call_instrumented(("timeit", "memcheck", "profiling"), summing_helper, (100,), {}, report)
    assert value == summing_helper(100)
    assert report.wall_s > 0 and report.end >= report.start > 0
    again = pickle.loads(pickle.dumps(report))
    assert set(again.metrics) == {"memory", "profile"}
    (function,) = again.metrics["profile"]
    assert function["name"] == "summing_helper" and function["lineno"] == summing_helper.__code__.co_firstlineno
    assert any(line["hits"] == 100 and "total += i * i" in line["source"] for line in function["lines"])


def unused_helper(x):
    return -x


def test_helpers_that_did_not_run_are_left_out_of_the_profile(cache_dir):
    pipe = Pipeline(name="branches", profiling=True, verbose=False)

    @pipe.AddFunction()
    def pick(x, negate):
        return unused_helper(x) if negate else summing_helper(x)

    pick(10, False)
    pipe.run()
    text = (cache_dir / "branches_profile.txt").read_text()
    assert "summing_helper at line" in text
    assert "Function: unused_helper" not in text


def test_memcheck_rss_skips_tracemalloc(cache_dir):
    import tracemalloc

    from ndustria import ConfigError, Pipeline

    pipe = Pipeline(name="rssonly", memcheck="rss", verbose=False)

    @pipe.AddFunction()
    def tracing_state(n):
        return tracemalloc.is_tracing()

    h = tracing_state(1)
    pipe.run()
    assert h.result() is False
    with pytest.raises(ConfigError, match="memcheck"):
        Pipeline(memcheck="heap")
