"""The catalog: one SQLite database (WAL mode) per cache directory.

It records which entries exist (``entries``), every run (``runs``), what each
task did in each run (``task_runs``: status, engine, timings, memory, error)
and line profiles (``profiles``: one row per source line of each profiled function);
``file_digests`` remembers the content digest of each ``File`` input by its stat signature.
A run's task list, in declaration order, is one row of ``run_members`` (its columns hold every
task's id, call, function and cache key; a run whose list equals its pipeline's previous run's
refers to that run instead); only the tasks that ran have a ``task_runs`` row each. So a warm
re-run of 30,000 cache hits writes one small row, not 30,000 (:meth:`Catalog.tasks` gives the
cached tasks back as rows). The entries a run found cached are marked used (``last_used``) when
the entries are next listed (:meth:`Catalog.entries`), not during the run; the entries rows of what a
run stores are written in groups (:data:`ENTRIES_HELD`): a result whose row a crash lost counts as used
when it was stored (:mod:`ndustria.store.eviction`). It is the single source of truth for every report:
console, CLI, notebook widgets and the JupyterLab sidebar all read it through this module.

Writes come from the process that schedules a run; any number of readers
(another kernel, the Jupyter server) may read concurrently thanks to WAL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from ndustria.atomic import PATIENCE
from ndustria.errors import CacheError
from ndustria.record.held import HeldRows
from ndustria.record.schema import TASK_COLUMNS, prepare
from ndustria.store.blobs import retry_locked
from ndustria.store.wal import Checkpointer

if TYPE_CHECKING:
    from ndustria.records import TaskReport

log = logging.getLogger("ndustria")
TOUCH_GRAIN = 600.0  # seconds: how precisely an entry's last use is kept (eviction is least recently used first)
# New entries rows: written in key order this many at a time, or with a report once the oldest waited this long
ENTRIES_HELD = 50_000
ENTRIES_AFTER = 5.0
_ENTRY_ROW = "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class Catalog:
    """Thread-safe access to ``<cache_dir>/catalog.sqlite``."""

    def __init__(self, root: str | os.PathLike, *, readonly: bool = False) -> None:
        self.path = Path(root) / "catalog.sqlite"
        self._lock = threading.RLock()
        self._depth = 0  # nesting of open transactions (batch() around single writes)
        self._readonly = readonly
        self._has_hits_as = False  # known to have run_members.hits_as (see _hits_apart)
        self._checkpointer: Checkpointer | None = None
        self._held = HeldRows(_ENTRY_ROW)  # the entries rows record_reports has not written yet
        self._task_rows: dict[int, TaskRows | None] = {}  # run -> where add_tasks wrote its rows (until finish_run)
        if readonly:
            self._db = self._open_readonly()
        else:
            self._checkpointer = Checkpointer(self.path, writer_lock=self._lock)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
            retry_locked(lambda: prepare(self._db))
        self._db.row_factory = sqlite3.Row

    def _open_readonly(self, patience: float = PATIENCE) -> sqlite3.Connection:
        """A read-only connection to a catalog whose tables exist. A catalog another process is creating
        has no tables yet, or cannot be opened read-only until it is in WAL mode: wait for a moment."""
        deadline, delay = time.monotonic() + patience, 0.002
        while True:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
            try:
                db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchall()
                return db
            except sqlite3.DatabaseError as exc:
                db.close()
                if time.monotonic() >= deadline:
                    raise CacheError(f"cannot read the ndustria catalog {self.path}: {exc}. If no pipeline is "
                                     "creating it right now, it is not an ndustria catalog: move it away and "
                                     "run a pipeline to make a new one") from exc
            time.sleep(delay)
            delay = min(2 * delay, 0.1)

    def close(self) -> None:
        try:
            self.settle()
        except sqlite3.Error as exc:  # closing must not fail for bookkeeping (see ENTRIES_HELD)
            log.warning("ndustria: %d entries rows of the catalog could not be written: %s", len(self._held), exc)
        if self._checkpointer is not None:  # first: this connection must be the last to close (see store.wal);
            self._checkpointer.close()  # not holding the lock, which its thread may be waiting for
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._depth:  # inside batch(): the outermost block commits
                yield self._db
                return
            try:
                with self._db:
                    self._depth += 1
                    try:
                        yield self._db
                    finally:
                        self._depth -= 1
            except BaseException:
                self._held.rolled_back()  # the held rows written in it wait again
                raise
            self._held.committed()
            if self._checkpointer is not None:
                self._checkpointer.wrote()

    def batch(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """Make every write inside the block one transaction (one commit instead of one per call)."""
        return self._tx()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """The rows of a read-only statement, as dicts (after the held entries rows are written)."""
        with self._lock:
            self.settle()
            return [dict(row) for row in self._db.execute(sql, tuple(params))]

    def settle(self) -> None:
        """Write the entries rows held back (done before anything here reads the catalog, and at exit)."""
        if len(self._held):
            with self._tx() as db:
                self._held.write(db)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the connection it gives, the held entries rows written first (they come
        before any later change)."""
        with self._tx() as db:
            self._held.write(db)
            yield db

    # -- entries -----------------------------------------------------------------
    def record_entry(self, key: str, task: str, function: str, pipeline: str, size: int,
                     checksum: str, run_id: int | None) -> None:
        now = time.time()
        with self.transaction() as db:
            db.execute(_ENTRY_ROW, (key, task, function, pipeline, size, checksum, now, now, run_id))

    def touch(self, keys: Iterable[str]) -> None:
        """Mark entries as used now (least-recently-used bookkeeping, to the :data:`TOUCH_GRAIN`: an entry
        used within that time is left as it is, so a warm re-run only reads the index)."""
        now = time.time()
        with self.transaction() as db:
            db.executemany("UPDATE entries SET last_used = ? WHERE key = ? AND (last_used IS NULL OR last_used < ?)",
                           [(now, k, now - TOUCH_GRAIN) for k in keys])

    def remove_entry(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM entries WHERE key = ?", (key,))

    def entries(self) -> list[dict[str, Any]]:
        """Every entry's row, most recently used first."""
        if not self._readonly:
            self._fold_touches()
        return self.query("SELECT * FROM entries ORDER BY last_used DESC")

    def entry(self, key: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM entries WHERE key = ?", (key,))
        return rows[0] if rows else None

    # -- file digests (the memo of File inputs, see files.FileDigests) -------------------
    def file_digests(self, path: bytes) -> list[tuple[Any, ...]]:
        """Remembered digests of the file at ``path`` (``os.fsencode`` of an absolute path) and, for a
        folder, of every file under it: (path, size, mtime_ns, inode, ctime_ns, digest, checked_ns)."""
        with self._lock:
            return [tuple(row) for row in self._db.execute(
                "SELECT path, size, mtime_ns, inode, ctime_ns, digest, checked_ns FROM file_digests"
                " WHERE path = ? OR (path >= ? AND path < ?)", (path, path + b"/", path + b"0"))]

    def record_file_digests(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Remember (path, size, mtime_ns, inode, ctime_ns, digest, checked_ns) rows, replacing older ones."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?, ?, ?, ?)", list(rows))

    # -- runs ----------------------------------------------------------------------
    def start_run(self, pipeline: str, backend: str, workers: int, options: dict[str, Any]) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (pipeline, started, state, backend, workers, n_tasks, n_cached, n_done,"
                " n_failed, n_skipped, host, pid, options) VALUES (?, ?, 'running', ?, ?, 0, 0, 0, 0, 0, ?, ?, ?)",
                (pipeline, time.time(), backend, workers, socket.gethostname(), os.getpid(), json.dumps(options)),
            )
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, state: str) -> None:
        with self.transaction() as db:
            rows = self._task_rows.pop(run_id, None)
            if rows is not None:  # the run's rows in table order, not one look-up per key in the key index
                counts = dict(db.execute("SELECT status, COUNT(*) FROM task_runs WHERE rowid BETWEEN ? AND ?"
                                         " AND +run_id = ? GROUP BY status", (rows.first, rows.last, run_id)))
            else:
                counts = dict(db.execute("SELECT status, COUNT(*) FROM task_runs WHERE run_id = ? GROUP BY status",
                                         (run_id,)))
            cached = db.execute("SELECT n_cached FROM run_members WHERE run_id = ?", (run_id,)).fetchone()
            if cached is not None:
                counts["cached"] = counts.get("cached", 0) + (cached[0] or 0)
            db.execute("UPDATE runs SET ended = ?, state = ?, n_tasks = ?, n_cached = ?, n_done = ?, n_failed = ?,"
                       " n_skipped = ? WHERE run_id = ?",
                       (time.time(), state, sum(counts.get(s, 0) for s in ("queued", "running", "done", "failed", "skipped")),
                        counts.get("cached", 0), counts.get("done", 0), counts.get("failed", 0),
                        counts.get("skipped", 0), run_id))

    def runs(self, pipeline: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        if pipeline is None:
            return self.query("SELECT * FROM runs ORDER BY run_id DESC LIMIT ?", (limit,))
        return self.query("SELECT * FROM runs WHERE pipeline = ? ORDER BY run_id DESC LIMIT ?", (pipeline, limit))

    def run(self, run_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        return rows[0] if rows else None

    # -- task runs -----------------------------------------------------------------
    def add_tasks(self, run_id: int, keys: list[str], functions: list[str], cached: bytes,
                  store_keys: list[str], inputs: Callable[[], list[str]] | None, names: Callable[[], list[str]],
                  given: list[str | None] | None = None, statuses: dict[str, str] | None = None) -> None:
        """Register the tasks of a run before anything runs, as columns in declaration order: their ids,
        function names, whether each is a cache hit (one byte each), cache keys (of the hits; "" for
        the others: a completed task's comes with its report), ``inputs()`` (each task's task inputs by
        their place in the list, comma-separated; None: not known) and ``names()``, every task's call;
        both made only when needed. The list goes in one ``run_members`` row; the tasks that will run
        get a ``task_runs`` row each, with the status ``statuses`` gives (default "queued").

        ``given``: the calls known without making them, None where a call follows from its id (its
        arguments as bound); a re-run of the same tasks as its pipeline's previous run then refers
        to that run, and no name is made. (The ids name the inputs too, so the list's digest leaves
        them out.)"""
        todo = [i for i, hit in enumerate(cached) if not hit] if 0 in cached else []  # (a scan in C when all hit)
        known = given if given is not None else [None] * len(keys)
        listed = ["\n".join(keys), json.dumps(known), json.dumps(functions)]
        digest = xxhash.xxh3_128_hexdigest("\0".join(listed).encode("utf-8", "surrogatepass")
                                           + (b"\0graph" if inputs is not None else b"\0"))
        found = ["\n".join(store_keys), bytes(cached)]
        hits = xxhash.xxh3_128_hexdigest(found[0].encode("utf-8", "surrogatepass") + b"\0" + found[1])
        tasks = names() if todo else None  # the tasks that run have a row with their call
        statuses = statuses or {}
        with self._tx() as db:
            # The pipeline's latest listed run, walked back to from this one (a join read and sorted all its runs)
            previous = db.execute(
                "SELECT m.run_id, m.same_as, m.digest, m.hits, m.hits_as FROM run_members m WHERE m.run_id < ?1"
                " AND (SELECT pipeline FROM runs WHERE run_id = m.run_id) = (SELECT pipeline FROM runs WHERE run_id = ?1)"
                " ORDER BY m.run_id DESC LIMIT 1", (run_id,)).fetchone()
            row: dict[str, Any] = {"run_id": run_id, "digest": digest, "n_cached": len(keys) - len(todo), "hits": hits}
            if previous is not None and previous[2] == digest:  # the same tasks as the run before: refer to them
                row["same_as"] = previous[1] or previous[0]
            else:
                tasks = tasks if tasks is not None else names()
                row.update(keys=listed[0], tasks=json.dumps(tasks), functions=listed[2],
                           deps="\n".join(inputs()) if inputs is not None else None)
            if previous is not None and previous[3] == hits:  # and the same hits
                row["hits_as"] = previous[4] or previous[0]
            else:
                row.update(store_keys=found[0], cached=found[1])
            db.execute(f"INSERT OR REPLACE INTO run_members ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))
            if tasks is not None:
                db.executemany("INSERT OR REPLACE INTO task_runs (run_id, key, task, function, status, store_key)"
                               " VALUES (?, ?, ?, ?, ?, ?)",
                               [(run_id, keys[i], tasks[i], functions[i], statuses.get(keys[i], "queued"),
                                 store_keys[i] or None) for i in todo])
                if todo:  # where the rows went; None: each row by its key (a run listed twice, or not as expected)
                    rows = TaskRows.of([keys[i] for i in todo], db.execute("SELECT last_insert_rowid()").fetchone()[0])
                    first = db.execute("SELECT key FROM task_runs WHERE rowid = ? AND run_id = ?",
                                       (rows.first, run_id)).fetchone()
                    known = run_id not in self._task_rows and first is not None and first[0] == keys[todo[0]]
                    self._task_rows[run_id] = rows if known else None

    def _members_row(self, run_id: int) -> tuple[Any, ...] | None:
        """The run_members columns (keys, tasks, functions, store_keys, deps, cached) of a run, the list's
        through the run it refers to (``same_as``), the hits' through theirs (``hits_as``; a row written before
        hits were kept apart has them with its list); None for runs recorded before the list was kept."""
        with self._lock:
            hits_as = "hits_as" if self._hits_apart() else "NULL"
            own = self._db.execute(f"SELECT same_as, {hits_as}, cached IS NOT NULL FROM run_members WHERE run_id = ?",
                                   (run_id,)).fetchone()
            if own is None:
                return None
            listed = self._db.execute("SELECT keys, tasks, functions, deps FROM run_members WHERE run_id = ?",
                                      (own[0] or run_id,)).fetchone()
            hits_of = run_id if own[2] else own[1] or own[0]
            found = self._db.execute("SELECT store_keys, cached FROM run_members WHERE run_id = ?",
                                     (hits_of,)).fetchone()
        if listed is None or listed[0] is None or found is None:
            return None
        return listed[0], listed[1], listed[2], found[0], listed[3], found[1]

    def _hits_apart(self) -> bool:
        """Whether ``run_members`` has its ``hits_as`` column: a catalog of an earlier version opened read-only
        (the CLI, the lab's server) has not been given it yet. Once there, a column stays."""
        if not self._has_hits_as:
            self._has_hits_as = "hits_as" in {row[1] for row in self._db.execute("PRAGMA table_info(run_members)")}
        return self._has_hits_as

    def _members(self, run_id: int) -> list[tuple[str, str, str, str, bool]] | None:
        """(key, task, function, store_key, cached) of every task of a run in declaration order, or None."""
        row = self._members_row(run_id)
        if row is None:
            return None
        keys = row[0].split("\n") if row[0] else []
        return list(zip(keys, json.loads(row[1]), json.loads(row[2]), row[3].split("\n"), map(bool, row[5])))

    def edges(self, run_id: int) -> list[tuple[str, str]] | None:
        """The (input, dependent) key pairs of a run's graph; None for a run recorded without them."""
        row = self._members_row(run_id)
        if row is None or row[4] is None:
            return None
        keys = row[0].split("\n") if row[0] else []
        return [(keys[int(i)], key) for key, line in zip(keys, row[4].split("\n")) if line for i in line.split(",")]

    def _fold_touches(self) -> None:
        """Mark the entries each recorded run found cached as used at that run's start (see the module doc)."""
        with self._lock:
            pending = self._db.execute("SELECT m.run_id, r.started FROM run_members m JOIN runs r"
                                       " ON r.run_id = m.run_id WHERE m.folded = 0 ORDER BY m.run_id").fetchall()
        for run_id, started in pending:
            used = [(started, m[3] or m[0], started) for m in self._members(run_id) or () if m[4]]
            with self.transaction() as db:
                db.executemany("UPDATE entries SET last_used = ? WHERE key = ? AND (last_used IS NULL OR last_used < ?)",
                               used)
                db.execute("UPDATE run_members SET folded = 1 WHERE run_id = ?", (run_id,))

    def set_status(self, run_id: int, keys: Iterable[str], status: str, error: str = "") -> None:
        with self._tx() as db:
            self._update_tasks(db, run_id, "status = ?, error = ?", [(status, error, k) for k in keys])

    def _update_tasks(self, db: sqlite3.Connection, run_id: int, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """``UPDATE task_runs SET <columns>`` for each row of values whose last is the task's key: found by
        the row id add_tasks wrote it at (a look-up in the key index cost ~2 us more per task among
        300,000 than among 3,000), or by its key where that is not known or not the task's row."""
        where = self._task_rows.get(run_id)
        at = where.rowids if where is not None else {}
        if at and all(row[-1] in at for row in rows):
            done = db.executemany(f"UPDATE task_runs SET {columns} WHERE rowid = ? AND +key = ? AND +run_id = ?",
                                  [(*row[:-1], at[row[-1]], row[-1], run_id) for row in rows]).rowcount
            if done == len(rows):
                return
        db.executemany(f"UPDATE task_runs SET {columns} WHERE run_id = ? AND key = ?",
                       [(*row[:-1], run_id, row[-1]) for row in rows])

    def record_report(self, run_id: int, report: TaskReport,
                      entry: tuple[str, str, str] | None = None) -> None:
        """Store what one execution did; a line profile in its metrics goes to ``profiles``.

        ``entry`` = (task, function, pipeline) also records the stored result, in the same transaction.
        """
        self.record_reports(run_id, [(report, entry)])

    def record_reports(self, run_id: int, items: Iterable[tuple[TaskReport, tuple[str, str, str] | None]]) -> None:
        """:meth:`record_report` for many (report, entry) pairs in one transaction, a statement each
        for all of them (a batch of tiny tasks brings hundreds of reports at once)."""
        now, entries, updates, profiles = time.time(), [], [], []
        for report, entry in items:
            metrics = dict(report.metrics or {})
            profile = metrics.pop("profile", None)
            if entry is not None:
                entries.append((report.store_key or report.key, *entry, report.size, report.checksum, now, now,
                                run_id))
            updates.append((report.status, report.engine, report.host, report.pid, report.start, report.end,
                            report.wall_s, report.cpu_s, report.error, json.dumps(metrics) if metrics else None,
                            report.store_key or report.key, report.key))
            if profile:
                profiles.append((report.key, profile))
        with self._tx() as db:
            if entries:
                self._held.hold(entries, self)
                if self._held.due(ENTRIES_HELD, ENTRIES_AFTER):
                    self._held.write(db)
            self._update_tasks(db, run_id, "status = ?, engine = ?, host = ?, pid = ?, start = ?, end = ?,"
                               " wall_s = ?, cpu_s = ?, error = ?, metrics = ?, store_key = ?", updates)
            for key, profile in profiles:
                row = db.execute("SELECT task, function FROM task_runs WHERE run_id = ? AND key = ?",
                                 (run_id, key)).fetchone()
                task, function = (row[0], row[1]) if row else ("", "")
                db.execute("DELETE FROM profiles WHERE run_id = ? AND key = ?", (run_id, key))
                db.executemany(
                    "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, key, task, function, f["file"], f["name"], f["lineno"], line["lineno"],
                      line["hits"], line["time_s"], line["source"]) for f in profile for line in f["lines"]],
                )

    def _run_rows(self, run_id: int) -> list[dict[str, Any]]:
        """Every task of a run as a ``task_runs`` row, in declaration order (a cached task's made from
        the run's list)."""
        table = self.query("SELECT * FROM task_runs WHERE run_id = ? ORDER BY rowid", (run_id,))
        members = self._members(run_id)
        if members is None:
            return table
        by_key = {r["key"]: r for r in table}
        return [by_key.get(key) or {**dict.fromkeys(TASK_COLUMNS), "run_id": run_id, "key": key, "task": task,
                                    "function": function, "status": "cached", "store_key": store_key or None}
                for key, task, function, store_key, _ in members]

    def tasks(self, run_id: int) -> list[dict[str, Any]]:
        """Every task of a run, as ``task_runs`` rows (the cached ones made from the run's list), those
        that ran by start time first."""
        rows = self._run_rows(run_id)
        rows.sort(key=lambda r: (r["start"] is None, r["start"] or 0.0, r["task"] or ""))
        return rows

    def last_executions(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The most recent completed execution of each key (cached tasks keep the run that computed them)."""
        keys = list(keys)
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.query(
                f"SELECT * FROM task_runs WHERE status = 'done' AND key IN ({marks}) ORDER BY run_id", chunk
            ):
                out[row["key"]] = row
        return out

    def durations(self, keys: Iterable[str], functions: Iterable[str],
                  recent: int = 200) -> tuple[dict[str, float], dict[str, float]]:
        """Remembered durations: (last wall time of each of ``keys``, mean wall time of the ``recent``
        latest executions of each of ``functions``). Index lookups only: the cost does not grow with history."""
        by_key: dict[str, float] = {}
        keys = list(keys)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.query(f"SELECT key, wall_s FROM task_runs WHERE status = 'done' AND key IN ({marks})"
                                   " ORDER BY run_id", chunk):
                by_key[row["key"]] = row["wall_s"]
        by_fn: dict[str, float] = {}
        for function in set(functions):
            rows = self.query("SELECT AVG(wall_s) AS mean FROM (SELECT wall_s FROM task_runs WHERE function = ?"
                               " AND status = 'done' ORDER BY run_id DESC LIMIT ?)", (function, recent))
            if rows and rows[0]["mean"] is not None:
                by_fn[function] = rows[0]["mean"]
        return by_key, by_fn

    # -- reports -------------------------------------------------------------------
    def latest_run(self, pipeline: str) -> dict[str, Any] | None:
        """The most recent run of ``pipeline`` that was not a dry run."""
        rows = self.query("SELECT * FROM runs WHERE pipeline = ? AND backend != 'dryrun'"
                           " ORDER BY run_id DESC LIMIT 1", (pipeline,))
        return rows[0] if rows else None

    def latest_run_with(self, pipeline: str, instrument: str) -> dict[str, Any] | None:
        """The most recent run of ``pipeline`` that had ``instrument`` ("timeit", ...) on."""
        for row in self.query("SELECT * FROM runs WHERE pipeline = ? AND backend != 'dryrun' ORDER BY run_id DESC",
                               (pipeline,)):
            try:
                if instrument in json.loads(row["options"] or "{}").get("instruments", []):
                    return row
            except (ValueError, AttributeError):
                continue
        return None

    def pipeline_keys(self, pipeline: str) -> list[str]:
        """The task keys of the latest run of ``pipeline`` (run or cached), in declaration order."""
        run = self.latest_run(pipeline)
        if run is None:
            return []
        members = self._members(run["run_id"])
        if members is not None:
            return [m[0] for m in members]
        return [r["key"] for r in self.query(
            "SELECT key FROM task_runs WHERE run_id = ? ORDER BY rowid", (run["run_id"],))]

    def latest_executions(self, keys: Iterable[str], metric: str | None = None) -> dict[str, dict[str, Any]]:
        """The most recent execution (done or failed) of each key, ``metrics`` decoded.

        With ``metric`` ("memory", say), the most recent execution that recorded it.
        Cached tasks so keep the numbers of the run that computed them.
        """
        keys = list(keys)
        where, params = "status IN ('done', 'failed')", []
        if metric is not None:
            where, params = where + " AND json_extract(metrics, ?) IS NOT NULL", [f"$.{metric}"]
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.query(f"SELECT * FROM task_runs WHERE {where} AND key IN ({marks}) ORDER BY run_id",
                                   [*params, *chunk]):
                row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
                out[row["key"]] = row
        return out

    def profile_lines(self, run_id: int | None = None, key: str | None = None) -> list[dict[str, Any]]:
        """Profile rows of a run and/or a task, by task, function and line."""
        where, params = [], []
        for column, value in (("run_id", run_id), ("key", key)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = "SELECT * FROM profiles" + (" WHERE " + " AND ".join(where) if where else "")
        return self.query(sql + " ORDER BY run_id, task, file, func_lineno, lineno", params)

    def latest_profiles(self, keys: Iterable[str]) -> list[dict[str, Any]]:
        """For each key, the profile rows of the most recent run that profiled it."""
        out: list[dict[str, Any]] = []
        for key in dict.fromkeys(keys):
            row = self.query("SELECT MAX(run_id) AS run_id FROM profiles WHERE key = ?", (key,))
            if row and row[0]["run_id"] is not None:
                out += self.profile_lines(row[0]["run_id"], key)
        return out

    def run_executions(self, run_id: int, metric: str | None = None) -> list[dict[str, Any]]:
        """The task rows of run ``run_id`` in declaration order, each with ``origin``: the execution whose
        numbers describe its result (``metrics`` decoded, plus its run's ``run_pipeline`` and ``run_started``).

        A task that ran in this run (done or failed) is its own origin. A cache hit's origin is the
        execution that computed the stored result: the one in the run that stored its entry, else the
        latest completed execution of the same task (and result) up to this run. With ``metric``
        ("memory"), a cache hit whose origin did not record it takes the latest execution up to this run
        that did. ``origin`` is None for a skipped task, and where nothing is known.
        """
        run = self.run(run_id)
        rows = self._run_rows(run_id)
        stored = {r["key"]: r["run_id"] for r in self.rows_in(
            "SELECT key, run_id FROM entries WHERE key IN", {r["store_key"] or r["key"] for r in rows})}
        for row in rows:
            row["entry_run"] = stored.get(row["store_key"] or row["key"])
        history: dict[str, list[dict[str, Any]]] = {}
        for row in self.rows_in("SELECT t.*, r.pipeline AS run_pipeline, r.started AS run_started FROM task_runs t"
                                 " JOIN runs r ON r.run_id = t.run_id WHERE t.status = 'done' AND t.run_id <= ?"
                                 " AND t.key IN", [r["key"] for r in rows if r["status"] == "cached"],
                                 params=(run_id,), order="ORDER BY t.run_id"):
            row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
            history.setdefault(row["key"], []).append(row)
        for row in rows:
            row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
            if row["status"] in ("done", "failed"):
                row["origin"] = {**row, "run_pipeline": run and run["pipeline"], "run_started": run and run["started"]}
            elif row["status"] == "cached":
                row["origin"] = _origin_of(row, history.get(row["key"], []), metric)
            else:
                row["origin"] = None
        return rows

    def profiled_run(self, key: str, up_to: int | None = None) -> int | None:
        """The latest run (up to run ``up_to``) that recorded a line profile of task ``key``, or None."""
        rows = self.query("SELECT MAX(run_id) AS run_id FROM profiles WHERE key = ? AND run_id <= ?",
                           (key, up_to if up_to is not None else 2**62))
        return rows[0]["run_id"] if rows else None

    # -- bundles (ndustria.record.bundle: pack / unpack) ----------------------------------------
    def rows_in(self, sql: str, values: Iterable[Any], params: Iterable[Any] = (), order: str = "") -> list[dict]:
        """``sql`` ending in ``IN`` for each chunk of ``values`` (SQLite limits the number of parameters)."""
        values, out = list(values), []
        for i in range(0, len(values), 500):
            chunk = values[i : i + 500]
            out += self.query(f"{sql} ({','.join('?' * len(chunk))}) {order}", [*params, *chunk])
        return out

@dataclass(frozen=True)
class TaskRows:
    """Where :meth:`Catalog.add_tasks` wrote a run's ``task_runs`` rows: their row ids (one insert after the
    other in one transaction: consecutive), from ``first`` to ``last``."""

    first: int
    last: int
    rowids: dict[str, int]

    @classmethod
    def of(cls, keys: list[str], last: int) -> TaskRows:
        first = last - len(keys) + 1
        return cls(first, last, dict(zip(keys, range(first, last + 1))))


def _origin_of(row: dict[str, Any], history: list[dict[str, Any]], metric: str | None) -> dict[str, Any] | None:
    """Of the completed executions of a cached task (oldest first), the one that computed its stored result;
    with ``metric``, the latest one that recorded it when that one did not."""
    same = [h for h in history if row["store_key"] and h["store_key"] == row["store_key"]] or history
    origin = next((h for h in same if h["run_id"] == row["entry_run"]), None) or (same[-1] if same else None)
    if metric is not None and (origin is None or metric not in origin["metrics"]):
        measured = [h for h in same if metric in h["metrics"]] or [h for h in history if metric in h["metrics"]]
        origin = measured[-1] if measured else origin
    return origin
