"""Parallel backends by behaviour: one contract every executor keeps, then ipyparallel specifics.

One local ipyparallel cluster (2 engines, ndustria's own registry) serves the whole
session; tests that kill engines start replacements before they return.
Task functions are defined inside the tests, so cloudpickle ships them by value.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import ipyparallel as ipp  # installed by scripts/test.sh: missing is a failure, not a skip
import pytest
from support import AS_IN_A_TERMINAL

from ndustria import Pipeline, TaskError, TaskNotComputedError
from ndustria.run import backends
from ndustria.run.batching import BatchPolicy

ENGINES = 2


@pytest.fixture(scope="session")
def local_cluster():
    from ndustria.run import cluster

    client = cluster.local_client(ENGINES)
    yield client
    cluster.stop_local()


def restore_engines(client, n: int = ENGINES) -> None:
    """Start engines until the shared local cluster has ``n`` again (after a test killed some)."""
    from ndustria.run import cluster

    missing = n - len(client.ids)
    if missing > 0:
        cluster.local_cluster(n).start_engines_sync(n=missing)
        client.wait_for_engines(n, timeout=60)


def diamond(pipe: Pipeline):
    """a(i) for 4 i's -> pairs -> total; and one independent chain that fails when asked."""

    @pipe.AddFunction()
    def a(i):
        return i * 10

    @pipe.AddFunction()
    def pair(x, y):
        return x + y

    @pipe.AddFunction()
    def total(values):
        return sum(values)

    @pipe.AddFunction()
    def fragile(i):
        if i < 0:
            raise ValueError(f"negative input {i}")
        return i

    @pipe.AddFunction()
    def after(x):
        return x + 1

    xs = [a(i) for i in range(4)]
    t = total([pair(xs[0], xs[1]), pair(xs[2], xs[3])])
    return t, fragile, after


class ExecutorContract:
    """What every backend must do exactly like a serial run."""

    def make(self, **kwargs) -> Pipeline:
        raise NotImplementedError

    def test_graph_runs_and_is_cached(self, cache_dir):
        pipe = self.make()
        t, _, _ = diamond(pipe)
        summary = pipe.run()
        assert t.result() == 60
        assert summary.executed == 7
        again = self.make()
        t2, _, _ = diamond(again)
        assert again.run().executed == 0 and t2.result() == 60

    def test_a_raising_task_skips_dependents_and_nothing_else(self, cache_dir):
        pipe = self.make()
        t, fragile, after = diamond(pipe)
        bad = after(fragile(-1))
        good = after(fragile(5))
        with pytest.raises(TaskError) as info:
            pipe.run()
        (failure,) = info.value.failures
        assert failure.task == "fragile(-1)"
        assert isinstance(failure.exception, ValueError)
        assert "negative input -1" in failure.traceback
        # as in a serial run: the file and the line that raised, not cloudpickle's "<dynamic-code>"
        assert f'File "{__file__}", line' in failure.traceback and "<dynamic-code>" not in failure.traceback
        assert 'raise ValueError(f"negative input {i}")' in failure.traceback
        assert failure.skipped == ["after(fragile(-1))"]
        assert t.result() == 60 and good.result() == 6
        with pytest.raises(TaskNotComputedError, match="skipped"):
            bad.result()


class TestSerial(ExecutorContract):
    def make(self, **kwargs) -> Pipeline:
        return Pipeline(name="contract", backend="serial", **kwargs)


class TestProcesses(ExecutorContract):
    def make(self, **kwargs) -> Pipeline:
        return Pipeline(name="contract", backend="processes", engines=2, **kwargs)


class TestIpyparallel(ExecutorContract):
    @pytest.fixture(autouse=True)
    def _cluster(self, local_cluster):
        self.client = local_cluster

    def make(self, **kwargs) -> Pipeline:
        return Pipeline(name="contract", parallel=True, engines=ENGINES, **kwargs)


@pytest.fixture(scope="module")
def dask_executor():
    import distributed
    client = distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    yield client.get_executor()
    client.close()


class TestDaskExecutor(ExecutorContract):
    @pytest.fixture(autouse=True)
    def _dask(self, dask_executor):
        self.dask_executor = dask_executor

    def make(self, **kwargs) -> Pipeline:
        return Pipeline(name="contract", executor=self.dask_executor, engines=2, **kwargs)


