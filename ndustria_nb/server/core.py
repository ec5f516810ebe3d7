"""What the JupyterLab sidebar shows, read through ndustria's Catalog and Store (no HTTP here).

Every function opens the catalog for one call and closes it, so a run written by another
process (a script, ``mpirun``, another kernel) is seen as it progresses.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ndustria.errors import NdustriaError
from ndustria.record.catalog import Catalog
from ndustria.record.schema import TASK_STATES
from ndustria.store.entries import Store

_NO_CACHE = ("No ndustria cache at {dir} yet: run a pipeline first (`python my_pipeline.py`), "
             "or point the server at your cache with NDUSTRIA_CACHE_DIR or `ndustria init`.")


class NotFoundError(NdustriaError):
    """Something asked for is not there; the message says what to run."""


@contextmanager
def open_catalog(cache_dir: Path, *, write: bool = False) -> Iterator[Catalog]:
    """The catalog of ``cache_dir`` for one request (read-only unless ``write``)."""
    if not (cache_dir / "catalog.sqlite").is_file():
        raise NotFoundError(_NO_CACHE.format(dir=cache_dir))
    catalog = Catalog(cache_dir, readonly=not write)
    try:
        yield catalog
    finally:
        catalog.close()


def _alive(run: dict[str, Any]) -> bool:
    """Whether the process of a 'running' run still exists (unknown on other hosts: assume so)."""
    if run.get("host") != socket.gethostname() or not run.get("pid"):
        return True
    try:
        os.kill(int(run["pid"]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _run_view(catalog: Catalog, run: dict[str, Any]) -> dict[str, Any]:
    state = run["state"]
    if state == "running":  # counts are written at the end of a run: count the live rows
        counts = Counter(t["status"] for t in catalog.tasks(run["run_id"]))
        if not _alive(run):
            state = "interrupted"
    else:
        counts = Counter(cached=run["n_cached"] or 0, done=run["n_done"] or 0,
                         failed=run["n_failed"] or 0, skipped=run["n_skipped"] or 0)
        counts["total"] = (run["n_tasks"] or 0) + counts["cached"]
    counts.setdefault("total", sum(counts[s] for s in TASK_STATES))
    return {
        "run_id": run["run_id"], "pipeline": run["pipeline"], "start": run["started"], "end": run["ended"],
        "state": state, "backend": run["backend"], "workers": run["workers"], "host": run["host"],
        "counts": {s: counts.get(s, 0) for s in (*TASK_STATES, "total")},
    }


def list_runs(cache_dir: Path, limit: int = 50) -> list[dict[str, Any]]:
    """Recent runs, newest first, with their task counts."""
    with open_catalog(cache_dir) as catalog:
        return [_run_view(catalog, run) for run in catalog.runs(limit=limit)]


def peak_memory(metrics: str | dict | None) -> int | None:
    """The task's peak memory in bytes from its metrics (JSON or decoded; heap peak, else RSS peak), or None."""
    try:
        memory = (metrics if isinstance(metrics, dict) else json.loads(metrics or "{}")).get("memory") or {}
    except (ValueError, AttributeError):
        return None
    peak = memory.get("peak_bytes", memory.get("rss_peak_bytes"))
    return int(peak) if peak is not None else None


def run_tasks(cache_dir: Path, run_id: int) -> dict[str, Any]:
    """One run and the tasks it declared: status, duration, peak memory, engine, error. A cache hit has
    the duration and peak memory recorded when it was computed, and ``computed_by`` names that run."""
    with open_catalog(cache_dir) as catalog:
        run = catalog.run(run_id)
        if run is None:
            raise NotFoundError(f"No run {run_id} in {cache_dir}: list the runs with `ndustria runs`.")
        origins = {t["key"]: t["origin"] for t in catalog.run_executions(run_id, metric="memory")}
        tasks = []
        for t in catalog.tasks(run_id):
            origin = origins.get(t["key"]) if t["status"] == "cached" else None
            shown = origin or t
            tasks.append({
                "key": t["key"], "task": t["task"], "function": t["function"], "status": t["status"],
                "duration": shown["wall_s"], "start": t["start"], "end": t["end"],
                "peak_memory": peak_memory(shown["metrics"]), "engine": t["engine"], "host": t["host"],
                "error": t["error"] or None,
                "computed_by": {"run_id": origin["run_id"], "pipeline": origin["run_pipeline"],
                                "started": origin["run_started"]} if origin else None,
            })
        return {"run": _run_view(catalog, run), "tasks": tasks}


def cache_entries(cache_dir: Path) -> list[dict[str, Any]]:
    """Every stored result, most recently used first: task, key, size, age, last used."""
    with open_catalog(cache_dir) as catalog:
        known = {row["key"]: row for row in catalog.entries()}
    store, now, rows = Store(cache_dir), time.time(), []
    for key, (stored_size, written) in store.stats().items():
        row = known.get(key) or {}
        size = row.get("size")
        if size is None:
            size = stored_size
        created = row.get("created") or written
        last_used = row.get("last_used") or created
        rows.append({"key": key, "task": row.get("task") or "(unknown task)", "function": row.get("function"),
                     "pipeline": row.get("pipeline"), "size": size, "created": created, "last_used": last_used,
                     "age": now - created})
    rows.sort(key=lambda r: r["last_used"], reverse=True)
    return rows


def delete_entry(cache_dir: Path, key: str) -> dict[str, Any]:
    """Remove one result from the store and its row from the catalog."""
    with open_catalog(cache_dir, write=True) as catalog:
        store = Store(cache_dir)
        store.path(key)  # ValueError for a malformed key
        row = catalog.entry(key)
        removed = store.remove(key)
        if not removed and row is None:
            raise NotFoundError(f"No cache entry {key} in {cache_dir}: list the entries with `ndustria cache ls`.")
        catalog.remove_entry(key)
    return {"key": key, "task": (row or {}).get("task"), "removed": True}
