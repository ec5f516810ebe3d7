"""The catalog's tables (SQLite, WAL) and how a catalog of an earlier version gains what it lacks.

``run_members`` holds a run's whole task list in one row (see :mod:`ndustria.record.catalog`);
``task_runs`` a row for each task that ran. Created in one transaction: a reader sees every table
or none.
"""

from __future__ import annotations

import sqlite3

from ndustria.store.wal import use_wal

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, task TEXT, function TEXT, pipeline TEXT,
    size INTEGER, checksum TEXT, created REAL, last_used REAL, run_id INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT, started REAL, ended REAL,
    state TEXT, backend TEXT, workers INTEGER, n_tasks INTEGER, n_cached INTEGER,
    n_done INTEGER, n_failed INTEGER, n_skipped INTEGER, host TEXT, pid INTEGER, options TEXT
);
CREATE TABLE IF NOT EXISTS task_runs (
    run_id INTEGER, key TEXT, task TEXT, function TEXT, status TEXT,
    engine TEXT, host TEXT, pid INTEGER, start REAL, end REAL, wall_s REAL, cpu_s REAL,
    error TEXT, metrics TEXT, store_key TEXT,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE IF NOT EXISTS profiles (
    run_id INTEGER, key TEXT, task TEXT, function TEXT, file TEXT, func_name TEXT, func_lineno INTEGER,
    lineno INTEGER, hits INTEGER, time_s REAL, source TEXT
);
CREATE TABLE IF NOT EXISTS run_members (
    run_id INTEGER PRIMARY KEY, digest TEXT, n_cached INTEGER, same_as INTEGER, folded INTEGER DEFAULT 0,
    keys TEXT, tasks TEXT, functions TEXT, store_keys TEXT, deps TEXT, cached BLOB, hits TEXT, hits_as INTEGER
);
CREATE TABLE IF NOT EXISTS file_digests (
    path BLOB PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, ctime_ns INTEGER,
    digest BLOB, checked_ns INTEGER
);
CREATE INDEX IF NOT EXISTS profiles_key ON profiles (key, run_id);
CREATE INDEX IF NOT EXISTS task_runs_key ON task_runs (key);
DROP INDEX IF EXISTS task_runs_function;
CREATE INDEX IF NOT EXISTS task_runs_recent ON task_runs (function, status, run_id);
CREATE INDEX IF NOT EXISTS runs_pipeline ON runs (pipeline, started);
"""

TASK_STATES = ("queued", "running", "done", "failed", "cached", "skipped")
TASK_COLUMNS = ("run_id", "key", "task", "function", "status", "engine", "host", "pid", "start", "end", "wall_s",
                 "cpu_s", "error", "metrics", "store_key")


# Written as the catalog's user_version once prepare() has made everything below: a catalog that says so
# needs no write transaction and no column checks when it is opened (~0.5 ms of every script). Raise it
# whenever SCHEMA or the columns added in prepare() change.
PREPARED = 2


def prepare(db: sqlite3.Connection) -> None:
    """Make the tables of a new catalog (or add what an older one lacks), in WAL mode."""
    use_wal(db)
    if db.execute("PRAGMA user_version").fetchone()[0] >= PREPARED:
        return
    # One transaction: a reader sees every table or none (executescript alone commits each statement).
    try:
        db.executescript(f"BEGIN IMMEDIATE;\n{SCHEMA}\nINSERT OR IGNORE INTO meta VALUES "
                         f"('schema_version', '{SCHEMA_VERSION}');\nCOMMIT;")
    except BaseException:
        if db.in_transaction:
            db.rollback()
        raise
    add_column(db, "task_runs", "store_key", "TEXT")  # the cache key of a task's result (catalogs before 2026-12)
    add_column(db, "run_members", "deps", "TEXT")  # the run's graph (catalogs of early 2026-12 development)
    add_column(db, "run_members", "hits", "TEXT")  # hits kept apart from the list (catalogs before 2026-12-03)
    add_column(db, "run_members", "hits_as", "INTEGER")
    db.execute(f"PRAGMA user_version = {PREPARED}")


def add_column(db: sqlite3.Connection, table: str, column: str, kind: str) -> None:
    """Add ``column`` to ``table`` of a catalog written before it existed."""
    if column in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
        return
    try:
        with db:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # another process added it first
            raise
