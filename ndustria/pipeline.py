"""The Pipeline: declare tasks with decorated functions, then run what is not cached."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .backends import Backend, choose, mpi_world, resolve_backend
from .batching import BatchPolicy
from .catalog import Catalog
from .config import resolve_cache_dir
from .console import LOG_LINES, Console
from .errors import (
    CacheWriteError,
    ConfigError,
    CorruptEntryError,
    InputChangedError,
    NdustriaError,
    NdustriaWarning,
    TaskError,
    TaskFailure,
    TaskNotComputedError,
)
from .eviction import enforce_limit, resolve_max_size
from .files import FileDigests, pin_files
from .keys import KeyMaker, result_key
from .locks import clean_stale
from .mpi import NullStream, abort_on_uncaught_exception, run_collective
from .remote import execute_batch, run_one
from .runfiles import write_log, write_run_files
from .scheduler import DEFAULT_DURATION, GraphState, Scheduler, SchedulerHooks, longest_path_priority
from .store import Store
from .task import TaskFunction, TaskHandle, iter_handles, replace_handles, task_closure
from .worker import DepRef, TaskPayload, TaskReport

log = logging.getLogger("ndustria")
_SEQUENCE = itertools.count()


@dataclass
class RunSummary:
    """What one ``run()`` did."""

    run_id: int | None
    executed: int
    cached: int
    failed: int
    skipped: int
    seconds: float


def default_name() -> str:
    """The running script's file stem (``simple_example``), else ``"ndustria"``."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    stem = Path(path).stem if path else ""
    if not stem or stem in ("-c", "-m", "ipykernel_launcher", "__main__", "pytest") or stem.startswith("<"):
        return "ndustria"
    return stem


