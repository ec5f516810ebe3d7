"""What one run leaves behind while the scheduler drives it: each task's state on its handle, its
row and metrics in the catalog, its line on the console, and the failures ``run()`` raises.

The scheduler calls a :class:`RunRecorder`'s methods (its hooks, see
:class:`ndustria.run.scheduler.SchedulerHooks`); the recorder knows the catalog and the console,
the scheduler knows neither.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ndustria.errors import NdustriaWarning, TaskFailure
from ndustria.record.catalog import Catalog
from ndustria.records import TaskReport
from ndustria.task import TaskHandle

log = logging.getLogger("ndustria")


class RunConsole(Protocol):
    """The console lines a run prints as tasks end (:class:`ndustria.show.console.Console`)."""

    def task_output(self, task: str, stdout: str, stderr: str) -> None: ...
    def saved(self, task: str, path: str) -> None: ...
    def found(self, task: str, path: str) -> None: ...
    def failed(self, task: str, error: str) -> None: ...
    def skipped(self, task: str, cause: str) -> None: ...
    def recomputing(self, task: str, why: str) -> None: ...
    def progress_step(self) -> None: ...


class RunRecorder:
    """The scheduler's hooks for one run of ``pipeline`` (catalog run ``run_id``).

    ``handles`` are the run's tasks by id, ``run_ids`` those that must run; ``keep(key, value)``
    stores a value an engine sent back and returns (path, size, checksum); ``forget(key)`` removes
    a damaged entry. ``failures`` collects each failed task for the closing ``TaskError``.

    ``batches_running=False``: the tasks of a batch keep the status "queued" in the catalog until their
    reports come, for a backend that runs a batch in this very thread (serial), one task after the
    other: "running" would be true of one of them at a time, and a batch holds only tasks shorter
    than a submission's overhead (well under a millisecond), too short for anyone to watch. A task
    submitted alone is still marked "running". Those updates were ~7 % of a cold run of 300,000
    tiny tasks (bench/bench_scale.py, BENCHMARKS.md).
    """

    def __init__(self, catalog: Catalog, run_id: int, pipeline: str, handles: dict[str, TaskHandle],
                 run_ids: set[str], console: RunConsole, *,
                 keep: Callable[[str, Any], tuple[str, int, str]], forget: Callable[[str], None],
                 batches_running: bool = True, is_row: Callable[[str], bool] = lambda path: False) -> None:
        self.catalog = catalog
        self.run_id = run_id
        self.pipeline = pipeline
        self.handles = handles
        self.run_ids = run_ids
        self.console = console
        self.keep = keep
        self.forget = forget
        self.failures: dict[str, TaskFailure] = {}
        self.is_row = is_row
        self.files: list[str] = []  # result files the run's tasks reported (not rows): made durable at its end
        self.rows_written = False
        self.batches_running = batches_running
        self._running_early: set[str] = set()  # ids submitted before the rows were written, "running" in them
        self._recorded: list[tuple[TaskReport, tuple[str, str, str]]] = []  # completed reports of a submission

    def started(self) -> None:
        """Write the run's task rows, once (the scheduler calls it while the first tasks run)."""
        if self.rows_written:
            return
        self.rows_written = True
        handles, run_ids = list(self.handles.values()), self.run_ids

        def inputs() -> list[str]:  # each task's inputs by their place in the list (an id names its inputs)
            place = {h.id: i for i, h in enumerate(handles)}
            return [",".join([str(place[d.id]) for d in h.deps if d.id in place]) if h.deps else "" for h in handles]

        # Columns, not a tuple per task (30,000 tuples alive at once cost garbage-collector passes), and a
        # call written as bound is named by its id: names and inputs are made only if the list is written.
        self.catalog.add_tasks(
            self.run_id, [h.id for h in handles], [h.function.name for h in handles],
            bytes(h.id not in run_ids for h in handles),
            ["" if h.id in run_ids else h.key or "" for h in handles],
            inputs, names=lambda: [h.name for h in handles],
            given=[None if h.written is None else h.name for h in handles],
            statuses={i: "running" for i in self._running_early if self.handles[i].status == "running"})

    def submitted(self, ids: list[str]) -> None:
        for task_id in ids:
            self.handles[task_id].status = "running"
        if len(ids) > 1 and not self.batches_running:
            return
        if not self.rows_written:  # the first submissions go before the rows exist, which then say "running"
            self._running_early.update(ids)
            return
        self.catalog.set_status(self.run_id, ids, "running")

    @contextlib.contextmanager
    def settling(self) -> Iterator[None]:
        """The reports of one submission: one transaction, the completed ones in one statement."""
        with self.catalog.batch():
            try:
                yield
            finally:
                if self._recorded:
                    self.catalog.record_reports(self.run_id, self._recorded)
                    self._recorded.clear()

    def completed(self, report: TaskReport) -> None:
        handle = self.handles[report.key]
        if report.has_value:  # engines without the shared cache send the value back
            report.path, report.size, report.checksum = self.keep(handle.key or "", report.value)
            report.value = None
        handle.status, handle.path = "done", report.path
        if report.path and not self.is_row(report.path):  # (gathered here: a pass over every done task at the
            self.files.append(report.path)  # end cost ~1 us per task at 300,000 tasks, scattered in memory)
        handle.checksum = report.checksum or f"uncached-{uuid.uuid4().hex}"  # dependents' keys follow it
        self.console.task_output(handle.name, report.stdout, report.stderr)
        self._recorded.append((report, (handle.name, handle.function.name, self.pipeline)))
        (self.console.found if report.found else self.console.saved)(handle.name, report.path)
        self.console.progress_step()

    def failed(self, report: TaskReport) -> None:
        handle = self.handles[report.key]
        handle.status, handle.error = "failed", report.exception
        self.console.task_output(handle.name, report.stdout, report.stderr)
        self.catalog.record_report(self.run_id, report)
        self.failures[report.key] = TaskFailure(handle.name, report.key, report.exception,
                                                report.error or "unknown error")
        self.console.failed(handle.name, report.error)
        self.console.progress_step()

    def skipped(self, task_id: str, cause: str) -> None:
        handles = self.handles
        handles[task_id].status = "skipped"
        self.catalog.set_status(self.run_id, [task_id], "skipped", f"input {handles[cause].name} failed")
        failure = self.failures.get(cause)
        if failure is not None:
            failure.skipped.append(handles[task_id].name)
        self.console.skipped(handles[task_id].name, handles[cause].name)
        self.console.progress_step()

    def repairing(self, task_id: str, bad: Iterable[str]) -> None:
        """Inputs of ``task_id`` found damaged or missing on the engine: removed, to be computed again."""
        for b in bad:
            handle = self.handles.get(b)
            name = handle.name if handle is not None else b
            warnings.warn(f"the cached result of {name} is damaged or missing; it was removed and "
                          "will be recomputed", NdustriaWarning, stacklevel=2)
            if handle is not None and handle.key:
                self.forget(handle.key)
                handle.checksum = ""
            self.console.recomputing(name, "damaged cache entry")

    def retrying(self, task_id: str, exc: BaseException) -> None:
        log.warning("retrying %s after its worker died (%s: %s)", self.handles[task_id].name,
                    type(exc).__name__, exc)
