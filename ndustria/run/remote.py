"""What runs on a remote worker (an ipyparallel engine, an MPI rank) around :func:`worker.execute`.

- :func:`execute_batch` runs several payloads in one call and returns their
  reports, so tiny tasks do not each pay a round trip to the engine.
- :func:`run_blob` is the one function the remote executors actually call: its
  argument is ``pickling.dumps((fn, args, kwargs))`` (cloudpickle, code keeping its
  file name for tracebacks) and it returns
  ``cloudpickle.dumps(result)``, so closures, notebook functions and user
  exceptions survive whatever serializer the transport uses (ipyparallel's
  canning, mpi4py's pickle). It names the engine in reports, can print
  ``[Rank k] running: <task>`` before each task (MPI script mode) and can
  capture each task's stdout/stderr into its report, so the scheduler prints
  them marked with the task.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import cloudpickle

from ndustria.errors import NdustriaError
from ndustria.records import TaskPayload, TaskReport
from ndustria.run import worker
from ndustria.store.writer import ResultWriter

FLUSH_BEFORE_END = 8  # tasks: a batch has its results synced this early, so its final sync is short
_ENGINE_NAMED = False
_CAPTURE = False  # set for the duration of one run_blob call (engines run one call at a time)
_ANNOUNCE = False


def run_one(payload: TaskPayload) -> TaskReport:
    """Run one payload (announced and captured when :func:`run_blob` asks for it)."""
    return _run_one(payload)


def run_one_inline(payload: TaskPayload) -> TaskReport:
    """:func:`run_one` in the scheduler's own thread (the serial backend): the previous batch's commit,
    which may still be landing (:func:`execute_batch_inline`), is waited for first and its locks are
    released, so that no other process waits for them while this task runs."""
    if payload.shared_cache:
        worker.get_store(payload.store_root, payload.fsync).settle()
    return _run_one(payload)


def execute_batch_inline(payloads: Sequence[TaskPayload]) -> list[TaskReport] | Future[list[TaskReport]]:
    """A batch run in the scheduler's own thread (the serial backend): the batch's keys claimed at once
    (:func:`ndustria.run.worker.claim_batch`: one store query for all of them), saves in line, no
    helper threads (whose handoffs cost more than they overlap when every task holds the GIL), the
    results committed with the batch and the compute locks released after that commit.

    That commit runs on the store's landing thread (:meth:`ndustria.store.Store.flush_soon`) while
    the scheduler prepares the next batch: the reports come back as a future, done once the results are
    visible (a report never announces a result a crash could still lose). The next batch first waits
    for that commit and releases this one's locks (:meth:`ndustria.store.Store.settle`)."""
    if len(payloads) < 2:
        return [run_one_inline(p) for p in payloads]
    grouped = list(payloads)  # made for this submission, in this process: marked in place
    for p in grouped:
        p.grouped = p.shared_cache
    stores = {p.store_root: worker.get_store(p.store_root, p.fsync) for p in grouped if p.shared_cache}
    for store in stores.values():
        store.settle()  # the previous batch's commit: its locks go before this batch takes its own
    reports: list[TaskReport | None] = [None] * len(grouped)
    landing: list[Future[None]] = []

    def commit() -> None:  # the batch's rows, in one commit (held below)
        for store in stores.values():
            store.flush()

    def commit_soon(release: Callable[[], None]) -> None:
        (store,) = stores.values()
        landed = store.flush_soon(release)
        if landed is not None:
            landing.append(landed)

    soon = commit_soon if len(stores) == 1 and not any(p.fsync for p in grouped) else None
    with worker.batch_claims(grouped, commit, soon) as start, contextlib.ExitStack() as held:
        for store in stores.values():
            held.enter_context(store.held())
        for i, payload in enumerate(grouped):
            claimed = start(i)
            if claimed is not None:  # a key another process holds waits until this batch holds no lock
                reports[i] = _run_one(payload, None, claimed)
    for i, payload in enumerate(grouped):
        if reports[i] is None:  # keys another process held: this batch holds no lock once its commit is settled
            payload.grouped = False
            reports[i] = run_one_inline(payload)
    for root in {p.store_root for p in grouped if p.shared_cache and p.fsync}:
        stores[root].sync()
    done: list[TaskReport] = reports  # type: ignore[assignment]
    if not landing or landing[0].done() and landing[0].exception() is None:
        return done
    out: Future[list[TaskReport]] = Future()

    def landed(f: Future[None]) -> None:
        error = f.exception()
        if error is not None:
            out.set_exception(error)
        else:
            out.set_result(done)

    landing[0].add_done_callback(landed)
    return out


