"""The scheduler's batching and retries, step by step, over a recording in-process executor."""

from __future__ import annotations

import time
from concurrent.futures import Future

from ndustria.records import TaskReport
from ndustria.run.backends import SerialExecutor
from ndustria.run.batching import BatchPolicy
from ndustria.run.scheduler import GraphState, Scheduler, SchedulerHooks, longest_path_priority


class Recording(SerialExecutor):
    """Runs calls at once and remembers which keys went together."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.fail_first = fail_first

    def submit(self, fn, /, *args, **kwargs) -> Future:
        payload = args[0]
        self.calls.append(list(payload) if isinstance(payload, list) else [payload])
        if self.fail_first > 0:
            self.fail_first -= 1
            future: Future = Future()
            future.set_exception(EngineError("engine 1 died"))
            return future
        return super().submit(fn, *args, **kwargs)


class EngineError(Exception):
    """Named like ipyparallel's: the scheduler treats it as an engine fault."""


class FixedOverhead(BatchPolicy):
    """A backend whose round trip stays at 3 ms (the in-process executor would teach ~0)."""

    def observe_overhead(self, seconds: float) -> None:
        pass


def report(key: str) -> TaskReport:
    now = time.time()
    return TaskReport(key=key, status="done", start=now, end=now + 1e-4, wall_s=1e-4)


def scheduler(executor, **kwargs) -> tuple[Scheduler, list[str]]:
    done: list[str] = []
    hooks = SchedulerHooks(completed=lambda r: done.append(r.key))
    sched = Scheduler(executor, 2, report, lambda key: key, hooks, run_batch=lambda keys: [report(k) for k in keys],
                      group=lambda key: key.rstrip("0123456789"), **kwargs)
    return sched, done


def graph(durations: dict[str, float]) -> GraphState:
    deps = {k: () for k in durations}
    state = GraphState(deps=deps, available=set(), order={k: i for i, k in enumerate(deps)})
    state.priority = longest_path_priority(deps, deps, durations.__getitem__)
    state.add(list(deps))
    return state


def test_tiny_tasks_of_one_function_go_together_and_the_long_task_first_and_alone():
    durations = {f"tiny{i}": 1e-3 for i in range(100)} | {"long": 2.0}
    policy = FixedOverhead(overhead=3e-3, workers=2, history={"tiny": 1e-3, "long": 2.0})
    executor = Recording()
    sched, done = scheduler(executor, policy=policy)
    sched.run(graph(durations))
    assert sorted(done) == sorted(durations)
    assert executor.calls[0] == ["long"], "the longest path starts first, never batched"
    batches = executor.calls[1:]
    assert all(k.startswith("tiny") for b in batches for k in b)
    assert sum(len(b) for b in batches if len(b) > 1) >= 90, "nearly every tiny task travels in a batch"
    assert max(len(b) for b in batches) <= 50, "each of the 2 workers gets a share"
    assert sched.submissions == len(executor.calls) < 20
    assert batches[0][:3] == ["tiny0", "tiny1", "tiny2"], "declaration order within equal priority"


def test_a_batch_is_cut_to_max_seconds_only_when_other_work_waits():
    policy = FixedOverhead(overhead=3e-3, workers=2, history={"tiny": 1.3e-3, "after": 1.0})
    alone = Recording()
    scheduler(alone, policy=policy)[0].run(graph({f"tiny{i}": 1.3e-3 for i in range(1000)}))
    assert [len(c) for c in alone.calls[:2]] == [455, 455], "nothing else to run: two rounds, not three"

    deps = {f"tiny{i}": () for i in range(1000)} | {"after": ("tiny0",)}
    state = GraphState(deps=deps, available=set(), order={k: i for i, k in enumerate(deps)})
    state.priority = longest_path_priority(deps, deps, lambda k: 1.3e-3 if k.startswith("tiny") else 1.0)
    state.add(list(deps))
    policy = FixedOverhead(overhead=3e-3, workers=2, history={"tiny": 1.3e-3, "after": 1.0})
    waited = Recording()
    sched, done = scheduler(waited, policy=policy)
    sched.run(state)
    assert len(waited.calls[0]) == int(0.5 / 1.3e-3), "a task waits for these results: batches stay short"
    assert "after" in done


