"""The Pipeline: declare tasks with decorated functions, then run what is not cached."""

from __future__ import annotations

import itertools
import logging
import operator
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ndustria import gcfreeze
from ndustria.config import resolve_cache_dir
from ndustria.errors import (
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
from ndustria.keys.files import FileDigests, pin_files
from ndustria.keys.maker import KeyMaker
from ndustria.record.catalog import Catalog
from ndustria.record.instruments import check_instruments
from ndustria.record.recorder import RunRecorder
from ndustria.records import DepRef, RunSummary, TaskPayload
from ndustria.run.backends import Backend, check_backend, check_engines, choose, mpi_world, resolve_backend
from ndustria.run.batching import BatchPolicy
from ndustria.run.mpi import NullStream, abort_on_uncaught_exception, run_collective
from ndustria.run.remote import execute_batch, execute_batch_inline, run_one, run_one_inline
from ndustria.run.scheduler import (
    DEFAULT_DURATION,
    GraphState,
    Scheduler,
    SchedulerHooks,
    longest_path_priority,
)
from ndustria.run.worker import give_back_ahead
from ndustria.show.console import LOG_LINES, Console
from ndustria.show.runfiles import write_log, write_run_files
from ndustria.store.entries import Store
from ndustria.store.eviction import enforce_limit, resolve_max_size
from ndustria.store.locks import clean_stale, release_taken, taken_mark
from ndustria.store.lookup import dependent_key
from ndustria.task import (
    SCALARS,
    TaskFunction,
    TaskHandle,
    iter_handles,
    replace_handles,
    task_closure,
    unfinished,
)

log = logging.getLogger("ndustria")
_SEQUENCE = itertools.count()
_NONE: dict[str, Any] = {}


def default_name() -> str:
    """The running script's file stem (``simple_example``), else ``"ndustria"``."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    stem = Path(path).stem if path else ""
    if not stem or stem in ("-c", "-m", "ipykernel_launcher", "__main__", "pytest") or stem.startswith("<"):
        return "ndustria"
    return stem


class Pipeline:
    """A set of tasks declared by calling decorated functions, run with :meth:`run`.

    The facade over a task's life (DESIGN.md): it declares tasks and makes their keys
    (:mod:`ndustria.keys`), looks them up (:mod:`ndustria.store.lookup`), hands the rest to the
    scheduler and a backend (:mod:`ndustria.run`), records the run (:mod:`ndustria.record`) and
    shows it (:mod:`ndustria.show`).
    """

    def __init__(self, name: str | None = None, dryrun: bool = False, parallel: bool = False,
                 timeit: bool = False, profiling: bool = False, memcheck: bool | str = False,
                 cache_dir: str | Path | None = None, backend: str | None = None, engines: int | None = None,
                 *, executor: Executor | None = None, cluster: Any = None, retries: int = 1,
                 shared_cache: bool = True, fsync: bool = True, verbose: bool = True,
                 max_cache_size: int | str | None = None, on_cache_error: str = "error",
                 freeze_gc: bool = True) -> None:
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
        self.freeze_gc = freeze_gc  # large graphs out of the garbage collector's walks (ndustria.gcfreeze)
        self._freeze_next = gcfreeze.FREEZE_AT  # pending tasks at which the graph is frozen next
        self._uncached: dict[str, Any] = {}
        self.cluster = cluster  # an ipp.Cluster / ipp.Client / profile name / cluster id to attach to
        self.check_options()  # before anything starts (under mpiexec: before an uncaught error aborts the job)
        # Under mpiexec with several ranks, run() is collective and only rank 0 prints.
        self._mpi = choose(parallel, backend, executor, cluster) == "mpi" and mpi_world()[1] > 1
        quiet = self._mpi and mpi_world()[0] != 0
        if self._mpi:
            abort_on_uncaught_exception()
        self.console = Console(verbose, stream=NullStream() if quiet else None, record=not quiet)
        self._run_id: int | None = None  # the catalog's id of the latest run (for its log)
        self.on_result: Callable[[Any, TaskHandle], None] | None = None  # called with each value result_of() returns
        self.tasks: list[TaskHandle] = []
        self._pending: dict[str, TaskHandle] = {}
        self._unlooked: list[TaskHandle] = []  # declared, not looked up in the cache yet (see look_up)
        self._keys = KeyMaker()
        self._files = self._keys.hasher.file_token = FileDigests(lambda: self.catalog)  # digests kept in the catalog
        self._store: Store | None = None
        self._catalog: Catalog | None = None
        self._backend: Backend | None = None
        self._failures: dict[str, TaskFailure] = {}
        self._last_scheduler: Scheduler | None = None  # the last run's scheduler (its submission count)
        self._declaring_only = False  # inside declaring_only(): run() refuses

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

    def declare(self, function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskHandle:
        """Declare the task ``function(*args, **kwargs)`` (what calling a task function does): bind its
        arguments, make its key, look it up; the same call twice returns the same handle."""
        try:
            bound_args, bound_kwargs, arguments = function.bind(args, kwargs)
        except TypeError as exc:
            raise NdustriaError(f"cannot declare a task of {function.name}: {exc}") from exc
        if self._store is None:
            self.store  # noqa: B018 - a cache directory that cannot be used is reported at the first call
        record: dict[str, bytes] = {}
        task_id = self._keys.task_key(function, arguments, args, kwargs, record)
        existing = self._pending.get(task_id)
        if existing is not None:
            return existing
        deps: dict[str, TaskHandle] = {}
        plain = True  # every argument a scalar or a task handle (the usual call): nothing to pin or re-check
        for value in arguments.values():
            if type(value) is TaskHandle:
                deps.setdefault(value.id, value)
            elif type(value) not in SCALARS:
                plain = False
        if not plain:  # handles inside containers too, in the order they are met (a dependent's key lists them)
            deps = {}
            for value in (*bound_args, *bound_kwargs.values()):
                for handle in iter_handles(value):
                    deps.setdefault(handle.id, handle)
        files = False
        if self._files.pending:  # the key read a File (an argument, or one reached through a global)
            # File arguments pinned to the snapshot the key was made from (checked on the engine)
            bound_args, bound_kwargs, arguments, files = pin_files(self._keys.hasher, function.signature, bound_args,
                                                                   bound_kwargs, arguments)
        inputs = tuple(deps.values())
        if len(inputs) == len(bound_args) and all(map(operator.is_, inputs, bound_args)):  # one tuple for both
            inputs = bound_args
        handle = TaskHandle(function, bound_args, bound_kwargs, task_id, inputs, function.rerun)
        handle.has_files = files
        if args is not bound_args or kwargs:  # else the call as written is the bound one (no object kept)
            handle.written = (args, kwargs)
        handle.seq = next(_SEQUENCE)
        handle.fixed = fixed = self._keys.fixed(function, _NONE if plain else arguments, record)  # see _payload
        if fixed is not None and fixed.values:
            handle.name  # noqa: B018 - the call as declared, before its values can change
        self.tasks.append(handle)
        self._pending[task_id] = handle
        if len(self._pending) >= self._freeze_next and not self._declaring_only:
            self._freeze_next *= 2
            if self.freeze_gc:
                gcfreeze.freeze_declared()
        if handle.deps:
            if self._unlooked:
                for dep in handle.deps:
                    if not dep.looked_up:
                        self.look_up()
                        break
            handle.key = dependent_key(handle, self.store)  # None while an input is still to be computed
        handle.looked_up = False
        self._unlooked.append(handle)
        return handle

    def look_up(self) -> None:
        """Look the tasks declared since the last look-up up in the cache, in bulk (one query for
        all the small entries), and print their console lines in declaration order. Done before a
        dependent's key needs its inputs' results, before a run, and when a status is read."""
        handles, self._unlooked = self._unlooked, []
        if not handles:
            return
        found = self.store.known_checksums([h.key for h in handles if not h.rerun and h.key is not None])
        verbose = self.console.verbose
        for handle in handles:
            handle.looked_up = True
            if not handle.rerun and handle.key in found:
                handle.status, handle.checksum = "cached", found[handle.key]
                if verbose:
                    self.console.cache_hit(handle)
            elif verbose:
                self.console.added(handle)

    def pending(self) -> list[TaskHandle]:
        """The tasks declared since the last :meth:`run` (which that run will look at)."""
        return list(self._pending.values())

    @contextmanager
    def declaring_only(self) -> Iterator[list[TaskHandle]]:
        """Task calls inside the block are declared and looked up (ids, keys, hits) but not kept: their
        handles go to the list this yields, not to the tasks :meth:`run` runs, and nothing is printed.
        The notebook uses it to tell whether a cell's tasks are cached without running anything."""
        self.look_up()  # tasks declared before the block: their hits are known when tasks inside depend on them
        saved = self.tasks, self._pending, self._unlooked, self.console, self._declaring_only
        declared: list[TaskHandle] = []
        self.tasks, self._pending, self._unlooked = declared, {}, []
        self.console, self._declaring_only = Console(verbose=False, record=False), True
        try:
            yield declared
        finally:
            try:
                self.look_up()  # their statuses (hits) are known before the block ends, silently
            finally:
                self.tasks, self._pending, self._unlooked, self.console, self._declaring_only = saved

    # -- running ---------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run every declared task that is not cached (and ``rerun`` tasks), in parallel if asked.

        Raises :class:`TaskError` after the run if any task failed; every task that did
        not depend on a failed one has completed and is cached.
        """
        if self._declaring_only:
            raise NdustriaError(f"pipeline {self.name!r}: run() inside declaring_only(), where task calls are "
                                "only declared; nothing was run")
        self.check_options()  # options may have changed since the pipeline was made (a notebook's do)
        self.look_up()
        handles = task_closure(list(self._pending.values()))
        self._pending.clear()
        self._freeze_next = gcfreeze.FREEZE_AT
        started, state, self._run_id = time.time(), "done", None
        try:
            with gcfreeze.running():
                if self._mpi:
                    return self._run_collective(handles)
                return self._run_handles(handles)
        except BaseException as exc:
            state = "failed" if isinstance(exc, TaskError) else f"ended by {type(exc).__name__}"
            self.console.log_error(exc)
            raise
        finally:
            self._keys.clear()
            self._write_log(started, state)

    def _run_collective(self, handles: dict[str, TaskHandle]) -> RunSummary:
        """Under ``mpiexec``: every rank calls this; rank 0 schedules over the others (:mod:`ndustria.run.mpi`)."""
        try:
            return run_collective(handles, lambda backend: self._run_handles(handles, backend), self.shared_cache)
        except TaskError as exc:
            self._failures = {f.key: f for f in exc.failures}
            raise

    def _write_log(self, started: float, state: str) -> None:
        """The run's console lines and errors, to <cache>/<name>_log.txt (rank 0 only; ``ndustria -l``)."""
        if self.console.recording and self.cache_dir.is_dir():
            lines, left_out = self.console.take_log()
            write_log(self.cache_dir, self.name, lines, run_id=self._run_id, started=started,
                      state="dry run" if self.dryrun and state == "done" else state, max_lines=LOG_LINES,
                      left_out=left_out)

    def _run_handles(self, handles: dict[str, TaskHandle], backend: Backend | None = None) -> RunSummary:
        """Run ``handles`` (a closed graph) on ``backend`` (default: this pipeline's); see :meth:`run`."""
        t0 = time.perf_counter()
        # Hits were looked up when declared; an entry that vanished since is repaired when it is needed,
        # and one another process stored since is found by the worker (it checks under the key's lock).
        to_run = unfinished(handles.values())
        for h in to_run:
            h.status = "queued"
        run_ids = {h.id for h in to_run}
        cached = [h for h in handles.values() if h.id not in run_ids]
        for h in cached:
            if h.status not in ("done", "cached"):
                h.status = "cached"
        if self.dryrun:
            return self._dry_run(handles, to_run, t0)
        backend = (backend or self._get_backend()) if to_run else None
        self.console.run_start(len(to_run), backend.workers if backend else 1,
                               backend.name if backend else "serial")
        catalog = self.catalog
        run_id = self._run_id = catalog.start_run(self.name, backend.name if backend else "none",
                                                  backend.workers if backend else 0, self._options())
        recorder = RunRecorder(catalog, run_id, self.name, handles, run_ids, self.console,
                               keep=self._save_or_keep, forget=self._forget, is_row=self.store.is_row,
                               batches_running=not (backend is not None and backend.inline))
        self._failures = recorder.failures
        state = GraphState(deps={}, available=set(), order={})
        if backend is not None:  # tasks to run: the scheduler writes the rows once the first ones left
            state, by_fn = self._plan(handles, to_run, cached)
            if self.freeze_gc and len(handles) >= gcfreeze.FREEZE_AT:  # the graph and the run's state of it
                gcfreeze.freeze_run()
            self._schedule(state, handles, backend, recorder, history=by_fn)
        recorder.started()  # the task rows, had nothing run
        return self._finish_run(run_id, handles, state, len(cached), t0, recorder.files)

    def _plan(self, handles: dict[str, TaskHandle], to_run: list[TaskHandle],
              cached: Iterable[TaskHandle]) -> tuple[GraphState, dict[str, float]]:
        """The scheduler's state for ``to_run`` (inputs in ``cached`` are available), longest path first
        by the durations the catalog remembers; and those durations per function."""
        state = GraphState(deps={k: tuple(d.id for d in h.deps) for k, h in handles.items()},
                           available={h.id for h in cached}, order={k: i for i, k in enumerate(handles)},
                           group_of=lambda task_id: handles[task_id].function.name)
        run_ids = [h.id for h in to_run]
        by_id, by_fn = self.catalog.durations(run_ids, {h.function.name for h in to_run})
        state.priority = longest_path_priority(state.deps, run_ids, _estimator(to_run, by_id, by_fn))
        state.add(run_ids)
        return state, by_fn

    def _finish_run(self, run_id: int, handles: dict[str, TaskHandle], state: GraphState, n_cached: int,
                    t0: float, files: list[str]) -> RunSummary:
        """Close the run's records, write its report files, keep the cache under its size limit;
        raise ``TaskError`` if a task failed."""
        catalog = self.catalog
        try:
            if state.done:  # what this run reported saved is durable before run() returns
                self._keep_done(files)
            else:  # a last batch's commit that failed: its rows wait again, its locks are released
                self.store.settle()
        except BaseException as exc:  # a sync that failed (a full disk) or a Ctrl-C: the run's records still close
            catalog.finish_run(run_id, "failed" if isinstance(exc, Exception) else "interrupted")
            raise
        catalog.finish_run(run_id, "failed" if state.failed else "done")
        if self.timeit or self.memcheck or self.profiling:
            write_run_files(catalog, self.cache_dir, self.name, [h.id for h in self.tasks], timeit=self.timeit,
                            memcheck=self.memcheck, profiling=self.profiling, fsync=self.fsync)
        if self.max_cache_size is not None:
            keep = {h.key for h in (*handles.values(), *self.tasks) if h.key}
            enforce_limit(self.store, catalog, self.max_cache_size, keep=keep)
        summary = RunSummary(run_id, len(state.done), n_cached, len(state.failed), len(state.skipped),
                             time.perf_counter() - t0)
        if state.failed:
            self.console.summary_failed(len(state.failed), len(state.skipped), len(state.done), n_cached)
            raise TaskError(list(self._failures.values()))
        self.console.all_done()
        return summary

    def _keep_done(self, files: list[str]) -> None:
        """Commit what the run's tasks saved and, with ``fsync``, make it durable: the small entries' table
        and every result file they reported (``files``), whichever process or worker store wrote it."""
        if self.fsync:
            self.store.sync(files)
        else:
            self.store.flush()

    def _schedule(self, state: GraphState, handles: dict[str, TaskHandle], backend: Backend,
                  recorder: RunRecorder, history: dict[str, float]) -> None:
        hooks = SchedulerHooks(recorder.submitted, recorder.completed, recorder.failed, recorder.skipped,
                               recorder.repairing, settling=recorder.settling, started=recorder.started,
                               retrying=recorder.retrying)
        policy = BatchPolicy(backend.overhead, backend.workers, history=history)
        run_task = run_one_inline if backend.inline else run_one
        scheduler = Scheduler(backend.executor, backend.workers, run_task,
                              lambda task_id: self._payload(handles[task_id], backend), hooks, retries=self.retries,
                              run_batch=execute_batch_inline if backend.inline else execute_batch, policy=policy,
                              group=lambda task_id: handles[task_id].function.name,
                              watchdog=backend.watchdog, recover=backend.recover)
        self._last_scheduler = scheduler
        self.console.progress_start(len(state.waiting) + state.n_ready)
        mark = taken_mark()  # locks this thread holds already (a task running this pipeline: its key) stay held
        try:
            give_back_ahead()  # keys a batch running this pipeline in a task took ahead: else they wait on each other
            scheduler.run(state)
        except BaseException as stopped:
            try:  # what completed and was reported saved stays stored, durably
                self._keep_done(recorder.files)
            except (OSError, sqlite3.Error) as exc:
                log.warning("could not make the results saved before the interruption durable: %s", exc)
            if not isinstance(stopped, Exception):  # Ctrl-C: it may have landed between a lock and its release
                release_taken(since=mark)
            recorder.started()  # the run's task rows, had the interruption come before the first submission left
            self.catalog.finish_run(recorder.run_id, "interrupted")
            if self._backend is not None:  # stop what ndustria started (a local cluster), cancel the rest
                self._backend.abort()
                self._backend = None
            raise
        finally:
            self.console.progress_end()

    def _payload(self, handle: TaskHandle, backend: Backend) -> TaskPayload:
        # The task runs on these very objects (serial: right after this; other backends pickle the payload
        # at submission): they must still be what the key was made from, else InputChangedError.
        self._keys.check_fixed(handle.function, handle.name, handle.fixed)

        if handle.deps:  # every input is stored now: the key follows what they produced
            handle.key = dependent_key(handle, self.store)
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
            store_root=str(self.cache_dir), fsync=self.fsync and not backend.local, instruments=self._instruments(),
            shared_cache=backend.shared_cache, inputs=inputs, rerun=handle.rerun, on_cache_error=self.on_cache_error,
            refs=refs, files=handle.has_files,
        )

    def _dry_run(self, handles: dict[str, TaskHandle], to_run: list[TaskHandle], t0: float) -> RunSummary:
        self.console.run_start(len(to_run))
        run_id = self._run_id = self.catalog.start_run(self.name, "dryrun", 0, self._options())
        state, _ = self._plan(handles, to_run, [h for h in handles.values() if h.status == "cached"])
        failures = []
        while (task_id := state.pop_ready()) is not None:
            handle = handles[task_id]
            handle.status = "declared"
            try:  # what a real run checks before sending a task
                self._keys.check_fixed(handle.function, handle.name, handle.fixed)
            except InputChangedError as exc:
                failures.append(TaskFailure(handle.name, task_id, exc, f"{type(exc).__name__}: {exc}"))
                self.console.failed(handle.name, str(exc))
                for child in state.fail(task_id):
                    failures[-1].skipped.append(handles[child].name)
                    self.console.skipped(handles[child].name, handle.name)
                continue
            self.console.would_run(handle.name)
            state.finish(task_id)
        self.catalog.finish_run(run_id, "dryrun")
        self.console.dry_run_end(len(to_run))
        if failures:  # a real run would fail these before running them: say so now
            raise TaskError(failures)
        self.console.all_done()
        return RunSummary(run_id, 0, len(handles) - len(to_run), 0, 0, time.perf_counter() - t0)

    def pack(self, save_to: str | Path = "bundle.tar.gz", *, all_runs: bool = False) -> Path:
        """Write the results of this pipeline's latest run (of all its runs with ``all_runs=True``) and
        their catalog rows to the bundle ``save_to``; ``ndustria unpack`` imports it elsewhere
        (:mod:`ndustria.record.bundle`). Returns the bundle's path."""
        from ndustria.record.bundle import pack

        done = pack(self.store, self.catalog, self.name, save_to, all_runs=all_runs, progress=self.console.verbose)
        for line in done.left_out:
            warnings.warn(f"not packed: {line}", NdustriaWarning, stacklevel=2)
        return done.path

    # -- results ---------------------------------------------------------------------
    def result_of(self, handle: TaskHandle, *, mmap: bool = False) -> Any:
        """The value of ``handle`` (what ``handle.result()`` returns): loaded from the cache, or
        computed again first if its entry was removed or damaged since."""
        value = self._load(handle, mmap=mmap)
        if self.on_result is not None:
            self.on_result(value, handle)
        return value

    def _load(self, handle: TaskHandle, *, mmap: bool = False) -> Any:
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
                      NdustriaWarning, stacklevel=4)
        self._forget(handle.key)
        handle.checksum = ""
        self.console.recomputing(handle.name, reason)
        handle.status = "queued"
        with gcfreeze.running():
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
        return info.where, info.size, info.checksum

    def _forget(self, key: str) -> None:
        self.store.remove(key)
        self.catalog.remove_entry(key)

    # -- plumbing ----------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            # Saves here (values engines sent back) are made durable by the run's sync at its end.
            self._store = Store(self.cache_dir, fsync=False)
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

    @property
    def backend(self) -> Backend | None:
        """The backend this pipeline holds (chosen at the first run with tasks to run), or None."""
        return self._backend

    @property
    def last_scheduler(self) -> Scheduler | None:
        """The scheduler of the last run that had tasks to run (its ``submissions`` count, for diagnostics)."""
        return self._last_scheduler

    def release_backend(self) -> None:
        """Let go of the backend (a process pool, a cluster connection); the next run chooses again."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def close(self) -> None:
        """Release the backend (a cluster or process pool this pipeline started) and the catalog, and give
        the garbage collector back a graph frozen while it was declared (:mod:`ndustria.gcfreeze`)."""
        gcfreeze.thaw_declared()
        self.release_backend()
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def check_options(self) -> None:
        """Raise :class:`ConfigError` if an option is invalid or needs a package this environment lacks
        (with the command that installs it): when the pipeline is made and when :meth:`run` starts,
        before a cluster starts or a task runs."""
        check_engines(self.engines)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0, not {self.retries!r}")
        if not self.dryrun:
            check_backend(choose(self.parallel, self.backend_name, self.executor, self.cluster))
            check_instruments(self._instruments())

    def _instruments(self) -> tuple[str, ...]:
        names = tuple(n for n, on in (("timeit", self.timeit), ("memcheck", self.memcheck),
                                      ("profiling", self.profiling)) if on)
        return (*names, "rss-only") if self.memcheck == "rss" else names

    def _options(self) -> dict[str, Any]:
        return {"parallel": self.parallel, "instruments": list(self._instruments()), "dryrun": self.dryrun}

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r}: {len(self.tasks)} tasks, cache {self.cache_dir}>"


def _estimator(to_run: Iterable[TaskHandle], by_id: dict[str, float],
               by_fn: dict[str, float]) -> Callable[[str], float]:
    """Expected seconds of a task: its own last duration, else its function's recent mean, else a default."""
    fn_of = {h.id: h.function.name for h in to_run}
    return lambda task_id: (by_id.get(task_id) or by_fn.get(fn_of.get(task_id, ""), DEFAULT_DURATION)
                           or DEFAULT_DURATION)