class Pipeline:
    """A set of tasks declared by calling decorated functions, run with :meth:`run`."""

    def __init__(self, name: str | None = None, dryrun: bool = False, parallel: bool = False,
                 timeit: bool = False, profiling: bool = False, memcheck: bool | str = False,
                 cache_dir: str | Path | None = None, backend: str | None = None, engines: int | None = None,
                 *, executor: Executor | None = None, cluster: Any = None, retries: int = 1,
                 shared_cache: bool = True, fsync: bool = True, verbose: bool = True,
                 max_cache_size: int | str | None = None, on_cache_error: str = "error") -> None:
        self.name = name or default_name()
        self.dryrun = dryrun
        self.parallel = parallel
        self.timeit = timeit
        self.profiling = profiling
        if memcheck not in (True, False, "rss"):
            raise ConfigError(f"memcheck must be True, False or 'rss' (process RSS only, no tracemalloc), "
                              f"not {memcheck!r}")
        self.memcheck = memcheck
        self.cache_dir = Path(resolve_cache_dir(cache_dir).value)
        self.backend_name = backend
        self.engines = engines
        self.executor = executor
        self.retries = retries
        self.shared_cache = shared_cache
        self.fsync = fsync
        self.max_cache_size = resolve_max_size(max_cache_size)  # bytes, or None: no limit
        if on_cache_error not in ("error", "warn"):
            raise NdustriaError(f"on_cache_error must be 'error' or 'warn', not {on_cache_error!r}")
        self.on_cache_error = on_cache_error  # "warn": results that cannot be written stay in memory
        self._uncached: dict[str, Any] = {}
        self.cluster = cluster  # an ipp.Cluster / ipp.Client / profile name / cluster id to attach to
        # Under mpiexec with several ranks, run() is collective and only rank 0 prints.
        self._mpi = choose(parallel, backend, executor, cluster) == "mpi" and mpi_world()[1] > 1
        quiet = self._mpi and mpi_world()[0] != 0
        if self._mpi:
            abort_on_uncaught_exception()
        self.console = Console(verbose, stream=NullStream() if quiet else None, record=not quiet)
        self._run_id: int | None = None  # the catalog's id of the latest run (for its log)
        self.tasks: list[TaskHandle] = []
        self._pending: dict[str, TaskHandle] = {}
        self._keys = KeyMaker()
        self._keys.hasher.file_token = FileDigests(lambda: self.catalog)  # File digests remembered in the catalog
        self._store: Store | None = None
        self._catalog: Catalog | None = None
        self._backend: Backend | None = None
        self._failures: dict[str, TaskFailure] = {}
        self._last_scheduler: Scheduler | None = None  # the last run's scheduler (its submission count)

    # -- declaring -------------------------------------------------------------------
    def AddFunction(self, func: Callable[..., Any] | None = None, *, rerun: bool = False,  # noqa: N802
                    version: str | None = None, name: str | None = None) -> Any:
        """Decorator registering a function as a task of this pipeline.

        ``rerun=True`` runs its tasks even when cached; ``version="..."`` replaces the
        code fingerprint (keep the cache across a refactor, or bump it by hand).
        """
        def register(f: Callable[..., Any]) -> TaskFunction:
            if isinstance(f, TaskFunction):
                f = f.func
            if not callable(f):
                raise NdustriaError(f"@AddFunction decorates functions, not {type(f).__name__}")
            return TaskFunction(f, self, rerun=rerun, version=version, name=name)

        return register(func) if func is not None else register

    task = AddFunction

    def _declare(self, function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskHandle:
        try:
            bound_args, bound_kwargs, arguments = function.bind(args, kwargs)
        except TypeError as exc:
            raise NdustriaError(f"cannot declare a task of {function.name}: {exc}") from exc
        record: dict[str, bytes] = {}
        key = self._keys.task_key(function, arguments, args, kwargs, record)
        existing = self._pending.get(key)
        if existing is not None:
            return existing
        deps: dict[str, TaskHandle] = {}
        for value in (*bound_args, *bound_kwargs.values()):
            for handle in iter_handles(value):
                deps.setdefault(handle.id, handle)
        # File arguments pinned to the snapshot the key was made from (checked on the engine); O(1) without Files
        bound_args, bound_kwargs, arguments, files = pin_files(self._keys.hasher, function.signature, bound_args,
                                                               bound_kwargs, arguments)
        handle = TaskHandle(function, bound_args, bound_kwargs, arguments, key, list(deps.values()), function.rerun)
        handle._files = files
        handle._written_args = (args, kwargs)
        handle.seq = next(_SEQUENCE)
        handle._fixed = fixed = self._keys.fixed(function, arguments, record)  # re-checked in _payload
        if fixed is not None and fixed.values:
            handle.name  # noqa: B018 - the call as declared, before its values can change
        self.tasks.append(handle)
        self._pending[key] = handle
        if handle.deps:
            handle.key = self._result_key(handle)  # None while one of its inputs is still to be computed
        if not handle.rerun and handle.key is not None and self.store.contains(handle.key):
            handle.status = "cached"
            self.console.cache_hit(handle)
        else:
            self.console.added(handle)
        return handle

    def _result_key(self, handle: TaskHandle) -> str | None:
        """A dependent's cache key: its id and the checksums of the results its inputs produced; None
        while an input has no stored result yet (or must run again first)."""
        inputs = []
        for dep in handle.deps:
            if dep.status not in ("cached", "done") or dep.key is None:
                return None
            if not dep.checksum:
                try:
                    info = self.store.info(dep.key)
                except CorruptEntryError:
                    info = None
                if info is None:  # removed or damaged since it was found: it runs again
                    dep.status = "declared"
                    return None
                dep.checksum = info.checksum
            inputs.append((dep.id, dep.checksum))
        return result_key(handle.id, inputs)

    # -- running ---------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run every declared task that is not cached (and ``rerun`` tasks), in parallel if asked.

        Raises :class:`TaskError` after the run if any task failed; every task that did
        not depend on a failed one has completed and is cached.
        """
        handles = task_closure(list(self._pending.values()))
        self._pending.clear()
        started, state, self._run_id = time.time(), "done", None
        try:
            if self._mpi:
                return run_collective(self, handles)
            return self._run_handles(handles)
        except BaseException as exc:
            state = "failed" if isinstance(exc, TaskError) else f"ended by {type(exc).__name__}"
            self.console.log_error(exc)
            raise
        finally:
            self._keys.clear()
            self._write_log(started, state)

    def _write_log(self, started: float, state: str) -> None:
        """The run's console lines and errors, to <cache>/<name>_log.txt (rank 0 only; ``ndustria -l``)."""
        if self.console.recording and self.cache_dir.is_dir():
            lines, left_out = self.console.take_log()
            write_log(self.cache_dir, self.name, lines, run_id=self._run_id, started=started,
                      state="dry run" if self.dryrun and state == "done" else state, max_lines=LOG_LINES,
                      left_out=left_out, fsync=self.fsync)

    def _run_handles(self, handles: dict[str, TaskHandle]) -> RunSummary:
        t0 = time.perf_counter()
        store = self.store
        # Hits were looked up when declared; an entry that vanished since is repaired when it is needed,
        # and one another process stored since is found by the worker (it checks under the key's lock).
        to_run = [h for h in handles.values() if h.status not in ("done", "cached")]
        for h in to_run:
            h.status = "queued"
        run_keys = {h.id for h in to_run}
        cached = [h for h in handles.values() if h.id not in run_keys]
        for h in cached:
            if h.status != "done":
                h.status = "cached"
        if self.dryrun:
            return self._dry_run(handles, to_run, t0)
        backend = self._get_backend() if to_run else None
        self.console.run_start(len(to_run), backend.workers if backend else 1,
                               backend.name if backend else "serial")
        catalog = self.catalog
        run_id = catalog.start_run(self.name, backend.name if backend else "none",
                                   backend.workers if backend else 0, self._options())
        self._run_id = run_id

        def write_rows() -> None:  # with tasks to run, while the first ones run
            catalog.add_tasks(run_id, [(h.id, h.name, h.function.name, _row_status(h, run_keys),
                                        None if h.id in run_keys else h.key) for h in handles.values()])
            catalog.touch([h.key for h in cached if h.key])

        rows = _RunRows(write_rows)

        state = GraphState(deps={k: tuple(d.id for d in h.deps) for k, h in handles.items()},
                           available={h.id for h in cached},
                           order={k: i for i, k in enumerate(handles)})
        by_key, by_fn = catalog.durations(run_keys, {h.function.name for h in to_run})
        state.priority = longest_path_priority(state.deps, run_keys, _estimator(to_run, by_key, by_fn))
        state.add([h.id for h in to_run])
        self._failures = {}
        if to_run:  # the scheduler writes the rows once the first tasks left (or when it is interrupted)
            self._schedule(state, handles, backend, run_id, history=by_fn, rows=rows)
        rows()  # nothing to run: every task was cached
        catalog.finish_run(run_id, "failed" if state.failed else "done")
        write_run_files(catalog, self.cache_dir, self.name, [h.id for h in self.tasks],
                        timeit=self.timeit, memcheck=self.memcheck, profiling=self.profiling, fsync=self.fsync)
        keep = {h.key for h in (*handles.values(), *self.tasks) if h.key}
        enforce_limit(store, catalog, self.max_cache_size, keep=keep)
        summary = RunSummary(run_id, len(state.done), len(cached), len(state.failed), len(state.skipped),
                             time.perf_counter() - t0)
        if state.failed:
            self.console.summary_failed(len(state.failed), len(state.skipped))
            raise TaskError(list(self._failures.values()))
        self.console.all_done()
        return summary

    def _schedule(self, state: GraphState, handles: dict[str, TaskHandle], backend: Backend, run_id: int,
                  history: dict[str, float], rows: _RunRows) -> None:
        catalog = self.catalog

        def submitted(keys: list[str]) -> None:
            for key in keys:
                handles[key].status = "running"
            if rows.written:  # the first submissions go before the rows exist, which then say "running"
                catalog.set_status(run_id, keys, "running")

        recorded: list[tuple[TaskReport, tuple[str, str, str]]] = []  # completed reports of one submission

        @contextlib.contextmanager
        def settling() -> Iterator[None]:
            """The reports of one submission: one transaction, the completed ones in one statement."""
            with catalog.batch():
                try:
                    yield
                finally:
                    if recorded:
                        catalog.record_reports(run_id, recorded)
                        recorded.clear()

        def completed(report: TaskReport) -> None:
            handle = handles[report.key]
            if report.has_value:  # engines without the shared cache send the value back
                report.path, report.size, report.checksum = self._save_or_keep(handle.key, report.value)
                report.value = None
            handle.status, handle.path = "done", report.path
            handle.checksum = report.checksum or f"uncached-{uuid.uuid4().hex}"  # dependents' keys follow it
            self.console.task_output(handle.name, report.stdout, report.stderr)
            recorded.append((report, (handle.name, handle.function.name, self.name)))
            (self.console.found if report.found else self.console.saved)(handle.name, report.path)
            self.console.progress_step()

        def failed(report: TaskReport) -> None:
            handle = handles[report.key]
            handle.status, handle.error = "failed", report.exception
            self.console.task_output(handle.name, report.stdout, report.stderr)
            catalog.record_report(run_id, report)
            self._failures[report.key] = TaskFailure(handle.name, report.key, report.exception,
                                                     report.error or "unknown error")
            self.console.failed(handle.name, report.error)
            self.console.progress_step()

        def skipped(key: str, cause: str) -> None:
            handles[key].status = "skipped"
            catalog.set_status(run_id, [key], "skipped", f"input {handles[cause].name} failed")
            failure = self._failures.get(cause)
            if failure is not None:
                failure.skipped.append(handles[key].name)
            self.console.skipped(handles[key].name, handles[cause].name)
            self.console.progress_step()

        def repairing(key: str, bad: list[str]) -> None:
            for b in bad:
                name = handles[b].name if b in handles else b
                warnings.warn(f"the cached result of {name} is damaged or missing; it was removed and "
                              "will be recomputed", NdustriaWarning, stacklevel=2)
                if b in handles and handles[b].key:
                    self._forget(handles[b].key)
                    handles[b].checksum = ""
                self.console.recomputing(name, "damaged cache entry")

        def retrying(key: str, exc: BaseException) -> None:
            log.warning("retrying %s after its worker died (%s: %s)", handles[key].name, type(exc).__name__, exc)

        hooks = SchedulerHooks(submitted, completed, failed, skipped, repairing, settling=settling,
                               started=rows, retrying=retrying)
        policy = BatchPolicy(backend.overhead, backend.workers, history=history)
        scheduler = Scheduler(backend.executor, backend.workers, run_one,
                              lambda key: self._payload(handles[key], backend), hooks, retries=self.retries,
                              run_batch=execute_batch, policy=policy, group=lambda key: handles[key].function.name,
                              watchdog=backend.watchdog, recover=backend.recover)
        self._last_scheduler = scheduler
        self.console.progress_start(len(state.waiting) + len(state.ready))
        try:
            scheduler.run(state)
        except BaseException:
            rows()  # the run's task rows, had the interruption come before the first submission left
            catalog.finish_run(run_id, "interrupted")
            if self._backend is not None:  # stop what ndustria started (a local cluster), cancel the rest
                self._backend.abort()
                self._backend = None
            raise
        finally:
            self.console.progress_end()

    def _payload(self, handle: TaskHandle, backend: Backend) -> TaskPayload:
        # The task runs on these very objects (serial: right after this; other backends pickle the payload
        # at submission): they must still be what the key was made from, else InputChangedError.
        self._keys.check_fixed(handle.function, handle.name, handle._fixed)

        if handle.deps:  # every input is stored now: the key follows what they produced
            handle.key = self._result_key(handle)
            if handle.key is None:
                raise NdustriaError(f"the inputs of {handle.name} have no stored result; run it again")

        def to_ref(h: TaskHandle) -> DepRef:
            return DepRef(h.key or "", h.id)

        def is_handle(x: Any) -> bool:
            return isinstance(x, TaskHandle)

        inputs: dict[str, Any] = {}
        if not backend.shared_cache:
            inputs = {d.key: self.store.load(d.key) for d in handle.deps if d.key not in self._uncached}
        inputs.update({d.key: self._uncached[d.key] for d in handle.deps if d.key in self._uncached})
        refs = bool(handle.deps)  # no inputs: no handle to replace in the arguments
        return TaskPayload(
            key=handle.id, store_key=handle.key or "", name=handle.name, func=handle.function.func,
            args=replace_handles(handle.args, to_ref, is_handle) if refs else handle.args,
            kwargs=replace_handles(handle.kwargs, to_ref, is_handle) if refs else handle.kwargs,
            store_root=str(self.cache_dir), fsync=self.fsync, instruments=self._instruments(),
            shared_cache=backend.shared_cache, inputs=inputs, rerun=handle.rerun, on_cache_error=self.on_cache_error,
            refs=refs, files=handle._files,
        )

    def _dry_run(self, handles: dict[str, TaskHandle], to_run: list[TaskHandle], t0: float) -> RunSummary:
        self.console.run_start(len(to_run))
        run_id = self._run_id = self.catalog.start_run(self.name, "dryrun", 0, self._options())
        state = GraphState(deps={k: tuple(d.id for d in h.deps) for k, h in handles.items()},
                           available={h.id for h in handles.values() if h.status == "cached"},
                           order={k: i for i, k in enumerate(handles)})
        run_keys = [h.id for h in to_run]
        by_key, by_fn = self.catalog.durations(run_keys, {h.function.name for h in to_run})
        state.priority = longest_path_priority(state.deps, run_keys, _estimator(to_run, by_key, by_fn))
        state.add(run_keys)
        failures = []
        while (key := state.pop_ready()) is not None:
            handle = handles[key]
            handle.status = "declared"
            try:  # what a real run checks before sending a task
                self._keys.check_fixed(handle.function, handle.name, handle._fixed)
            except InputChangedError as exc:
                failures.append(TaskFailure(handle.name, key, exc, f"{type(exc).__name__}: {exc}"))
                self.console.failed(handle.name, str(exc))
                for child in state.fail(key):
                    failures[-1].skipped.append(handles[child].name)
                    self.console.skipped(handles[child].name, handle.name)
                continue
            self.console.would_run(handle.name)
            state.finish(key)
        self.catalog.finish_run(run_id, "dryrun")
        self.console.dry_run_end(len(to_run))
        if failures:  # a real run would fail these before running them: say so now
            raise TaskError(failures)
        self.console.all_done()
        return RunSummary(run_id, 0, len(handles) - len(to_run), 0, 0, time.perf_counter() - t0)

    def pack(self, save_to: str | Path = "bundle.tar.gz", *, all_runs: bool = False) -> Path:
        """Write the results of this pipeline's latest run (of all its runs with ``all_runs=True``) and
        their catalog rows to the bundle ``save_to``; ``ndustria unpack`` imports it elsewhere
        (:mod:`ndustria.bundle`). Returns the bundle's path."""
        from .bundle import pack

        done = pack(self.store, self.catalog, self.name, save_to, all_runs=all_runs, progress=self.console.verbose)
        for line in done.left_out:
            warnings.warn(f"not packed: {line}", NdustriaWarning, stacklevel=2)
        return done.path

    # -- results ---------------------------------------------------------------------
    def _result(self, handle: TaskHandle, *, mmap: bool = False) -> Any:
        if handle.status == "failed":
            failure = self._failures.get(handle.id)
            raise TaskNotComputedError(f"{handle.name} failed in the last run:\n"
                                       f"{failure.traceback if failure else handle.error}")
        if handle.status == "skipped":
            raise TaskNotComputedError(f"{handle.name} was skipped because one of its inputs failed")
        if handle.key is None:  # an input must be computed first: run() has not (yet) done so
            raise TaskNotComputedError(
                f"{handle.name} has no result yet: call {self.name}.run() (pipe.run()) first")
        if handle.key in self._uncached:  # on_cache_error="warn" and the cache could not take it
            return self._uncached[handle.key]
        try:
            return self.store.load(handle.key, mmap=mmap)
        except KeyError:
            if handle.status not in ("done", "cached"):
                raise TaskNotComputedError(
                    f"{handle.name} has no result yet: call {self.name}.run() (pipe.run()) first"
                ) from None
            reason = "its cache entry was removed"
        except CorruptEntryError as exc:
            reason = f"its cache entry is damaged ({exc.reason})"
        warnings.warn(f"the cached result of {handle.name} cannot be used: {reason}; it is being recomputed",
                      NdustriaWarning, stacklevel=3)
        self._forget(handle.key)
        handle.checksum = ""
        self.console.recomputing(handle.name, reason)
        handle.status = "queued"
        self._run_handles(task_closure([handle]))
        return self.store.load(handle.key, mmap=mmap)

    def _save_or_keep(self, key: str, value: Any) -> tuple[str, int, str]:
        """Store a value an engine sent back: (path, size, checksum); with ``on_cache_error="warn"``
        a value the cache cannot take is kept in memory for this pipeline instead."""
        try:
            info = self.store.save(key, value)
        except CacheWriteError as exc:
            if self.on_cache_error != "warn":
                raise
            warnings.warn(f"cannot write to the cache directory {exc.path} ({exc.reason}): results are kept "
                          "in memory only and will be recomputed by the next run", NdustriaWarning, stacklevel=2)
            self._uncached[key] = value
            return "", 0, ""
        self._uncached.pop(key, None)
        return str(info.path), info.size, info.checksum

    def _forget(self, key: str) -> None:
        self.store.remove(key)
        self.catalog.remove_entry(key)

    # -- plumbing ----------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.cache_dir, fsync=self.fsync)
            clean_stale(self._store)  # temp and lock files of killed runs, once they are an hour old
        return self._store

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self.store  # noqa: B018 - creates the cache directory first
            self._catalog = Catalog(self.cache_dir)
        return self._catalog

    def _get_backend(self) -> Backend:
        if self._backend is None:
            if self._mpi:  # outside a collective run (a damaged entry recomputed by result()): this rank alone
                return resolve_backend(parallel=False, backend="serial", engines=None)
            self._backend = resolve_backend(parallel=self.parallel, backend=self.backend_name,
                                            engines=self.engines, executor=self.executor,
                                            shared_cache=self.shared_cache, cluster=self.cluster)
        return self._backend

    def _shutdown_backend(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def close(self) -> None:
        """Release the backend (a cluster or process pool this pipeline started) and the catalog."""
        self._shutdown_backend()
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def _instruments(self) -> tuple[str, ...]:
        names = tuple(n for n, on in (("timeit", self.timeit), ("memcheck", self.memcheck),
                                      ("profiling", self.profiling)) if on)
        return (*names, "rss-only") if self.memcheck == "rss" else names

    def _options(self) -> dict[str, Any]:
        return {"parallel": self.parallel, "instruments": list(self._instruments()), "dryrun": self.dryrun}

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {len(self.tasks)} tasks, cache {self.cache_dir}>"


class _RunRows:
    """Writes a run's task rows in the catalog, once, however often it is called."""

    def __init__(self, write: Callable[[], None]) -> None:
        self._write = write
        self.written = False

    def __call__(self) -> None:
        if not self.written:
            self.written = True
            self._write()


def _row_status(handle: TaskHandle, run_keys: set[str]) -> str:
    """A task's status in the catalog when its run's rows are written (some may already be running)."""
    if handle.id not in run_keys:
        return "cached"
    return "running" if handle.status == "running" else "queued"


def _estimator(to_run: Iterable[TaskHandle], by_key: dict[str, float],
               by_fn: dict[str, float]) -> Callable[[str], float]:
    """Expected seconds of a task: its own last duration, else its function's recent mean, else a default."""
    fn_of = {h.id: h.function.name for h in to_run}
    return lambda key: by_key.get(key) or by_fn.get(fn_of.get(key, ""), DEFAULT_DURATION) or DEFAULT_DURATION
