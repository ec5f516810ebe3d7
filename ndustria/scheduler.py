"""One event-driven scheduler for every backend.

State (plain sets and dicts, changed only by the small methods of
:class:`GraphState`, so each step can be tested on its own):

- ``available``: keys whose results are in the store (cached or done in this run)
- ``waiting``: key -> the input keys it still waits for
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
import queue
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import CancelledError, Executor, Future
from dataclasses import dataclass, field
from typing import Any

from .worker import TaskReport

DEFAULT_DURATION = 1.0
MAX_INPUT_REPAIRS = 2


@dataclass
class GraphState:
    """The scheduling state of one run."""

    deps: Mapping[str, tuple[str, ...]]  # every key the run knows -> its input keys
    available: set[str]
    priority: dict[str, float] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # declaration order, the tie-breaker
    waiting: dict[str, set[str]] = field(default_factory=dict)
    dependents: dict[str, set[str]] = field(default_factory=dict)
    ready: list[tuple[float, int, str]] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> the failed key that caused it

    def add(self, keys: Iterable[str]) -> None:
        """Schedule ``keys`` to run (they wait for inputs that are not available yet)."""
        for key in keys:
            for dep in self.deps[key]:
                self.dependents.setdefault(dep, set()).add(key)
            missing = {d for d in self.deps[key] if d not in self.available}
            self.done.discard(key)
            if missing:
                self.waiting[key] = missing
            else:
                self._push(key)

    def _push(self, key: str) -> None:
        heapq.heappush(self.ready, (-self.priority.get(key, 0.0), self.order.get(key, 0), key))

    def pop_ready(self) -> str | None:
        if not self.ready:
            return None
        key = heapq.heappop(self.ready)[2]
        self.running.add(key)
        return key

    def finish(self, key: str) -> list[str]:
        """``key`` is stored; returns the keys that became ready."""
        self.running.discard(key)
        self.done.add(key)
        self.available.add(key)
        newly = []
        for child in sorted(self.dependents.get(key, ()), key=lambda k: self.order.get(k, 0)):
            missing = self.waiting.get(child)
            if missing is None:
                continue
            missing.discard(key)
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
        return any(k == key for _, _, k in self.ready)

    def active(self) -> bool:
        return bool(self.ready or self.running)


def longest_path_priority(deps: Mapping[str, tuple[str, ...]], to_run: Iterable[str],
                          duration: Callable[[str], float]) -> dict[str, float]:
    """Expected time from a task's start to the end of its longest chain of dependents."""
    to_run = set(to_run)
    children: dict[str, list[str]] = {k: [] for k in to_run}
    for key in to_run:
        for dep in deps[key]:
            if dep in to_run:
                children[dep].append(key)
    rank: dict[str, float] = {}
    for key in _reverse_topological(to_run, children):
        rank[key] = duration(key) + max((rank[c] for c in children[key]), default=0.0)
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

    submitted: Callable[[str], None] = lambda key: None
    completed: Callable[[TaskReport], None] = lambda report: None
    failed: Callable[[TaskReport], None] = lambda report: None
    skipped: Callable[[str, str], None] = lambda key, cause: None
    repairing: Callable[[str, list[str]], None] = lambda key, bad: None


class Scheduler:
    """Drives a :class:`GraphState` over an executor until nothing is ready or running."""

    def __init__(self, executor: Executor, capacity: int, run_task: Callable[[Any], TaskReport],
                 make_payload: Callable[[str], Any], hooks: SchedulerHooks, retries: int = 1) -> None:
        self.executor = executor
        self.capacity = max(1, capacity)
        self.run_task = run_task
        self.make_payload = make_payload
        self.hooks = hooks
        self.retries = retries
        self._attempts: dict[str, int] = {}
        self._repairs: dict[str, int] = {}

    def run(self, state: GraphState) -> None:
        events: queue.SimpleQueue[Future] = queue.SimpleQueue()
        futures: dict[Future, str] = {}
        try:
            while True:
                while len(futures) < self.capacity:
                    key = state.pop_ready()
                    if key is None:
                        break
                    self._submit(key, futures, events)
                if not futures:
                    return
                future = _next_event(events)
                self._handle(state, futures.pop(future), future, futures, events)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def _submit(self, key: str, futures: dict[Future, str], events: queue.SimpleQueue) -> None:
        self._attempts[key] = self._attempts.get(key, 0) + 1
        try:
            future = self.executor.submit(self.run_task, self.make_payload(key))
        except Exception as exc:  # e.g. the payload cannot be pickled
            future = Future()
            future.set_exception(exc)
        futures[future] = key
        self.hooks.submitted(key)
        future.add_done_callback(events.put)

    def _handle(self, state: GraphState, key: str, future: Future, futures: dict[Future, str],
                events: queue.SimpleQueue) -> None:
        try:
            report = future.result()
        except CancelledError:
            report = TaskReport(key=key, status="failed", error="cancelled")
        except Exception as exc:  # the engine died, or the executor could not run the call
            if self._attempts.get(key, 0) <= self.retries and _is_engine_fault(exc):
                self._submit(key, futures, events)
                return
            report = TaskReport(key=key, status="failed", error=f"{type(exc).__name__}: {exc}", exception=exc)
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


def _next_event(events: queue.SimpleQueue) -> Future:
    while True:  # a timeout keeps the wait interruptible by Ctrl-C everywhere
        try:
            return events.get(timeout=0.5)
        except queue.Empty:
            continue


def _is_engine_fault(exc: BaseException) -> bool:
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    return bool(names & {"TerminatedWorkerError", "BrokenProcessPool", "EngineError", "BrokenExecutor"})
