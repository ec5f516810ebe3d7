"""The catalog rows a bundle carries (:mod:`ndustria.record.bundle`): what :func:`export_rows` takes
out of one catalog for a pipeline, and how :func:`import_rows` adds them to another.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from ndustria.record.catalog import Catalog

__all__ = ["export_rows", "import_rows"]


def export_rows(catalog: Catalog, pipeline: str, all_runs: bool = False) -> dict[str, Any] | None:
    """What a bundle of ``pipeline`` carries; None if it never ran (dry runs do not count).

    ``runs``: its latest run (every run with ``all_runs``), whose ids are ``selected``, and the earlier
    runs that computed the results their cached tasks found; ``task_runs``: every row of the selected
    runs and, of the earlier ones, the rows of those tasks only (reports show the numbers of the run
    that computed a result); ``profiles`` of those rows; ``entries``: {cache key: entries row} of the
    results of the selected runs' done and cached tasks; ``unresolved``: task calls whose result's cache
    key this catalog cannot tell (runs recorded before task rows kept it, by tasks with inputs).
    """
    if all_runs:
        selected = catalog.query("SELECT * FROM runs WHERE pipeline = ? AND backend != 'dryrun'"
                                 " ORDER BY run_id", (pipeline,))
    else:
        latest = catalog.latest_run(pipeline)
        selected = [latest] if latest else []
    if not selected:
        return None
    ids = [r["run_id"] for r in selected]
    chosen = set(ids)
    tasks = [t for run_id in ids for t in catalog.tasks(run_id)]
    keys = list(dict.fromkeys(t["key"] for t in tasks))
    history = [r for r in catalog.rows_in("SELECT * FROM task_runs WHERE status IN ('done', 'failed')"
                                          " AND key IN", keys, order="ORDER BY run_id, rowid")
               if r["run_id"] not in chosen]
    earlier = catalog.rows_in("SELECT * FROM runs WHERE run_id IN", sorted({r["run_id"] for r in history}),
                              order="ORDER BY run_id")
    known = {r["run_id"] for r in earlier}
    history = [r for r in history if r["run_id"] in known]
    wanted = set(keys)
    profiles = [p for p in catalog.rows_in("SELECT * FROM profiles WHERE run_id IN", [*ids, *sorted(known)],
                                           order="ORDER BY run_id, rowid") if p["key"] in wanted]
    entries: dict[str, dict[str, Any]] = {}
    unresolved: list[str] = []
    for t in tasks:
        if t["status"] not in ("done", "cached"):
            continue
        key = t.get("store_key") or _entry_key_of(catalog, t)
        if key is None:
            unresolved.append(t["task"])
        elif key not in entries:
            entries[key] = catalog.entry(key) or {
                "key": key, "task": t["task"], "function": t["function"], "pipeline": pipeline,
                "size": None, "checksum": None, "created": None, "last_used": None, "run_id": t["run_id"]}
    return {"selected": ids, "runs": selected + earlier, "task_runs": tasks + history,
            "profiles": profiles, "entries": entries, "unresolved": unresolved}


def _entry_key_of(catalog: Catalog, task_row: dict[str, Any]) -> str | None:
    """The cache key of a task's result where its row does not say: its own key (a task without task
    inputs), else the one entry recorded for the same call and function; None if that is not clear."""
    if catalog.entry(task_row["key"]) is not None:
        return task_row["key"]
    rows = catalog.query("SELECT key FROM entries WHERE task = ? AND function = ?",
                         (task_row["task"], task_row["function"]))
    return rows[0]["key"] if len(rows) == 1 else None


def import_rows(catalog: Catalog, rows: dict[str, Any], accepted: Iterable[str]) -> dict[int, int]:
    """Add the rows of a bundle (as :func:`export_rows` made them), in one transaction.

    Runs get ids of this catalog (returned: {bundle's run id: local run id}). A run already here (same
    pipeline, start, host and pid: imported before, or packed from this catalog) is not added again; it
    only gains the task and profile rows it lacks, so importing twice changes nothing. Entries rows are
    added for the ``accepted`` keys only, marked used now.
    """
    accepted, now = set(accepted), time.time()
    with catalog.transaction() as db:
        columns = {table: [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
                   for table in ("runs", "task_runs", "profiles", "entries")}

        def insert(verb: str, table: str, row: dict[str, Any], skip: str = "") -> sqlite3.Cursor:
            names = [c for c in columns[table] if c in row and c != skip]
            return db.execute(f"{verb} INTO {table} ({', '.join(names)}) VALUES ({','.join('?' * len(names))})",
                              [row[c] for c in names])

        ids: dict[int, int] = {}
        for run in sorted(rows.get("runs", []), key=lambda r: r["run_id"]):
            same = db.execute("SELECT run_id FROM runs WHERE pipeline IS ? AND started IS ? AND host IS ?"
                              " AND pid IS ?", (run.get("pipeline"), run.get("started"), run.get("host"),
                                                run.get("pid"))).fetchone()
            ids[run["run_id"]] = same[0] if same else int(insert("INSERT", "runs", run, skip="run_id").lastrowid)
        for task in rows.get("task_runs", []):
            if task.get("run_id") in ids:
                insert("INSERT OR IGNORE", "task_runs", {**task, "run_id": ids[task["run_id"]]})
        profiled: dict[tuple[int, str], bool] = {}
        for line in rows.get("profiles", []):
            if line.get("run_id") not in ids:
                continue
            at = (ids[line["run_id"]], line["key"])
            if at not in profiled:  # rows of a (run, task) already profiled here are kept as they are
                profiled[at] = db.execute("SELECT 1 FROM profiles WHERE run_id = ? AND key = ? LIMIT 1",
                                          at).fetchone() is None
            if profiled[at]:
                insert("INSERT", "profiles", {**line, "run_id": at[0]})
        for entry in rows.get("entries", []):
            if entry.get("key") in accepted:
                insert("INSERT OR REPLACE", "entries", {**entry, "run_id": ids.get(entry.get("run_id")),
                                                         "created": entry.get("created") or now,
                                                         "last_used": now})
        return ids