def test_without_a_policy_nothing_is_batched():
    executor = Recording()
    sched, done = scheduler(executor)
    sched.run(graph({f"tiny{i}": 1e-3 for i in range(10)}))
    assert all(len(c) == 1 for c in executor.calls) and len(done) == 10


def test_a_batch_lost_with_its_engine_is_retried_task_by_task():
    policy = FixedOverhead(overhead=3e-3, workers=2, history={"tiny": 1e-3})
    executor = Recording(fail_first=1)
    sched, done = scheduler(executor, policy=policy, retries=1)
    sched.run(graph({f"tiny{i}": 1e-3 for i in range(8)}))
    assert sorted(done) == sorted(f"tiny{i}" for i in range(8))
    lost = executor.calls[0]
    assert len(lost) > 1
    assert all([k] in executor.calls[1:] for k in lost), "each task of the lost batch is resubmitted alone"


def test_the_overhead_is_learned_from_round_trips():
    policy = BatchPolicy(overhead=3e-3, workers=2)
    for _ in range(20):
        policy.observe_overhead(2e-4)
    assert policy.overhead < 5e-4
    serial = BatchPolicy(overhead=0.0)
    serial.observe_overhead(1.0)
    assert serial.overhead == 0.0, "in-process execution never batches"


class Held(SerialExecutor):
    """Keeps every call pending until ``release()``, like engines still busy with it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Future, object, tuple]] = []

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self.calls.append((future, fn, args))
        return future

    def release(self) -> None:
        for future, fn, args in list(self.calls):
            if not future.done():
                future.set_result(fn(*args))


def test_the_first_round_leaves_alone_before_the_bookkeeping_and_the_next_batches():
    import threading

    from ndustria.run import scheduler as sched_module

    policy = FixedOverhead(overhead=3e-3, workers=2, history={"tiny": 1e-3})
    executor = Held()
    started: list[float] = []
    hooks = SchedulerHooks(started=lambda: started.append(time.perf_counter()))
    sched = Scheduler(executor, 2, report, lambda key: key, hooks, run_batch=lambda keys: [report(k) for k in keys],
                      group=lambda key: key.rstrip("0123456789"), policy=policy)
    t0 = time.perf_counter()
    runner = threading.Thread(target=sched.run, args=(graph({f"tiny{i}": 1e-3 for i in range(600)}),))
    runner.start()
    deadline = time.monotonic() + 10
    while not started and time.monotonic() < deadline:
        time.sleep(0.005)
        if not started:
            assert len(executor.calls) == 2, "one submission per worker until the first round has had its start"
    assert started and started[0] - t0 >= sched_module.START_DELAY * 0.9
    while len(executor.calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(executor.calls) == 4, "then the next batch of each worker waits on its engine"
    while runner.is_alive() and time.monotonic() < deadline:
        executor.release()
        time.sleep(0.005)
    runner.join(timeout=1)
    assert not runner.is_alive()
    assert sum(len(args[0]) for _, _, args in executor.calls) == 600


def test_a_serial_call_that_returns_a_future_completes_the_submission_when_that_one_does():
    """A batch whose commit is still landing returns a future: the submission's future follows it (result
    or error), and cannot be cancelled meanwhile (the scheduler cancels what it gave up on)."""
    executor = SerialExecutor()
    landing: Future = Future()
    submitted = executor.submit(lambda: landing)
    assert not submitted.done() and not submitted.cancel()
    landing.set_result(["reports"])
    assert submitted.result(timeout=1) == ["reports"]
    failing: Future = Future()
    submitted = executor.submit(lambda: failing)
    failing.set_exception(OSError("disk full"))
    assert isinstance(submitted.exception(timeout=1), OSError)
    assert executor.submit(lambda: 3).result() == 3