# -- choosing a backend ------------------------------------------------------------------

MPI_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE", "PMI_RANK",
            "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


@pytest.fixture
def no_mpi_env(monkeypatch):
    for var in MPI_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_parallel_means_ipyparallel_unless_under_mpiexec(no_mpi_env):
    assert backends.choose(parallel=True, backend=None) == "ipyparallel"
    assert backends.choose(parallel=False, backend=None) == "serial"
    no_mpi_env.setenv("PMI_SIZE", "4")
    no_mpi_env.setenv("PMI_RANK", "2")
    assert backends.mpi_world() == (2, 4)
    assert backends.choose(parallel=True, backend=None) == "mpi"
    assert backends.choose(parallel=True, backend="processes") == "processes"
    assert backends.choose(parallel=False, backend=None) == "serial"
    no_mpi_env.setenv("PMI_SIZE", "1")
    assert backends.choose(parallel=True, backend=None) == "ipyparallel"
    assert backends.choose(parallel=True, backend=None, executor=object()) == "executor"
    assert backends.choose(parallel=False, backend=None, cluster="default") == "ipyparallel"


def test_mpi_backend_outside_mpiexec_says_what_to_run(cache_dir, no_mpi_env):
    from ndustria import ConfigError

    pipe = Pipeline(name="t", backend="mpi")

    @pipe.AddFunction()
    def f(x):
        return x

    f(1)
    with pytest.raises(ConfigError, match="mpiexec -n"):
        pipe.run()


def test_the_local_cluster_is_started_once_and_reused(cache_dir, local_cluster):
    pids = []
    for name in ("first", "second"):
        pipe = Pipeline(name=name, parallel=True, engines=ENGINES)

        @pipe.AddFunction()
        def where(i, run):
            import os

            return os.getpid()

        handles = [where(i, name) for i in range(4)]
        pipe.run()
        assert pipe.backend.name == "ipyparallel"
        pids.append({h.result() for h in handles})
        pipe.close()  # releases the pipeline; the shared cluster stays up
    engine_pids = set(local_cluster[:].apply_sync(os.getpid))
    assert pids[0] | pids[1] <= engine_pids and os.getpid() not in engine_pids


# -- batching ------------------------------------------------------------------------------

def first_batch(ready: int, function: str = "tiny", alone: bool = False, **kwargs) -> int:
    policy = BatchPolicy(**{"overhead": 3e-3, "workers": 2, "history": {"tiny": 1e-3, "long": 0.5}, **kwargs})
    return policy.size(function, ready, alone)


def test_batch_policy_batches_only_tasks_shorter_than_the_overhead():
    assert first_batch(1000, "long") == 1
    assert first_batch(1000, "unknown") == 1, "no duration known yet: no batching"
    assert first_batch(1000) == 455, "a round of one batch per worker takes 1/1.1 of what is ready"
    assert first_batch(100_000) == 500, "a batch lasts at most max_seconds (0.5 s)"
    assert first_batch(1000, history={"tiny": 1.3e-3}) == 384, "0.5 s of 1.3 ms tasks, when other work waits"
    assert first_batch(1000, history={"tiny": 1.3e-3}, alone=True) == 455, "alone: no need to cut it short"
    assert first_batch(100_000, alone=True) == 500, "and never more than max_size"
    assert first_batch(200) == 91, "the next round gets the rest (18 tasks)"
    assert first_batch(42) == 21, "a leftover too small for a round of its own (2 < 2 x 6) joins this round"
    assert first_batch(10, workers=4) == 3, "the last ones are shared by every worker, none sits idle"
    assert first_batch(9) == 5 and first_batch(5) == 3, "split evenly at the end, even below two overheads"
    assert first_batch(1) == 1
    assert first_batch(1000, overhead=0.0) == 1  # in-process
    policy = BatchPolicy(overhead=3e-3, workers=2)
    policy.observe("unknown", 1e-4)
    assert policy.size("unknown", 10_000) > 1, "a duration measured in this run counts"
    assert policy.size("unknown", 10_000) <= int(policy.max_seconds / policy.min_task_cost), "storing costs too"
    noop = BatchPolicy(overhead=1e-2, workers=2, history={"noop": 1e-6})
    assert noop.size("noop", 300) == 150, "no-op tasks still go to both workers: each costs its engine ~0.25 ms"


