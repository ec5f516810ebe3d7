"""Adaptive batching of tiny tasks.

Every submission to an engine costs a round trip (~3 ms on ipyparallel, well
under 1 ms with MPI). A task much shorter than that would leave the engines
idle most of the time, so the scheduler sends several ready tasks of the same
function in one call (:func:`ndustria.run.remote.execute_batch`).

:class:`BatchPolicy` decides how many. It knows, per function, the expected cost
of one task (remembered in the catalog, then measured in this run) and the
backend's per-submission overhead (measured when the backend starts, then from
round trips that did not queue: round trip minus the time the engine spent).

Sizes follow *factoring* (Hummel, Schonberg and Flynn, 1992): batches go out in
rounds of one batch per worker, all of a round the same size, each round taking
``1 / split`` of its function's ready tasks, so the batches shrink towards the end
of the run. Equal batches within a round matter because ipyparallel's load balancer
counts requests, not work. A batch of tiny tasks lasts as long as hundreds of them,
whose differences average out (factoring's own rule would take ~95 % of 1,000 tasks
of any spread in its first round on 2 workers), while every batch costs its engine
~10 ms (the engine's handling of a request, pickling, one filesystem sync): so a
round takes most of what is ready (``split`` = 1.1). With two engines, 1,000 tasks
of 1 ms went as 434 + 66 per engine and took 0.76-0.80 s where ``split`` = 1.5
(334 + 111 + 55) took 0.78-0.81 s in the same minutes, and 2 took 0.80-0.84 s
earlier. The last tasks of a function are shared by every worker, and a leftover
too small for a round of its own joins the round before. A batch never lasts less
than ``floor`` times the overhead (splitting further would cost more than it
balances) nor longer than ``max_seconds`` when other work waits (a task of another
function, or one waiting for these results, starts soon; with nothing else to run, a
longer batch saves a round: 1,000 tasks whose history says 1.3 ms each went in three
rounds, not two). A batched task is costed at least ``min_task_cost``, what
storing its result costs the engine. A task at least as long as the overhead is
never batched, nor is a task whose duration is not known yet.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

ALPHA = 0.3  # weight of a new measurement in the running averages


@dataclass
class BatchPolicy:
    """How many ready tasks of one function go into one submission."""

    overhead: float  # seconds per submission; 0 disables batching (in-process execution)
    workers: int = 1
    history: Mapping[str, float] = field(default_factory=dict)  # function -> remembered seconds per task
    split: float = 1.1  # a round of batches (one per worker) takes 1 / split of the ready tasks of its function
    floor: float = 2.0  # a batch lasts at least this many overheads
    max_seconds: float = 0.5
    min_task_cost: float = 2.5e-4  # seconds an engine spends on any batched task (lock, report, its result)
    max_size: int = 500
    cost: dict[str, float] = field(default_factory=dict)  # function -> seconds per task, measured this run
    samples: deque = field(default_factory=lambda: deque(maxlen=9))  # recent overheads; their median is used
    rounds: dict[str, list[int]] = field(default_factory=dict)  # function -> [batch size, batches left in the round]

    def expected(self, function: str) -> float | None:
        """Seconds one task of ``function`` is expected to take, if anything is known."""
        return self.cost.get(function, self.history.get(function))

    def may_batch(self, function: str) -> bool:
        """Whether tasks of ``function`` are known to be shorter than one submission's overhead."""
        seconds = self.expected(function)
        return self.overhead > 0 and seconds is not None and seconds < self.overhead

    def size(self, function: str, ready: int, alone: bool = False) -> int:
        """Batch size for ``function`` when ``ready`` of its tasks are ready (1 = no batching);
        ``alone``: nothing else is ready or waits, so ``max_seconds`` does not apply."""
        if not self.may_batch(function) or ready <= 1:
            return 1
        current = self.rounds.get(function)
        if current is None or current[1] <= 0:  # a new round: one batch per worker, of equal size
            seconds = max(self.expected(function) or 0.0, self.min_task_cost)
            workers = max(1, self.workers)
            share = math.ceil(ready / (self.split * workers))
            shortest = math.ceil(self.floor * self.overhead / seconds)
            longest = self.max_size if alone else max(1, int(self.max_seconds / seconds))
            even = math.ceil(ready / workers)  # the last ones: every worker gets a share, none sits idle
            size = min(max(share, shortest), even)
            if 0 < ready - workers * size < workers * shortest:  # a leftover too small for a round of its own
                size = even
            current = self.rounds[function] = [max(1, min(size, longest, self.max_size)), workers]
        current[1] -= 1
        return min(ready, current[0])

    def observe(self, function: str, per_task: float) -> None:
        """One measured cost per task of ``function`` (seconds, engine side)."""
        old = self.cost.get(function)
        self.cost[function] = per_task if old is None else (1 - ALPHA) * old + ALPHA * per_task

    def observe_overhead(self, seconds: float) -> None:
        """One measured per-submission overhead (round trip minus engine time, a worker being free);
        the median of the recent ones is used, so one slow call does not skew it."""
        if self.overhead > 0:
            if not self.samples:
                self.samples.append(self.overhead)  # the backend's calibration counts as one sample
            self.samples.append(min(max(seconds, 1e-5), 0.05))
            self.overhead = statistics.median(self.samples)