def execute_batch(payloads: Sequence[TaskPayload]) -> list[TaskReport]:
    """Run payloads one after the other; one report each, in order.

    Results are saved behind the tasks: a writer thread stores each result while the next
    task runs (:mod:`ndustria.store.writer`), and holds the task's compute lock until it has.
    Tasks with instruments are saved in line, so the writer's work never shows in their
    measurements. Durability is paid per batch, not per result: each result is written and
    renamed into place without its own fsync; the writer syncs what it wrote now
    and then while the batch runs, and one last ``Store.sync()`` runs before any report
    leaves. Readers still see whole entries only (rename), and an entry torn by a power loss
    in between fails its checksum and is recomputed.
    """
    if len(payloads) < 2:
        return [_run_one(p) for p in payloads]
    shared = [p for p in payloads if p.shared_cache]
    stores = {p.store_root: worker.get_store(p.store_root, p.fsync) for p in shared}
    durable = {p.store_root for p in shared if p.fsync}

    def flush() -> None:  # commit the batch's small entries (and make them durable where asked)
        for root, store in stores.items():
            if root in durable:
                store.sync()
            else:
                store.flush()

    # Every free compute lock of the batch is taken first and the store checked once for all of them
    # (claim_batch); a pipeline run that starts before a task does (one of the batch's tasks running a
    # pipeline) gives its claim back, and the task claims its key again. A key another process holds
    # waits until the end, when this batch holds no lock: waiting while holding could deadlock.
    grouped = [dataclasses.replace(p, grouped=True) if p.shared_cache else p for p in payloads]  # not the caller's
    reports: list[TaskReport | None] = [None] * len(grouped)
    with worker.batch_claims(grouped, flush) as start, ResultWriter(flush=flush if stores else None) as writer:
        for i, payload in enumerate(grouped):
            if i == len(grouped) - FLUSH_BEFORE_END:
                writer.flush_soon()
            claimed = start(i)
            if claimed is not None:
                reports[i] = _run_one(payload, None if payload.instruments else writer, claimed)
    deferred = [i for i in range(len(grouped)) if reports[i] is None]
    for i in deferred:  # keys another process held: this batch holds no lock now, so waiting cannot deadlock
        reports[i] = _run_one(grouped[i])
    if deferred:
        flush()
    return reports  # type: ignore[return-value]


def noop() -> None:
    """Does nothing: timing its round trip measures a backend's per-submission overhead."""


def run_blob(blob: bytes, capture: bool = False, announce: bool = False, paths: Sequence[str] = ()) -> bytes:
    """Unpickle ``(fn, args, kwargs)``, call it on this engine, return the pickled result.

    ``paths``: the scheduler's source folders (:func:`ndustria.run.backends.source_paths`); those this
    engine lacks and can see are appended to its ``sys.path`` first.
    """
    global _CAPTURE, _ANNOUNCE
    _name_engine()
    _add_paths(paths)
    fn, args, kwargs = cloudpickle.loads(blob)
    _CAPTURE, _ANNOUNCE = capture, announce
    try:
        result = fn(*args, **kwargs)
    finally:
        _CAPTURE = _ANNOUNCE = False
    try:
        return cloudpickle.dumps(result)
    except Exception:  # a report carrying an exception that will not pickle: keep its text only
        for report in result if isinstance(result, list) else [result]:
            if isinstance(report, TaskReport):
                report.exception = NdustriaError(report.error or "task failed")
        return cloudpickle.dumps(result)


_PATHS_SEEN: set[tuple[str, ...]] = set()


def _add_paths(paths: Sequence[str]) -> None:
    key = tuple(paths)
    if key in _PATHS_SEEN:
        return
    _PATHS_SEEN.add(key)
    for path in paths:  # appended: the engine's own installation comes first
        if path not in sys.path and os.path.isdir(path):
            sys.path.append(path)


def _run_one(payload: TaskPayload, writer: ResultWriter | None = None,
             claimed: worker.Claim | None = None) -> TaskReport:
    if _ANNOUNCE:  # one write per line, so mpiexec never splices two ranks' lines together
        sys.stdout.write(f"[{_engine_label()}] running: {payload.name}\n")
        sys.stdout.flush()
    if not _CAPTURE:
        return worker.execute(payload, writer, claimed)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        report = worker.execute(payload, writer, claimed)
    report.stdout, report.stderr = out.getvalue(), err.getvalue()
    return report


def _engine_label() -> str:
    rank = _mpi_rank()
    return f"Rank {rank}" if rank is not None else worker.engine_id()


def _name_engine() -> None:
    """Give this process a readable engine id for reports: ``rank2``, ``engine1``."""
    global _ENGINE_NAMED
    if _ENGINE_NAMED:
        return
    _ENGINE_NAMED = True
    rank = _mpi_rank()
    if rank is not None:
        worker.set_engine_id(f"rank{rank}")
        return
    engine = _ipyparallel_engine_id()
    if engine is not None:
        worker.set_engine_id(f"engine{engine}")


def _mpi_rank() -> int | None:
    mpi = sys.modules.get("mpi4py.MPI")
    if mpi is not None and mpi.Is_initialized() and not mpi.Is_finalized():
        return int(mpi.COMM_WORLD.Get_rank())
    return None


def _ipyparallel_engine_id() -> int | None:
    if "ipyparallel" not in sys.modules:
        return None
    try:
        from IPython import get_ipython

        return getattr(getattr(get_ipython(), "kernel", None), "engine_id", None)
    except Exception:  # pragma: no cover - not inside an engine
        return None

