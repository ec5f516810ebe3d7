"""Where tasks run: every backend is a ``concurrent.futures.Executor`` plus a little metadata.

- ``serial`` runs in this process; ``processes`` uses a reusable loky pool.
- ``ipyparallel`` uses a ``LoadBalancedView`` executor: of a local cluster
  ndustria starts on first use (``engines`` engines, reused for the life of the
  process, stopped at exit), or of the cluster passed as ``cluster=``.
- ``mpi`` runs under ``mpiexec``: rank 0 schedules, the other ranks execute
  (``mpi4py.futures.MPICommExecutor``; see :mod:`ndustria.run.mpi`).
- ``executor=`` any executor the user hands in (a dask ``Client.get_executor()``).

Every backend but ``serial`` sends its calls through :class:`RemoteExecutor` (cloudpickle blobs).

``parallel=True`` without an explicit choice means ``mpi`` under mpiexec with
more than one rank, else ``ipyparallel``.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ndustria.errors import ConfigError
from ndustria.install import require
from ndustria.run import pickling

BACKENDS = ("serial", "processes", "ipyparallel", "mpi")

# One submission's round trip (seconds): a first guess; ipyparallel and MPI measure theirs when they start
# (``calibrate``). 0 turns batching off.
OVERHEAD = {"serial": 1e-3, "processes": 1e-3, "ipyparallel": 3e-3, "mpi": 3e-4, "executor": 1e-3}

_CALIBRATED: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()  # ipp.Client -> overhead

_MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
_MPI_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")


class SerialExecutor(Executor):
    """Runs each call at submit time, in this process (Ctrl-C propagates at once). A call that returns a
    future (a batch whose commit is still under way: :func:`ndustria.run.remote.execute_batch_inline`)
    completes the submission's future with that one's outcome."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()  # (running: the scheduler cannot cancel what it waits for)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
            return future
        if isinstance(result, Future):
            result.add_done_callback(lambda inner: _follow(future, inner))
        else:
            future.set_result(result)
        return future


def _follow(future: Future, inner: Future) -> None:
    error = inner.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(inner.result())


@dataclass
class Backend:
    """An executor, how many tasks it runs at once, and how to release it."""

    name: str
    executor: Executor
    workers: int
    shared_cache: bool = True
    closer: Callable[[], None] | None = field(default=None, repr=False)
    aborter: Callable[[], None] | None = field(default=None, repr=False)
    overhead: float = 0.0  # expected seconds per submission (batching starts from this guess)
    local: bool = False  # runs on this machine: results are made durable by this process's sync at the end
    inline: bool = False  # runs in this very thread: batches need no helper threads
    watchdog: Callable[[], None] | None = field(default=None, repr=False)  # called while the scheduler waits
    recover: Callable[[], Executor] | None = field(default=None, repr=False)  # a working executor after a fault

    def close(self) -> None:
        """Release what this backend holds for one pipeline (a shared local cluster stays up)."""
        if self.closer is not None:
            self.closer()
            self.closer = None

    def abort(self) -> None:
        """After an interrupted run: stop whatever ndustria started (a local cluster), then close."""
        if self.aborter is not None:
            self.aborter()
            self.aborter = None
        self.close()


class RemoteExecutor(Executor):
    """Wraps an executor whose transport may not pickle closures: calls travel as cloudpickle blobs
    (:func:`ndustria.run.pickling.dumps`: code shipped by value keeps its file name for tracebacks).

    Results come back unpickled into a standard ``Future``; cancelling it cancels the
    underlying one. ``capture`` asks engines to return each task's stdout/stderr in its
    report; ``announce`` makes them print ``[Rank k] running: <task>`` (MPI script mode).
    """

    def __init__(self, inner: Executor, *, capture: bool = True, announce: bool = False) -> None:
        self.inner = inner
        self.capture = capture
        self.announce = announce
        self.paths = source_paths()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        from ndustria.run.remote import run_blob

        blob = pickling.dumps((fn, args, kwargs))
        inner = self.inner.submit(run_blob, blob, self.capture, self.announce, self.paths)
        return _linked(inner)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        pass  # the engines belong to the cluster, not to this executor


def source_paths() -> tuple[str, ...]:
    """This process's own source folders on ``sys.path`` (the script's folder, the working directory,
    ``PYTHONPATH``), not those of the Python installation or its packages.

    Engines add the ones they lack, so a task defined in a module next to the script (pickled by
    reference) imports on an engine that sees the same files, wherever that engine was started.
    """
    import site
    import sysconfig

    installed = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                               *sysconfig.get_paths().values(), *site.getsitepackages(),
                                               site.getusersitepackages()) if p}
    out = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if os.path.isdir(path) and not any(path == p or path.startswith(p + os.sep) for p in installed):
            out.append(path)
    return tuple(dict.fromkeys(out))


def calibrate(executor: Executor, rounds: int = 5) -> float:
    """Median round trip (seconds) of a call that does nothing: the backend's per-submission overhead.
    The first call is not counted (it also warms the engines up: imports, connections)."""
    import statistics
    import time

    from ndustria.run.remote import noop

    executor.submit(noop).result()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        executor.submit(noop).result()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _LinkedFuture(Future):
    inner: Future | None = None

    def cancel(self) -> bool:
        if self.inner is not None:
            self.inner.cancel()
        return super().cancel()


