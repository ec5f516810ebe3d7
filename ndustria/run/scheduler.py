"""One event-driven scheduler for every backend.

State (plain sets and dicts, changed only by the small methods of
:class:`GraphState`, so each step can be tested on its own):

- ``available``: keys whose results are in the store (cached or done in this run)
- ``waiting``: key -> the input keys it still waits for
- ``dependents``: key -> the keys that take its result
- ``ready``: a heap of keys whose inputs all exist, ordered by priority
- ``running``, ``done``, ``failed``, ``skipped``

A task is submitted as soon as its inputs exist and a worker is free: there
are no levels and no barriers. Priority is the longest remaining path through
the graph, weighted by each task's expected duration (remembered from earlier
runs; unknown ones estimated from the same function's other tasks), so the
critical path starts first.

The loop (after dask's ``local.py``): submit, ``add_done_callback(queue.put)``,
block on the queue, update the state, repeat.
"""

from __future__ import annotations

import heapq
import logging
import queue
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Executor, Future
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from ndustria.errors import NdustriaError
from ndustria.records import TaskReport
from ndustria.run.batching import BatchPolicy

log = logging.getLogger("ndustria")

DEFAULT_DURATION = 1.0
MAX_INPUT_REPAIRS = 2
START_DELAY = 0.1  # seconds the first submissions run before the run's bookkeeping competes with them for the cores


@dataclass
class GraphState:
    """The scheduling state of one run.

    Ready keys wait in one heap per group (``group_of``: a key's function, the unit of batching), so
    counting and taking the ready tasks of a function costs their number, not all that are ready.

    ``waiting`` and ``dependents`` hold their key sets as dicts of None: the garbage collector does not
    track a dict of strings, while it walks every set at each full collection. With sets, a cold run of
    300,000 tasks kept 200,000 of them alive: its full collections walked 18.9 objects per task instead
    of 10.1 and took 7.6 us per task instead of 4.5.
    """

    deps: Mapping[str, tuple[str, ...]]  # every key the run knows -> its input keys
    available: set[str]
    priority: dict[str, float] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # declaration order, the tie-breaker
    waiting: dict[str, dict[str, None]] = field(default_factory=dict)
    dependents: dict[str, dict[str, None]] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> the failed key that caused it
    group_of: Callable[[str], str] | None = None  # key -> its group (None: one group)
    heaps: dict[str, list[tuple[float, int, str]]] = field(default_factory=dict)  # group -> its ready keys
    n_ready: int = 0

    def add(self, keys: Iterable[str]) -> None:
        """Schedule ``keys`` to run (they wait for inputs that are not available yet)."""
        dependents, available = self.dependents, self.available
        for key in keys:
            deps = self.deps[key]
            missing = None
            if deps:
                missing = dict.fromkeys(deps)
                for dep in deps:
                    of = dependents.get(dep)  # (not setdefault: it makes a dict each time)
                    if of is None:
                        dependents[dep] = {key: None}
                    else:
                        of[key] = None
                    if dep in available:
                        missing.pop(dep, None)
            self.done.discard(key)
            if missing:
                self.waiting[key] = missing
            else:
                self._push(key)

    def _push(self, key: str) -> None:
        group = self.group_of(key) if self.group_of is not None else ""
        heapq.heappush(self.heaps.setdefault(group, []),
                       (-self.priority.get(key, 0.0), self.order.get(key, 0), key))
        self.n_ready += 1

    def set_groups(self, group_of: Callable[[str], str]) -> None:
        """Group the ready keys (and those to come) by ``group_of``."""
        items = [item for heap in self.heaps.values() for item in heap]
        self.group_of, self.heaps = group_of, {}
        for item in items:
            heapq.heappush(self.heaps.setdefault(group_of(item[2]), []), item)

    @property
    def ready(self) -> list[tuple[float, int, str]]:
        """Every ready key's (priority, order, key), best first."""
        return sorted(item for heap in self.heaps.values() for item in heap)

    def _best(self) -> list[tuple[float, int, str]] | None:
        best = None
        for heap in self.heaps.values():
            if heap and (best is None or heap[0] < best[0]):
                best = heap
        return best

    def top(self) -> str | None:
        """The ready key to run next (highest priority), without taking it."""
        heap = self._best()
        return heap[0][2] if heap else None

    def pop_ready(self) -> str | None:
        heap = self._best()
        if not heap:
            return None
        key = heapq.heappop(heap)[2]
        self.n_ready -= 1
        self.running.add(key)
        return key

    def count_ready(self, group: str) -> int:
        """How many ready keys belong to ``group``."""
        return len(self.heaps.get(group, ()))

    def take(self, first: str, n: int) -> list[str]:
        """Mark ``first`` (the top) and up to ``n - 1`` more ready keys of its group as running, best first."""
        heap = self.heaps[self.group_of(first) if self.group_of is not None else ""]
        keys = [heapq.heappop(heap)[2] for _ in range(min(max(n, 1), len(heap)))]
        self.n_ready -= len(keys)
        self.running.update(keys)
        return keys

    def finish(self, key: str) -> list[str]:
        """``key`` is stored; returns the keys that became ready."""
        self.running.discard(key)
        self.done.add(key)
        self.available.add(key)
        newly: list[str] = []
        children = self.dependents.get(key)
        if not children:
            return newly
        ordered = sorted(children, key=lambda k: self.order.get(k, 0)) if len(children) > 1 else children
        for child in ordered:  # (one child, the usual case, needs no sort)
            missing = self.waiting.get(child)
            if missing is None:
                continue
            missing.pop(key, None)
            if not missing:
                del self.waiting[child]
                self._push(child)
                newly.append(child)
        return newly

    def fail(self, key: str) -> list[str]:
        """``key`` failed; every task waiting on it, transitively, is skipped. Returns those."""
        self.running.discard(key)
        self.failed.add(key)
        skipped, stack = [], [key]
        while stack:
            for child in self.dependents.get(stack.pop(), ()):
                if child in self.waiting:
                    del self.waiting[child]
                    self.skipped[child] = key
                    skipped.append(child)
                    stack.append(child)
        return skipped

    def repair(self, key: str, bad_inputs: Iterable[str]) -> list[str]:
        """Inputs of ``key`` were damaged or missing: recompute them, then run ``key`` again."""
        self.running.discard(key)
        bad = [b for b in bad_inputs if b in self.deps]
        for b in bad:
            self.available.discard(b)
            self.done.discard(b)
        new = [b for b in bad if b not in self.waiting and b not in self.running and not self._queued(b)]
        self.add(new)
        self.add([key])
        return new

    def _queued(self, key: str) -> bool:
        return any(k == key for heap in self.heaps.values() for _, _, k in heap)

    def active(self) -> bool:
        return bool(self.n_ready or self.running)


