"""MPI script mode: ``mpiexec -n 4 python script.py`` with ``Pipeline(parallel=True)``.

Every rank runs the script up to ``run()``. Then, collectively:

1. all ranks enter ``mpi4py.futures.MPICommExecutor(COMM_WORLD, root=0)``;
   rank 0 gets an executor and schedules the run (it alone prints, writes the
   catalog, and decides what is cached), the other ranks serve tasks until rank
   0 leaves the ``with`` block — each prints ``[Rank k] running: <task>``;
2. rank 0 broadcasts the outcome (every handle's status, the failures, or why
   the run was aborted), always, in a ``finally`` — so a failing task or an
   exception on rank 0 never leaves the other ranks waiting;
3. every rank returns the same summary, or raises the same ``TaskError``.

Results are then readable on every rank: ``h.result()`` loads from the cache
directory, which all ranks must see (a shared filesystem across nodes).
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle

from ndustria.errors import NdustriaError, TaskError, TaskFailure
from ndustria.records import RunSummary
from ndustria.run.backends import Backend, mpi_backend

if TYPE_CHECKING:
    from ndustria.task import TaskHandle

ROOT = 0


class NullStream(io.TextIOBase):
    """Where the console of a non-root rank writes: nowhere (rank 0 prints for everyone)."""

    def write(self, text: str) -> int:
        return len(text)


@dataclass
class Outcome:
    """What rank 0 tells the other ranks after a run."""

    statuses: dict[str, str] = field(default_factory=dict)
    keys: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # id -> (cache key, checksum)
    failures: list[TaskFailure] = field(default_factory=list)
    summary: Any = None
    aborted: str = ""


_HOOKED = False


def abort_on_uncaught_exception() -> None:
    """Make an exception that no rank catches end the whole job (``MPI_Abort``), as
    ``python -m mpi4py`` does, instead of leaving the other ranks waiting in a collective.
    A ``TaskError`` is exempt: every rank raises it alike, so a normal exit is collective."""
    global _HOOKED
    if _HOOKED:
        return
    _HOOKED = True
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        previous(kind, value, tb)
        if not issubclass(kind, TaskError):
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(0.3)  # let mpiexec forward the traceback before the abort tears the job down
            from mpi4py import MPI

            MPI.COMM_WORLD.Abort(1)

    sys.excepthook = hook


def run_collective(handles: dict[str, TaskHandle], run: Callable[[Backend], RunSummary],
                   shared_cache: bool = True) -> RunSummary:
    """Run ``handles`` over all ranks of ``COMM_WORLD``; call it on every rank. Rank 0 calls
    ``run(backend)`` with the backend of this run; every rank returns its summary or raises the
    same ``TaskError`` (whose ``failures`` every rank then holds)."""
    from mpi4py import MPI
    from mpi4py.futures import MPICommExecutor

    comm = MPI.COMM_WORLD
    if comm.Get_rank() != ROOT:
        with MPICommExecutor(comm, root=ROOT):
            pass  # serve tasks until rank 0 is done
        return _apply(handles, _receive(comm))
    outcome = Outcome()
    try:
        with MPICommExecutor(comm, root=ROOT) as executor:
            try:
                outcome.summary = run(mpi_backend(executor, comm.Get_size(), shared_cache))
            except TaskError as exc:
                outcome.failures = exc.failures
                raise
    except BaseException as exc:
        if not outcome.failures:
            outcome.aborted = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        outcome.statuses = {k: h.status for k, h in handles.items()}
        outcome.keys = {k: (h.key, h.checksum) for k, h in handles.items()}  # dependents' keys follow results
        _send(comm, outcome)
    return outcome.summary


def _send(comm: Any, outcome: Outcome) -> None:
    try:
        blob = cloudpickle.dumps(outcome)
    except Exception:  # an exception object that will not pickle: send its text
        for failure in outcome.failures:
            failure.exception = NdustriaError(failure.traceback)
        blob = cloudpickle.dumps(outcome)
    comm.bcast(blob, root=ROOT)


def _receive(comm: Any) -> Outcome:
    return cloudpickle.loads(comm.bcast(None, root=ROOT))


def _apply(handles: dict[str, TaskHandle], outcome: Outcome) -> RunSummary:
    for key, status in outcome.statuses.items():
        if key in handles:
            handles[key].status = status
    for key, (cache_key, checksum) in outcome.keys.items():
        if key in handles:
            handles[key].key, handles[key].checksum = cache_key, checksum
    for failure in outcome.failures:
        if failure.key in handles:
            handles[failure.key].error = failure.exception
    if outcome.failures:
        raise TaskError(outcome.failures)
    if outcome.aborted:
        raise NdustriaError(f"the run was aborted on rank {ROOT}: {outcome.aborted}")
    return outcome.summary