def test_batches_go_in_rounds_of_equal_size_one_per_worker():
    policy = BatchPolicy(overhead=3e-3, workers=2, history={"tiny": 1e-3})
    sizes, ready = [], 1000
    while ready:
        sizes.append(policy.size("tiny", ready))
        ready -= sizes[-1]
    assert sizes == [455, 455, 45, 45], "equal within a round: the load balancer counts requests"
    policy = BatchPolicy(overhead=3e-3, workers=2, history={"tiny": 1e-3}, split=1.5)
    sizes, ready = [], 1000
    while ready:
        sizes.append(policy.size("tiny", ready))
        ready -= sizes[-1]
    assert sizes[:6] == [334, 334, 111, 111, 37, 37] and sum(sizes) == 1000 and min(sizes) >= 6


def test_tiny_tasks_are_batched_and_long_ones_are_not(cache_dir, local_cluster):
    pipe = Pipeline(name="tiny", parallel=True, engines=ENGINES)

    @pipe.AddFunction()
    def tiny(i):
        return i * 2

    @pipe.AddFunction()
    def slow(i):
        import time

        time.sleep(0.3)
        return -i

    handles = [tiny(i) for i in range(300)]
    slows = [slow(i) for i in range(3)]
    pipe.run()
    assert [h.result() for h in handles] == [2 * i for i in range(300)]
    assert [h.result() for h in slows] == [0, -1, -2]
    first = pipe.last_scheduler.submissions
    assert first < 150, "tiny tasks measured in this run are batched"

    # With history, the batching starts at once; slow tasks still go one per submission.
    pipe2 = Pipeline(name="tiny", parallel=True, engines=ENGINES)
    tiny2, slow2 = pipe2.AddFunction()(tiny.func), pipe2.AddFunction()(slow.func)
    handles = [tiny2(i) for i in range(300, 600)]
    slows = [slow2(i) for i in range(3, 6)]
    pipe2.run()
    assert [h.result() for h in handles] == [2 * i for i in range(300, 600)]
    assert pipe2.last_scheduler.submissions <= first
    runs = pipe2.catalog.tasks(pipe2.catalog.runs(limit=1)[0]["run_id"])
    assert {r["status"] for r in runs} == {"done"} and len(runs) == 303


# -- data movement and output --------------------------------------------------------------

def test_without_a_shared_cache_results_travel_back(cache_dir, local_cluster):
    pipe = Pipeline(name="unshared", parallel=True, engines=ENGINES, shared_cache=False)

    @pipe.AddFunction()
    def make(n):
        import numpy as np

        return np.arange(n)

    @pipe.AddFunction()
    def sum_of(values):
        return int(values.sum())

    s = sum_of(make(100))
    pipe.run()
    assert s.result() == 4950
    assert pipe.store.contains(s.key)


def test_engine_output_reaches_the_user_marked_with_the_task(cache_dir, local_cluster, capsys):
    pipe = Pipeline(name="talk", parallel=True, engines=ENGINES)

    @pipe.AddFunction()
    def talk(i):
        import sys

        print(f"hello from {i}")
        print(f"warning {i}", file=sys.stderr)
        return i

    talk(7)
    pipe.run()
    captured = capsys.readouterr()
    assert "[talk(7)] hello from 7" in captured.out
    assert "[talk(7)] warning 7" in captured.err


# -- faults ------------------------------------------------------------------------------