def _linked(inner: Future) -> Future:
    outer = _LinkedFuture()
    outer.inner = inner

    def done(f: Future) -> None:
        if outer.done():
            return
        if f.cancelled():
            outer.cancel()
            return
        try:
            outer.set_result(cloudpickle.loads(f.result()))
        except BaseException as exc:  # the transport's error (an engine died, ...)
            outer.set_exception(exc)

    inner.add_done_callback(done)
    return outer


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def mpi_world() -> tuple[int, int]:
    """(rank, size) of this process under mpiexec, read from the launcher's environment; (0, 1) otherwise."""
    size = next((int(os.environ[v]) for v in _MPI_SIZE_VARS if os.environ.get(v, "").isdigit()), 1)
    rank = next((int(os.environ[v]) for v in _MPI_RANK_VARS if os.environ.get(v, "").isdigit()), 0)
    return rank, size


def choose(parallel: bool, backend: str | None, executor: Any = None, cluster: Any = None) -> str:
    """The backend's name by the documented rules."""
    if executor is not None:
        return "executor"
    if backend is not None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)} or pass executor=")
        return backend
    if cluster is not None:
        return "ipyparallel"
    if not parallel:
        return "serial"
    return "mpi" if mpi_world()[1] > 1 else "ipyparallel"


MPI_HINT = ("mpiexec comes with an MPI library: `pip install mpich mpi4py` puts one in this environment, "
            "or use your system's (apt install mpich, module load openmpi, ...)")


def check_backend(name: str) -> None:
    """Fail at once, saying what to install, if backend ``name`` (of :func:`choose`) cannot be imported
    here: before a cluster starts or a task is sent."""
    if name == "ipyparallel":
        require("ipyparallel", "parallel=True (tasks on an ipyparallel cluster)")
    elif name == "mpi":
        require("mpi4py", "the MPI backend (parallel=True under mpiexec, or backend='mpi')", extra="mpi",
                also=MPI_HINT)


def check_engines(engines: Any) -> None:
    if engines is not None and (not isinstance(engines, int) or isinstance(engines, bool) or engines < 1):
        raise ConfigError(f"engines must be a positive integer, not {engines!r}")


def resolve_backend(*, parallel: bool, backend: str | None, engines: int | None,
                    executor: Executor | None = None, shared_cache: bool = True, cluster: Any = None) -> Backend:
    """Choose and start the backend by the documented rules (explicit ``executor``/``backend`` first)."""
    check_engines(engines)
    name = choose(parallel, backend, executor, cluster)
    check_backend(name)
    if name == "executor":
        workers = engines or getattr(executor, "_max_workers", None) or default_workers()
        # Calls travel as blobs: closures survive a transport using plain pickle (a ProcessPoolExecutor),
        # and a failing task's traceback names its file wherever the executor runs it.
        return Backend("executor", RemoteExecutor(executor, capture=False), int(workers), shared_cache,
                       overhead=OVERHEAD["executor"])
    if name == "serial":
        # A submission of one task costs its own commit and catalog transaction: tiny tasks go in batches.
        return Backend("serial", SerialExecutor(), 1, overhead=OVERHEAD["serial"], local=True, inline=True)
    if name == "processes":
        return _processes(engines or default_workers())
    if name == "ipyparallel":
        return _ipyparallel(engines, cluster, shared_cache)
    raise ConfigError("backend='mpi' runs under mpiexec: `mpiexec -n 4 python script.py` (rank 0 schedules, "
                      f"the other ranks execute); this process is not one of several MPI ranks. {MPI_HINT}")


def _processes(workers: int) -> Backend:
    from loky import get_reusable_executor

    def pool() -> Executor:  # the task's output goes straight to this terminal, as loky's workers share it
        return RemoteExecutor(get_reusable_executor(max_workers=workers, timeout=300), capture=False)

    backend = Backend("processes", pool(), workers, overhead=OVERHEAD["processes"], local=True)

    def recover() -> Executor:  # a killed worker breaks loky's pool for good: the next call starts a new one
        backend.executor = pool()
        return backend.executor

    backend.recover = recover
    return backend


def _ipyparallel(engines: int | None, cluster: Any, shared_cache: bool) -> Backend:
    from ndustria.run import cluster as clusters

    n: int | None = None
    aborter = None
    if cluster is not None:
        client = clusters.attach(cluster)
    else:
        n = engines or default_workers()
        client = clusters.local_client(n)

        def aborter() -> None:
            clusters.stop_local(n)

    view = client.load_balanced_view()
    executor = RemoteExecutor(view.executor, capture=True)
    workers = len(client.ids) or engines or 1
    overhead = 0.0
    if OVERHEAD["ipyparallel"] > 0:  # measured once per client: a round trip costs the same for every run
        overhead = _CALIBRATED.get(client) or _CALIBRATED.setdefault(client, calibrate(executor))
    return Backend("ipyparallel", executor, workers, shared_cache, aborter=aborter, overhead=overhead,
                   watchdog=clusters.watchdog(client, n))


def mpi_backend(executor: Executor, size: int, shared_cache: bool = True) -> Backend:
    """The backend of one MPI run: rank 0's ``MPICommExecutor`` over ``size - 1`` worker ranks."""
    remote = RemoteExecutor(executor, capture=True, announce=True)
    overhead = calibrate(remote) if OVERHEAD["mpi"] > 0 else 0.0
    return Backend("mpi", remote, max(1, size - 1), shared_cache, overhead=overhead)