def longest_path_priority(deps: Mapping[str, tuple[str, ...]], to_run: Iterable[str],
                          duration: Callable[[str], float]) -> dict[str, float]:
    """Expected time from a task's start to the end of its longest chain of dependents."""
    order = list(dict.fromkeys(to_run))
    rank = _rank_in_declared_order(deps, order, duration)
    if rank is not None:
        return rank
    to_run = set(order)
    children: dict[str, list[str]] = {k: [] for k in to_run}
    for key in to_run:
        for dep in deps[key]:
            if dep in to_run:
                children[dep].append(key)
    rank = {}
    for key in _reverse_topological(to_run, children):
        rank[key] = duration(key) + max((rank[c] for c in children[key]), default=0.0)
    return rank


def _rank_in_declared_order(deps: Mapping[str, tuple[str, ...]], order: list[str],
                            duration: Callable[[str], float]) -> dict[str, float] | None:
    """:func:`longest_path_priority` where inputs come before their dependents (as declared): one pass from
    the last, in order (a set's order jumps around memory: 6 us per task at 300,000 tasks, 2.4 at 3,000),
    no list per task. None if an input comes later than a dependent. (An input outside the run gains an
    entry in ``longest`` only.)"""
    rank: dict[str, float] = {}
    longest: dict[str, float] = {}  # key -> the longest rank among its dependents seen so far
    for key in reversed(order):
        here = rank[key] = duration(key) + longest.get(key, 0.0)
        for dep in deps[key]:
            if dep in rank:  # ranked already: listed after this dependent
                return None
            if longest.get(dep, 0.0) < here:
                longest[dep] = here
    return rank


def _reverse_topological(keys: set[str], children: dict[str, list[str]]) -> list[str]:
    """Keys ordered so that every key comes after all of its children."""
    out, seen = [], set()
    for root in keys:
        if root in seen:
            continue
        stack = [(root, iter(children[root]))]
        seen.add(root)
        while stack:
            node, it = stack[-1]
            for child in it:
                if child not in seen:
                    seen.add(child)
                    stack.append((child, iter(children[child])))
                    break
            else:
                stack.pop()
                out.append(node)
    return out


