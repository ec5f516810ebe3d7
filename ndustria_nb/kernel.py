"""Per-kernel state: the kernel's pipeline, its ipyparallel cluster and the cached-values side table.

One :class:`KernelState` per IPython shell. Its pipeline is named after the notebook
when the kernel knows it (``__session__`` / ``JPY_SESSION_NAME``), else ``"notebook"``,
and becomes :func:`ndustria.default_pipeline`, so ``@task`` registers into it.

The kernel cluster is started on first ``--parallel`` use or by ``%ndustria cluster
start``, reused by every later cell, and stopped when the kernel exits (``atexit``,
which ipykernel runs on a normal shutdown) or on ``%ndustria cluster stop``.
"""

from __future__ import annotations

import atexit
import logging
import os
import types
from pathlib import Path
from typing import Any

import xxhash

import ndustria
from ndustria import Pipeline
from ndustria.keys.files import FileDigests
from ndustria.keys.fingerprint import Fingerprinter
from ndustria.keys.hashing import ValueHasher
from ndustria.keys.maker import immutable

log = logging.getLogger("ndustria")

_STATES: dict[int, KernelState] = {}


def notebook_name(shell: Any) -> str:
    """The notebook's file stem when the kernel knows it, else ``"notebook"``."""
    path = shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
    stem = Path(str(path)).stem if path else ""
    return stem or "notebook"


class KernelCluster:
    """The one ipyparallel cluster of this kernel."""

    def __init__(self) -> None:
        self.cluster: Any = None
        self.client: Any = None
        self.engines = 0
        self.mpi = False

    @property
    def running(self) -> bool:
        return self.client is not None

    def start(self, engines: int, mpi: bool = False) -> Any:
        """Start the cluster (or return the running one's client)."""
        if self.client is not None:
            return self.client
        import ipyparallel as ipp

        kwargs: dict[str, Any] = {"n": engines, "log_level": 40, "shutdown_atexit": False}
        if mpi:
            kwargs["engines"] = "mpi"
        cluster = ipp.Cluster(**kwargs)
        client = cluster.start_and_connect_sync()
        client.wait_for_engines(engines, timeout=120)
        self.cluster, self.client, self.engines, self.mpi = cluster, client, engines, mpi
        return client

    def stop(self) -> bool:
        """Stop the cluster; False if none was running."""
        if self.cluster is None:
            return False
        cluster, client = self.cluster, self.client
        self.cluster = self.client = None
        try:
            client.close()
            cluster.stop_cluster_sync()
        except Exception as exc:  # best effort, also at exit
            log.warning("could not stop the kernel's ipyparallel cluster: %s", exc)
        return True

    def describe(self) -> str:
        if self.client is None:
            return "No cluster is running in this kernel (start one: %ndustria cluster start -n 2)."
        kind = "MPI" if self.mpi else "local"
        return (f"ipyparallel cluster {self.cluster.cluster_id}: {len(self.client.ids)} {kind} engines "
                f"(profile {self.cluster.profile_dir})")


class KernelState:
    """Everything ndustria keeps for one kernel."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        existing = ndustria.set_default_pipeline(None)
        if existing is not None and existing.name in ("ndustria", "notebook"):
            existing.name = notebook_name(shell)  # @task was used before %load_ext: keep its tasks
            self.pipeline = existing
        else:
            self.pipeline = Pipeline(name=notebook_name(shell))
        # values handle.result() returns are remembered by their task key (no re-hash downstream)
        self.pipeline.on_result = lambda value, handle: self.remember(value, handle.key or "", "")
        ndustria.set_default_pipeline(self.pipeline)
        self.hasher = ValueHasher()
        self.hasher.file_token = FileDigests(lambda: self.pipeline.catalog)  # File inputs: memo in the catalog
        self.fingerprinter = Fingerprinter(self.hasher)
        self.origins: dict[int, tuple[Any, bytes]] = {}  # id(value) -> (value, token of the cell output or task result it is)
        self.cluster = KernelCluster()
        self.last_run: dict[str, Any] | None = None  # run_id, keys, name of the last %%ndustria run
        atexit.register(self.cluster.stop)

    # -- fingerprints ---------------------------------------------------------------------
    def remember(self, value: Any, key: str, name: str) -> None:
        """Identify ``value`` by the cell output (``name``) or task result (``""``) it came from: no re-hash
        downstream. Only values that cannot change in place are remembered (large ``bytes``, tuples of
        them): an array or a list a later cell edits is hashed by content again, never served by identity."""
        if value is None or isinstance(value, (bool, int, float, str, types.ModuleType)):
            return  # small or interned values: hashing them is cheap and ids are shared
        if not immutable(value):
            return
        token = xxhash.xxh3_128(f"output\0{key}\0{name}".encode()).digest()
        self.origins[id(value)] = (value, token)

    def fingerprint(self, value: Any) -> bytes:
        """16 bytes identifying an input value (side table, code fingerprint, or content)."""
        seen = self.origins.get(id(value))
        if seen is not None and seen[0] is value:
            return seen[1]
        if isinstance(value, type) and value.__module__ == "__main__":
            return self.fingerprinter.class_digest(value)
        return self.hasher.digest(value)

    # -- running ----------------------------------------------------------------------------
    def configure(self, *, parallel: bool, engines: int | None, mpi: bool, timeit: bool, memcheck: bool,
                  profiling: bool, dryrun: bool, name: str | None) -> None:
        """Set the kernel pipeline's options for one run (the backend is chosen again)."""
        pipe = self.pipeline
        pipe.release_backend()
        pipe.timeit, pipe.memcheck, pipe.profiling, pipe.dryrun = timeit, memcheck, profiling, dryrun
        if name:
            pipe.name = name
        pipe.parallel = parallel
        if parallel:
            if self.cluster.running and mpi != self.cluster.mpi:
                print(f"[ndustria] using the kernel's running {'MPI' if self.cluster.mpi else 'local'} cluster; "
                      "`%ndustria cluster stop` first to change it")
            pipe.cluster = self.cluster.start(engines or 2, mpi=mpi)
            pipe.backend_name = None
        else:
            pipe.cluster = None
            pipe.backend_name = "serial"


def get_state(shell: Any) -> KernelState:
    """The state of ``shell``, created on first use."""
    state = _STATES.get(id(shell))
    if state is None or state.shell is not shell:
        state = _STATES[id(shell)] = KernelState(shell)
    return state


def drop_state(shell: Any) -> None:
    """Forget ``shell``'s state and stop its cluster (``%unload_ext ndustria``)."""
    state = _STATES.pop(id(shell), None)
    if state is not None:
        state.cluster.stop()
        atexit.unregister(state.cluster.stop)
        state.pipeline.close()
