"""Per-kernel state: the kernel's pipeline, its ipyparallel cluster and the cached-values side table.

One :class:`KernelState` per IPython shell. Its pipeline is named after the notebook
when the kernel knows it (``__session__`` / ``JPY_SESSION_NAME``), else ``"notebook"``,
and becomes :func:`ndustria.default_pipeline`, so ``@task`` registers into it.

Its :class:`CellTracker` follows the cells the kernel runs (which cell, its source), keeps the
records of ``%%task``/``%%ndustria`` cells (:mod:`.cellrecords`), answers the JupyterLab
extension's questions about cell states on the comm target ``ndustria.cells``
(:mod:`.cellstate`), and keeps the kernel's cache folders in the server's registry (:mod:`.registry`).

The kernel cluster is started on first ``--parallel`` use or by ``%ndustria cluster
start``, reused by every later cell, and stopped when the kernel exits (``atexit``,
which ipykernel runs on a normal shutdown) or on ``%ndustria cluster stop``.
"""

from __future__ import annotations

import atexit
import contextlib
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
from ndustria.task import TaskHandle

from .cellrecords import RecordStore, function_parts, task_summary
from .cellstate import Cell, notebook_states, parse_cell
from .registry import Registration

log = logging.getLogger("ndustria")
COMM_TARGET = "ndustria.cells"

_STATES: dict[int, KernelState] = {}


def notebook_name(shell: Any) -> str:
    """The notebook's file stem when the kernel knows it, else ``"notebook"``."""
    return Path(notebook_file(shell)).stem or "notebook"


def notebook_file(shell: Any) -> str:
    """The notebook's file name (``02_task_cells.ipynb``) when the kernel knows it, else ``""``."""
    path = shell.user_ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or ""
    return Path(str(path)).name if path else ""


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


class CellTracker:
    """The cells this kernel runs, their records, the ``ndustria.cells`` comm and the cache registry."""

    def __init__(self, state: KernelState) -> None:
        self.state = state
        self.stack: list[Any] = []  # ExecutionInfo of the run_cell calls in progress, outermost first
        self.ran: dict[str, str] = {}  # cell id -> its source when it last ran in this kernel
        self.bound_by: dict[str, str] = {}  # name -> digest of the code of the cell that last bound it
        self.records = RecordStore(state.pipeline.cache_dir)
        self.registration = Registration(notebook_file(state.shell) or f"kernel {os.getpid()}")

    @property
    def cell_id(self) -> str:
        """The notebook's id of the cell running now ("" when the frontend did not say)."""
        return (getattr(self.stack[0], "cell_id", None) or "") if self.stack else ""

    def install(self) -> None:
        shell = self.state.shell
        shell.events.register("pre_run_cell", self.pre_run_cell)
        shell.events.register("post_run_cell", self.post_run_cell)
        manager = getattr(getattr(shell, "kernel", None), "comm_manager", None)
        if manager is not None:
            manager.register_target(COMM_TARGET, self.open)
        self.registration.use(self.cache_dirs())
        atexit.register(self.registration.stop)

    def uninstall(self) -> None:
        shell = self.state.shell
        for name, callback in (("pre_run_cell", self.pre_run_cell), ("post_run_cell", self.post_run_cell)):
            with contextlib.suppress(ValueError):
                shell.events.unregister(name, callback)
        manager = getattr(getattr(shell, "kernel", None), "comm_manager", None)
        if manager is not None:
            manager.unregister_target(COMM_TARGET, self.open)
        atexit.unregister(self.registration.stop)
        self.registration.stop()

    def cache_dirs(self) -> set[str]:
        """The kernel pipeline's cache folder and those of the pipelines in the namespace."""
        dirs = {str(self.state.pipeline.cache_dir)}
        dirs.update(str(v.cache_dir) for v in list(self.state.shell.user_ns.values()) if isinstance(v, Pipeline))
        return dirs

    def pre_run_cell(self, info: Any) -> None:
        if getattr(info, "cell_id", None):  # only the frontend's executions carry one: nothing else is running
            self.stack.clear()
        self.stack.append(info)

    def post_run_cell(self, result: Any) -> None:
        info = self.stack.pop() if self.stack else None
        if self.stack or info is None:
            return  # a cell run by a magic inside a cell
        cell_id = getattr(info, "cell_id", None) or ""
        if cell_id:
            self.ran[cell_id] = info.raw_cell
        cell = parse_cell(self.state.shell, cell_id, info.raw_cell or "")
        for name in cell.binds:
            self.bound_by[name] = cell.digest
        self.registration.use(self.cache_dirs())

    def edited(self, cell: Cell) -> bool:
        """Whether ``cell`` ran in this kernel with another source than it has now."""
        return cell.id in self.ran and self.ran[cell.id] != cell.source

    def task_cell_done(self, label: str, made: dict[str, Any] | None, outcome: str, error: str = "") -> None:
        """Record how the running %%task cell ended (``made``: what its key was made of)."""
        if not self.cell_id:
            return
        record: dict[str, Any] = {"kind": "task", "label": label, "outcome": outcome, "error": error}
        if made:
            ns = self.state.shell.user_ns
            parts = {name: function_parts(self.state, ns.get(name)) for name in made["inputs"]}
            record.update(made, parts={n: p for n, p in parts.items() if p},
                          sources={n: self.bound_by[n] for n in made["inputs"] if n in self.bound_by})
        self.records.save(self.cell_id, record)

    def ndustria_cell_done(self, label: str, handles: list[TaskHandle], failed: dict[str, str]) -> None:
        """Record the tasks the running %%ndustria cell ran and which of them failed."""
        if self.cell_id:
            self.records.save(self.cell_id, {
                "kind": "ndustria", "label": label, "outcome": "failed" if failed else "ran", "failed": failed,
                "ids": [h.id for h in handles], "tasks": {h.name: task_summary(self.state, h) for h in handles}})

    # -- the comm the JupyterLab extension opens (labextension/src/cells.ts) -------------------------
    def open(self, comm: Any, msg: Any) -> None:
        comm.on_msg(lambda message: self.answer(comm, message))

    def answer(self, comm: Any, message: dict[str, Any]) -> None:
        """Reply to {"request": "states", "seq", "cells": [{"id", "source"}, ...]}."""
        data = message.get("content", {}).get("data") or {}
        if data.get("request") != "states":
            return
        reply: dict[str, Any] = {"reply": "states", "seq": data.get("seq")}
        if self.stack:  # a cell is running (an async one lets comm messages in): ask again when it is done
            reply["busy"] = True
        else:
            try:
                reply.update(notebook_states(self.state, list(data.get("cells") or [])))
            except Exception as exc:  # a state we cannot compute must not break the kernel
                log.warning("ndustria could not compute the cell states: %s", exc, exc_info=True)
                reply["error"] = f"{type(exc).__name__}: {exc}"
        comm.send(reply)


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
        self.tracker = CellTracker(self)

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
        state.tracker.install()
    return state


def drop_state(shell: Any) -> None:
    """Forget ``shell``'s state and stop its cluster (``%unload_ext ndustria``)."""
    state = _STATES.pop(id(shell), None)
    if state is not None:
        state.tracker.uninstall()
        state.cluster.stop()
        atexit.unregister(state.cluster.stop)
        state.pipeline.close()