@dataclass
class SchedulerHooks:
    """What the scheduler tells its caller (console, catalog, progress views)."""

    submitted: Callable[[list[str]], None] = lambda keys: None  # the keys of one submission
    completed: Callable[[TaskReport], None] = lambda report: None
    failed: Callable[[TaskReport], None] = lambda report: None
    skipped: Callable[[str, str], None] = lambda key, cause: None
    repairing: Callable[[str, list[str]], None] = lambda key, bad: None
    settling: Callable[[], AbstractContextManager[Any]] = nullcontext  # around the reports of one submission
    started: Callable[[], None] = lambda: None  # once, while the first submissions run (overlaps bookkeeping)
    retrying: Callable[[str, BaseException], None] = lambda key, exc: log.warning(
        "retrying task %s after an engine fault: %s", key, exc)


@dataclass
class _Submission:
    keys: list[str]
    sent: float  # time.perf_counter() at submission
    measured: bool  # a worker was free: the round trip measures the backend's overhead
    returned: float = 0.0  # time.perf_counter() when the result arrived (not when the loop got to it)


class Scheduler:
    """Drives a :class:`GraphState` over an executor until nothing is ready or running.

    At most ``capacity`` submissions are in flight, plus one extra batch per worker
    when tiny tasks are batched (the next batch waits on the engine while the
    current one runs, hiding the round trip); the extra batches, and the run's
    bookkeeping (the ``started`` hook), wait until the first results arrive or
    ``START_DELAY`` passed, so the first submissions have the cores to themselves
    on their way to the engines. ``run_batch`` runs a list of payloads
    and returns a list of reports; ``policy`` sizes the batches (no policy: no
    batching); ``group`` names a key's function. ``recover``, when given, returns a working
    executor after an engine fault broke this one (a process pool whose worker was killed);
    retries go there.
    """

    def __init__(self, executor: Executor, capacity: int, run_task: Callable[[Any], TaskReport],
                 make_payload: Callable[[str], Any], hooks: SchedulerHooks, retries: int = 1, *,
                 run_batch: Callable[[list[Any]], list[TaskReport]] | None = None,
                 policy: BatchPolicy | None = None, group: Callable[[str], str] | None = None,
                 watchdog: Callable[[], None] | None = None,
                 recover: Callable[[], Executor] | None = None) -> None:
        self.executor = executor
        self.recover = recover
        self.capacity = max(1, capacity)
        self.run_task = run_task
        self.run_batch = run_batch
        self.make_payload = make_payload
        self.hooks = hooks
        self.retries = retries
        self.policy = policy if run_batch is not None else None
        self.group = group or (lambda key: "")
        self.watchdog = watchdog or (lambda: None)
        self.submissions = 0  # how many calls were sent to the executor (tests, benchmarks)
        self._attempts: dict[str, int] = {}
        self._repairs: dict[str, int] = {}

    def run(self, state: GraphState) -> None:
        if state.group_of is None:
            state.set_groups(self.group)
        events: queue.SimpleQueue[Future] = queue.SimpleQueue()
        futures: dict[Future, _Submission] = {}
        started = False
        try:
            while True:
                # Until the first results come in (or START_DELAY passed), one submission per worker:
                # pickling the next ones would take the cores the transport needs to deliver these.
                self._fill(state, futures, events, self.capacity if not started else 2 * self.capacity)
                if not futures:
                    if not started:
                        self.hooks.started()
                    return
                if started:
                    future = _next_event(events, self.watchdog)
                else:  # the engines start their first tasks before this process does its bookkeeping
                    future = _first_event(events, START_DELAY)
                    self.hooks.started()
                    started = True
                    if future is None:
                        continue
                self._handle(state, futures.pop(future), future, futures, events)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def _fill(self, state: GraphState, futures: dict[Future, _Submission], events: queue.SimpleQueue,
              limit: int) -> None:
        """Submit ready tasks, highest priority first, while fewer than ``limit`` submissions are in flight
        (batches only: single tasks stop at ``capacity``)."""
        while state.n_ready and len(futures) < limit:
            key = state.top()
            assert key is not None
            size = 1
            fn = self.group(key)
            if self.policy is not None and self.policy.may_batch(fn):
                ready = state.count_ready(fn)
                size = self.policy.size(fn, ready, alone=not state.waiting and ready == state.n_ready)
            if size == 1 and len(futures) >= self.capacity:
                return
            keys = state.take(key, size)
            self._submit(keys, futures, events, measured=len(futures) < self.capacity)

    def _submit(self, keys: list[str], futures: dict[Future, _Submission], events: queue.SimpleQueue,
                measured: bool = False) -> None:
        for key in keys:
            self._attempts[key] = self._attempts.get(key, 0) + 1
        payloads, refused = [], []
        for key in keys:  # a task whose payload cannot be made (its inputs changed) fails alone, unsent
            try:
                payloads.append(self.make_payload(key))
            except Exception as exc:
                refused.append(_refused(key, exc))
        if refused:
            done: Future = Future()
            done.set_result(refused)
            gone = [r.key for r in refused]
            self._track(done, gone, futures, events, measured=False)
            keys = [k for k in keys if k not in gone]
            if not keys:
                return
        self.hooks.submitted(keys)  # before submit: an in-process executor runs the task inside submit()
        try:
            if len(keys) == 1:
                future = self.executor.submit(self.run_task, payloads[0])
            else:
                future = self.executor.submit(self.run_batch, payloads)
        except Exception as exc:  # e.g. the payload cannot be pickled
            future = Future()
            future.set_exception(exc)
        self.submissions += 1
        self._track(future, keys, futures, events, measured)

    def _track(self, future: Future, keys: list[str], futures: dict[Future, _Submission],
               events: queue.SimpleQueue, measured: bool) -> None:
        sub = futures[future] = _Submission(keys, time.perf_counter(), measured)

        def arrived(f: Future) -> None:
            sub.returned = time.perf_counter()
            events.put(f)

        future.add_done_callback(arrived)

    def _handle(self, state: GraphState, sub: _Submission, future: Future, futures: dict[Future, _Submission],
                events: queue.SimpleQueue) -> None:
        try:
            result = future.result()
        except CancelledError:
            reports = [TaskReport(key=k, status="failed", error="cancelled") for k in sub.keys]
        except Exception as exc:  # the engine died, or the executor could not run the call
            retry = [k for k in sub.keys if self._attempts.get(k, 0) <= self.retries and _is_engine_fault(exc)]
            if retry and self.recover is not None:
                self.executor = self.recover()
            for key in retry:
                self.hooks.retrying(key, exc)
                self._submit([key], futures, events)
            reports = [TaskReport(key=k, status="failed", error=f"{type(exc).__name__}: {exc}", exception=exc)
                       for k in sub.keys if k not in retry]
        else:
            reports = list(result) if isinstance(result, list) else [result]
            self._learn(sub, reports)
        with self.hooks.settling():
            for report in reports:
                self._settle(state, report)

    def _learn(self, sub: _Submission, reports: list[TaskReport]) -> None:
        if self.policy is None or not reports:
            return
        round_trip = (sub.returned or time.perf_counter()) - sub.sent
        timed = [r for r in reports if r.end > 0 and r.start > 0]
        if not timed:
            return
        if len(timed) == 1:
            busy = timed[0].wall_s
            self.policy.observe(self.group(timed[0].key), busy)
        else:
            busy = max(r.end for r in timed) - min(r.start for r in timed)
            self.policy.observe(self.group(timed[0].key), busy / len(timed))
        if sub.measured:
            self.policy.observe_overhead(round_trip - busy)

    def _settle(self, state: GraphState, report: TaskReport) -> None:
        key = report.key
        if report.status == "done":
            self.hooks.completed(report)
            state.finish(key)
        elif report.bad_inputs and self._repairs.get(key, 0) < MAX_INPUT_REPAIRS:
            self._repairs[key] = self._repairs.get(key, 0) + 1
            self.hooks.repairing(key, report.bad_inputs)
            state.repair(key, report.bad_inputs)
        else:
            self.hooks.failed(report)
            for child in state.fail(key):
                self.hooks.skipped(child, state.skipped[child])