def test_a_task_killing_its_engine_is_retried_on_another_then_reported(cache_dir, local_cluster, tmp_path):
    marker = str(tmp_path / "died-once")
    pipe = Pipeline(name="faults", parallel=True, engines=ENGINES)

    @pipe.AddFunction()
    def dies_once(path):
        import os

        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(1)
        return os.getpid()

    h = dies_once(marker)
    try:
        pipe.run()
        assert h.result() in set(local_cluster[:].apply_sync(os.getpid))

        pipe2 = Pipeline(name="faults", parallel=True, engines=ENGINES, retries=1)

        @pipe2.AddFunction()
        def always_dies(i):
            import os

            os._exit(1)

        @pipe2.AddFunction()
        def fine(i):
            return i

        doomed, ok = always_dies(1), fine(2)
        with pytest.raises(TaskError) as info:
            pipe2.run()
        (failure,) = info.value.failures
        assert failure.task == "always_dies(1)" and "EngineError" in failure.traceback
        assert ok.result() == 2
        attempts = [r for r in pipe2.catalog.tasks(pipe2.catalog.runs(limit=1)[0]["run_id"])
                    if r["key"] == doomed.key]
        assert attempts[0]["status"] == "failed"
    finally:
        restore_engines(local_cluster)


INTERRUPTED = """
import os, sys, time
from ndustria import Pipeline

pipe = Pipeline(name="interrupted", parallel=True, engines=2)

@pipe.AddFunction()
def long_task(path):
    import os, time
    with open(path, "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)
    return 1

h = long_task(sys.argv[1])
print("KEY", h.key, flush=True)
pipe.run()
"""


def test_ctrl_c_cancels_the_run_and_stops_the_cluster_ndustria_started(cache_dir, tmp_path):
    import psutil
    script = tmp_path / "interrupted.py"
    script.write_text(INTERRUPTED)
    marker = tmp_path / "engine.pid"
    proc = subprocess.Popen([sys.executable, str(script), str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy(), **AS_IN_A_TERMINAL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() or not marker.read_text():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.2)
        engine_pid = int(marker.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in err
    key = next(line.split()[1] for line in out.splitlines() if line.startswith("KEY "))
    pipe = Pipeline(name="check")
    assert not pipe.store.contains(key), "no partial cache entry"
    assert pipe.catalog.runs(limit=1)[0]["state"] == "interrupted"
    deadline = time.monotonic() + 30
    while psutil.pid_exists(engine_pid) and psutil.Process(engine_pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the engine ndustria started is still running"
        time.sleep(0.5)


def test_attaching_to_an_existing_cluster_of_mpi_engines(cache_dir, tmp_path, monkeypatch):
    # The cluster's connection files live in its IPython profile; the cluster id finds them there.
    # (explicitly: inside a running IPython, ipyparallel would use that shell's profile instead).
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    cluster = ipp.Cluster(n=2, engines="mpi", log_level=40, profile_dir=str(profile))
    cluster.start_cluster_sync()
    try:
        client = cluster.connect_client_sync()
        client.wait_for_engines(2, timeout=60)
        for target in (cluster, client, cluster.cluster_id):
            pipe = Pipeline(name="attached", cluster=target)

            @pipe.AddFunction()
            def mpi_rank(i, tag):
                from mpi4py import MPI

                return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()

            handles = [mpi_rank(i, type(target).__name__) for i in range(6)]
            pipe.run()
            assert pipe.backend.name == "ipyparallel" and pipe.backend.workers == 2
            assert {h.result()[1] for h in handles} == {2}
            assert {h.result()[0] for h in handles} <= {0, 1}
            pipe.close()
        assert len(client.ids) == 2, "ndustria never stops a cluster it did not start"
    finally:
        cluster.stop_cluster_sync()


def test_a_task_imported_from_a_module_next_to_the_script_runs_on_engines(cache_dir, local_cluster, tmp_path,
                                                                         monkeypatch):
    """cloudpickle ships such a function by reference: the engines import its module from the scheduler's
    source folders, which travel with every submission."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helpers_next_to_script.py").write_text("def cube(x):\n    return x ** 3\n")
    monkeypatch.syspath_prepend(str(folder))
    import importlib.util

    import helpers_next_to_script

    find = local_cluster[:].apply_sync(importlib.util.find_spec, "helpers_next_to_script")
    assert find == [None] * ENGINES  # the engines cannot see it by themselves
    pipe = Pipeline(name="helpers", parallel=True, engines=ENGINES)
    cube = pipe.AddFunction()(helpers_next_to_script.cube)
    handles = [cube(i) for i in range(4)]
    pipe.run()
    assert [h.result() for h in handles] == [0, 1, 8, 27]
    sys.modules.pop("helpers_next_to_script", None)