def _refused(key: str, exc: Exception) -> TaskReport:
    """The failed report of a task that was not sent: making its payload raised ``exc``."""
    if isinstance(exc, NdustriaError):  # says what was wrong and what to do; its traceback is ndustria's
        text = f"{type(exc).__name__}: {exc}"
    else:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return TaskReport(key=key, status="failed", error=text, exception=exc)


def _first_event(events: queue.SimpleQueue, delay: float) -> Future | None:
    try:
        return events.get(timeout=delay)
    except queue.Empty:
        return None


def _next_event(events: queue.SimpleQueue, watchdog: Callable[[], None]) -> Future:
    while True:  # a timeout keeps the wait interruptible by Ctrl-C everywhere
        try:
            return events.get(timeout=0.5)
        except queue.Empty:
            watchdog()  # e.g. replace dead engines; raises when nothing can run any more


ENGINE_FAULTS = {"TerminatedWorkerError", "BrokenProcessPool", "EngineError", "BrokenExecutor"}


def _is_engine_fault(exc: BaseException) -> bool:
    """The worker process died (not the task's own error): loky, ipyparallel (RemoteError ename), dask."""
    names = set()
    for e in (exc, exc.__cause__):
        if e is not None:
            names.add(type(e).__name__)
            names.add(str(getattr(e, "ename", "")))
    return bool(names & ENGINE_FAULTS)
