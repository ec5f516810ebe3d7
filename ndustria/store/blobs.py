"""Small entries in one SQLite database, ``<cache>/objects.sqlite``: no file of their own.

A result whose entry is at most :data:`SMALL_MAX` bytes and holds no array buffers is stored as a
row: the same bytes a file would hold (header, checksums, signature: :mod:`ndustria.store.format`),
so loading, verifying and packing treat both kinds alike. SQLite stores and reads blobs this small
faster than the filesystem creates and opens files (bench/bench_scale.py, BENCHMARKS.md).

**Group commit.** Rows wait in memory and are written together in one short transaction when
:data:`COMMIT_ROWS` rows wait, :data:`COMMIT_AFTER` seconds after the first of them (a timer commits
them if no later write does; :data:`HELD_AFTER` while a serial batch holds them, :meth:`Blobs.held`), or
when asked (:meth:`Blobs.commit`): a batch of tiny tasks pays one
commit, not one per result. No write transaction stays open while tasks compute, so processes
saving into one cache (two engines) take turns for milliseconds, not for a whole group. Until the
commit the rows are visible to this process only (every read here consults them first); whatever
must wait for the commit -- releasing a key's compute lock, so that another process finds the entry
instead of computing it again -- is handed to :meth:`Blobs.after_commit`. A commit does not fsync
(WAL, ``synchronous=NORMAL``): :meth:`Blobs.sync` makes every committed row durable.

**Landing.** A serial batch's commit (:meth:`Blobs.commit_soon`) writes its rows in this thread and
leaves the ``COMMIT`` (which writes the log: ~7 us a row among 300,000 rows, a page of the key tree
each) to a *landing thread*, which SQLite lets run without the GIL while the scheduler prepares the
next batch. The batch reports once the commit has landed; the next batch, or any later write, first
waits for it and then releases the batch's locks (:meth:`Blobs.settle`). One such commit is in the air
at a time.

Crashes: a killed process loses only rows it had not committed, whose tasks it had not reported
(batches report after their commit); after a power loss the database is consistent (WAL), each row
whole or absent, and an entry absent is computed again. Several processes share the database
(SQLite's locking; a writer waits up to 30 s for another's commit, which writes at most
:data:`COMMIT_ROWS` rows).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from ndustria.atomic import fsync_path
from ndustria.store.wal import Checkpointer, use_wal

__all__ = ["COMMIT_AFTER", "COMMIT_ROWS", "HELD_AFTER", "SMALL_MAX", "Blobs", "retry_locked"]

FILE = "objects.sqlite"
SMALL_MAX = 64 << 10  # bytes: larger entries (and any with array buffers) are files
COMMIT_ROWS = 512
COMMIT_AFTER = 0.1  # seconds
ABSENT_MAX = 1_000_000  # keys known to have no row that are remembered (see Blobs.checksums)
HELD_AFTER = 2.0  # seconds: the clock's commit while a batch holds its rows (Blobs.held)
# A key's row (its checksum, date and size: everything a look-up reads) lives in a tree ordered by key, the
# bytes in a table ordered by when they were written. Keys are random, so each group commit dirties about
# one page of every key-ordered tree per row once a tree outgrows the group: with the bytes and two key
# indexes (the old layout, ``blobs``) 300,000 rows took 36 us each to insert, 23 us in this layout (one
# such tree; 3,000 rows: 9 us either way). Deleting or replacing a key's row deletes its bytes (triggers).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS blob_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blob_keys (
    key TEXT PRIMARY KEY, checksum TEXT, created REAL, size INTEGER NOT NULL, id INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS blob_keys_deleted AFTER DELETE ON blob_keys
    BEGIN DELETE FROM blob_data WHERE id = old.id; END;
CREATE TRIGGER IF NOT EXISTS blob_keys_replaced AFTER UPDATE OF id ON blob_keys WHEN old.id != new.id
    BEGIN DELETE FROM blob_data WHERE id = old.id; END;
CREATE TABLE IF NOT EXISTS blob_counts (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""
# Every transaction that adds rows to blob_keys counts itself here (see Blobs.checksums)
_INSERTS = "SELECT value FROM blob_counts WHERE name = 'inserts'"
_COUNT_INSERTS = "INSERT INTO blob_counts VALUES ('inserts', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1"
_ON_CONFLICT = (" ON CONFLICT (key) DO UPDATE SET checksum = excluded.checksum, created = excluded.created,"
                " size = excluded.size, id = excluded.id")
_OLD = "blobs"  # the old layout's table (caches written before this one, or by an older ndustria): see _move_old_rows
log = logging.getLogger("ndustria")
_REGISTRY: dict[tuple[int, str], Blobs] = {}
_REGISTRY_LOCK = threading.Lock()


def retry_locked(step: Callable[[], Any], patience: float = 30.0) -> Any:
    """Run ``step``, again while SQLite says the database is locked, for up to ``patience`` seconds.

    Processes opening a new database together race to switch it to WAL and create its tables;
    SQLite reports some of those conflicts at once instead of waiting for its busy timeout.
    """
    deadline, delay = time.monotonic() + patience, 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.25)


def _move_old_rows(db: sqlite3.Connection, chunk: int = 5000) -> None:
    """Move the rows of the old layout's table into this one, ``chunk`` rows per transaction (a cache of
    gigabytes must not hold the write lock for minutes; a crash between chunks leaves the rest for the next
    open). Of two rows of one key, the later written stays. The emptied table is kept: a process of an
    older ndustria still running on this cache reads and writes it until it exits, and the rows it writes
    are moved at a later open."""
    while True:
        with _immediate(db):
            last = db.execute(f"SELECT max(rowid) FROM (SELECT rowid FROM {_OLD} ORDER BY rowid LIMIT ?)",
                              (chunk,)).fetchone()[0]
            if last is None:
                return
            db.execute(f"DELETE FROM {_OLD} WHERE rowid <= ? AND EXISTS (SELECT 1 FROM blob_keys k WHERE"
                       f" k.key = {_OLD}.key AND k.created > coalesce({_OLD}.created, 0))", (last,))
            offset = db.execute("SELECT coalesce(max(id), 0) FROM blob_data").fetchone()[0]
            db.execute(f"INSERT INTO blob_data (id, data) SELECT rowid + ?, data FROM {_OLD} WHERE rowid <= ?",
                       (offset, last))
            db.execute(f"INSERT INTO blob_keys SELECT key, checksum, created, length(data), rowid + ? FROM {_OLD}"
                       f" WHERE rowid <= ?{_ON_CONFLICT}", (offset, last))
            db.execute(f"DELETE FROM {_OLD} WHERE rowid <= ?", (last,))
            db.execute(_COUNT_INSERTS)


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taking the write lock at once: committed when the block ends, rolled back if the
    block or the commit raises (a Ctrl-C just after BEGIN too: an open transaction would keep SQLite's
    write lock from every process and fail each later commit of this one)."""
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Ctrl-C (SIGINT, Python's default handler, in the main thread) raises when the block ends, not
    inside it: for a few statements that must not be cut in two."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _count(db: sqlite3.Connection) -> int:
    """How many transactions have added rows to ``blob_keys`` (counted since the count exists)."""
    row = db.execute(_INSERTS).fetchone()
    return row[0] if row is not None else 0


def _run_all(jobs: list[Callable[[], None]]) -> None:
    """Run every job (each releases a compute lock), whatever one of them raises: an error is logged,
    a Ctrl-C is raised again once all have run (a lock left held would make every other process, and
    this one's next run, wait on its key for good)."""
    interrupted: BaseException | None = None
    for job in jobs:
        try:
            job()
        except Exception:  # one lock that cannot be released must not keep the others held
            log.exception("ndustria: releasing a compute lock after a commit failed")
        except BaseException as exc:  # noqa: BLE001 - raised again below, after the other jobs
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


class _Flight:
    """A write whose transaction the landing thread commits (:meth:`Blobs.commit_soon`)."""

    __slots__ = ("before", "cleared", "db", "jobs", "landed", "rows")

    def __init__(self, db: sqlite3.Connection, rows: dict[str, tuple[bytes, float, str]],
                 jobs: list[Callable[[], None]]) -> None:
        self.db, self.rows, self.jobs = db, rows, jobs
        self.before = 0  # blob_counts' count before this write (see Blobs._counted)
        self.cleared = threading.Event()  # the landing thread took it
        self.landed: Future[None] = Future()


class Blobs:
    """The small-entry table of one cache directory, shared by every :class:`~ndustria.store.Store`
    of this process on that directory (so each sees the rows the others have not committed yet)."""

    def __init__(self, root: str) -> None:
        self.path = os.path.join(root, FILE)
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._db  # noqa: B018 - a cache whose table cannot be opened is reported now
        self._open_since = 0.0  # time.monotonic() when the oldest uncommitted row was put; 0: none waits
        self._held = 0  # batches running in this process that commit their rows when they end (see held())
        self._pending: dict[str, tuple[bytes, float, str]] = {}  # key -> (data, created, checksum), uncommitted
        # Keys checksums() found no row of, while no other writer added rows (a dict of None: ~14 bytes a key
        # where a set took ~70)
        self._absent: dict[str, None] = {}
        self._absent_as = -1  # the connection's data_version when that was last checked
        self._inserts: int | None = None  # blob_counts' 'inserts' then (or after this connection's last write)
        self._waiting: list[Callable[[], None]] = []
        self._opened = threading.Condition(self._lock)
        self._pid = os.getpid()
        self._checkpointer = Checkpointer(self.path, writer_lock=self._lock)
        self._timer: threading.Thread | None = None  # runs _committer; started by the first put (a run of
        # cache hits writes nothing, and starting a thread cost ~0.3 ms of its ~25)
        self._flight: _Flight | None = None  # a write whose COMMIT the landing thread runs (commit_soon)
        self._runway: queue.SimpleQueue[_Flight] | None = None  # the landing thread's work (started on first use)
        self._runway_pid = 0  # the process that thread runs in
        atexit.register(self._close_at_exit)

    @classmethod
    def of(cls, root: str) -> Blobs:
        """The table of cache ``root`` for this process (made on first use; a forked child makes its own)."""
        key = (os.getpid(), root)
        with _REGISTRY_LOCK:
            blobs = _REGISTRY.get(key)
            if blobs is None:
                blobs = _REGISTRY[key] = cls(root)
            return blobs

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection (opened on first use; again if the exit closed it and something still writes)."""
        db = self._connection
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            try:
                retry_locked(lambda: self._prepare(db))
            except BaseException:
                db.close()
                raise
            self._connection = db
            self._absent, self._absent_as, self._inserts = {}, -1, None  # (data_version: a connection's own)
        return db

    @staticmethod
    def _prepare(db: sqlite3.Connection) -> None:
        use_wal(db)
        db.executescript(_SCHEMA)
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_OLD,)).fetchone()
        if old and db.execute(f"SELECT 1 FROM {_OLD} LIMIT 1").fetchone():
            _move_old_rows(db)

    # -- writes ---------------------------------------------------------------------------
    def put(self, key: str, data: bytes, created: float, checksum: str, *, commit: bool = True) -> None:
        """Store ``data`` under ``key`` (``created`` and ``checksum`` as its header says, so that looking an
        entry up needs no parsing); with ``commit=False`` it waits for the group's commit (see module doc)."""
        with self._lock:
            if not self._open_since:
                self._open_since = time.monotonic()
                if self._timer is None:
                    self._timer = threading.Thread(target=self._committer, name="ndustria-commit", daemon=True)
                    self._timer.start()
                self._opened.notify()
            self._pending[key] = (data, created, checksum)
            if self._absent:
                self._absent.pop(key, None)
                if not self._absent:  # a run stored all it looked for: let go of the dict's table too
                    self._absent = {}
            if commit or len(self._pending) >= COMMIT_ROWS or time.monotonic() - self._open_since >= self._after:
                self.commit()

    @property
    def _after(self) -> float:
        return HELD_AFTER if self._held else COMMIT_AFTER

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """While the block runs, rows are committed when :data:`COMMIT_ROWS` wait, when asked, or
        :data:`HELD_AFTER` (not :data:`COMMIT_AFTER`) seconds after the first: for a batch of tiny tasks in
        this thread that commits its rows when it ends (it must, to release its keys), so that they go in
        one transaction, not in two or three cut by the timer (each
        commit writes a page of the key-ordered tree per row once the tree is large: groups of 200 rows
        cost ~11 us per row among 300,000 rows, groups of 500 ~9 us; stand-alone SQLite)."""
        entered = False
        try:
            with self._lock:
                self._held += 1
                entered = True
            yield
        finally:
            if entered:
                with self._lock:
                    self._held -= 1
                    self._opened.notify()

    def delete(self, key: str) -> bool:
        """Remove ``key``'s row now (committed); False if there was none."""
        with self._lock:
            self.settle()
            waiting = self._pending.pop(key, None) is not None
            gone = retry_locked(lambda: self._db.execute("DELETE FROM blob_keys WHERE key = ?", (key,)).rowcount > 0)
            return gone or waiting

    def after_commit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` once the rows written so far are committed (or at once if none wait)."""
        with self._lock:
            if self._open_since:
                self._waiting.append(job)
                return
            flight = self._flight
            if flight is not None and (not flight.landed.done() or flight.landed.exception() is not None):
                flight.jobs.append(job)  # (a failed commit's rows wait again: so does the job)
                return
        job()

    def commit(self) -> None:
        """Write the waiting rows in one transaction; then run the jobs that waited for it. If the write
        fails, the error is raised and the rows keep waiting: no row is dropped, so a batch whose rows
        the timer could not write learns it from its own flush, which raises instead of reporting."""
        with self._lock:
            self.settle()
            waiting, self._waiting = self._waiting, []
            rows, self._pending, self._open_since = self._pending, {}, 0.0
            try:
                if rows:
                    retry_locked(lambda: self._write(rows))
                    self._checkpointer.wrote()
            except BaseException:
                self._pending, self._open_since = rows, time.monotonic()  # (no put ran: the lock is held)
                raise
            finally:  # locks are released whether the rows made it or not: never leave another process waiting
                _run_all(waiting)

    def commit_soon(self, then: Callable[[], None]) -> Future[None] | None:
        """:meth:`commit`, whose ``COMMIT`` runs on the landing thread while this one goes on: the rows are
        written here, in a transaction the landing thread commits (SQLite works without the GIL: this
        thread meanwhile prepares the next batch). Returns a future done once they are committed (its
        exception: the commit failed, and the rows wait again), or None if no row waited. The jobs that
        waited, and ``then``, run when the next call settles the commit (:meth:`settle`: every commit,
        flush and sync does, and so does a serial batch or task before it starts), in the thread that
        makes it; at once if no row waited or the write failed.

        Another write of this connection waits for the commit (:meth:`settle`); a read on it runs inside
        the transaction or after the commit (SQLite's lock of the connection) and sees the rows, except
        after a failed commit until it is settled (the rows then wait in memory again).
        """
        with self._lock:
            self.settle()
            waiting, self._waiting = [*self._waiting, then], []
            rows, self._pending, self._open_since = self._pending, {}, 0.0
            if not rows:
                _run_all(waiting)
                return None
            flight: _Flight | None = None
            try:
                # The landing thread starts before the transaction (one that cannot start leaves none open),
                # and again in a forked child (its parent's thread did not come along)
                if self._runway is None or self._runway_pid != os.getpid():
                    self._runway, self._runway_pid = queue.SimpleQueue(), os.getpid()
                    threading.Thread(target=self._land, args=(self._runway,), name="ndustria-land",
                                     daemon=True).start()
                flight = _Flight(self._db, rows, waiting)
                retry_locked(lambda: self._take_off(flight))
            except BaseException:
                if flight is None or self._flight is not flight:  # not handed over: nothing is in the air
                    with contextlib.suppress(sqlite3.Error):
                        if self._db.in_transaction:  # (a Ctrl-C just after BEGIN)
                            self._db.execute("ROLLBACK")
                    self._pending, self._open_since = {**rows, **self._pending}, time.monotonic()
                    _run_all(waiting)
                raise
        flight.cleared.wait()  # the landing thread holds the GIL until SQLite runs the COMMIT: this thread's next
        return flight.landed  # statement on the connection then waits for it instead of slipping in before

    def _take_off(self, flight: _Flight) -> None:
        """Write the flight's rows in a transaction and hand it to the landing thread. A Ctrl-C waits until
        the transaction is handed over or rolled back (an open one would keep SQLite's write lock from
        every process)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        with _interrupts_held():
            try:
                flight.before = self._insert(flight.rows)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._flight = flight
            assert self._runway is not None
            self._runway.put(flight)

    @staticmethod
    def _land(runway: queue.SimpleQueue[_Flight]) -> None:
        """The landing thread: commit each flight's transaction (its connection stays open until settled)."""
        while True:
            flight = runway.get()
            db = flight.db
            flight.cleared.set()
            try:
                db.execute("COMMIT")
            except BaseException as exc:  # noqa: BLE001 - handed to the flight's future
                with contextlib.suppress(sqlite3.Error):
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                flight.landed.set_exception(exc)
            else:
                flight.landed.set_result(None)

    def settle(self) -> None:
        """Wait for the commit :meth:`commit_soon` started, then run the jobs that waited for it; if it
        failed, its rows wait again (the next commit writes them)."""
        with self._lock:
            flight = self._flight
            if flight is None:
                return
            error = flight.landed.exception()  # (a Ctrl-C here leaves the flight to the next call)
            self._flight = None
            try:
                if error is None:
                    self._counted(flight.before)
                    self._checkpointer.wrote()
                else:
                    self._pending = {**flight.rows, **self._pending}
                    self._open_since = self._open_since or time.monotonic()
                    self._absent = {}  # looked up while the rows were neither waiting nor committed
            finally:
                _run_all(flight.jobs)

    def _write(self, rows: dict[str, tuple[bytes, float, str]]) -> None:
        with _immediate(self._db):
            before = self._insert(rows)
        self._counted(before)

    def _insert(self, rows: dict[str, tuple[bytes, float, str]]) -> int:
        """Write ``rows`` (in the open transaction) and count the write; the count before it."""
        db = self._db
        before = _count(db)
        first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM blob_data").fetchone()[0]
        db.executemany("INSERT INTO blob_data VALUES (?, ?)", [(i, row[0]) for i, row in enumerate(rows.values(), first)])
        db.executemany("INSERT INTO blob_keys VALUES (?, ?, ?, ?, ?)" + _ON_CONFLICT,
                       [(key, checksum, created, len(data), i)
                        for i, (key, (data, created, checksum)) in enumerate(rows.items(), first)])
        db.execute(_COUNT_INSERTS)
        return before

    def _counted(self, before: int) -> None:
        """This connection committed a write counted after ``before`` others."""
        if before != self._inserts:  # another writer added rows since this connection last looked
            self._absent = {}
        self._inserts = before + 1  # (the keys of this write left the remembered ones when put)

    def _committer(self) -> None:
        """Commit every transaction at most :data:`COMMIT_AFTER` seconds after it began, whether or not
        anything else is written (a long task after a batch of short ones must not keep their rows)."""
        with self._lock:
            while True:
                if not self._open_since:
                    self._opened.wait()
                    continue
                left = self._open_since + self._after - time.monotonic()
                if left > 0:
                    self._opened.wait(left)
                    continue
                with contextlib.suppress(Exception):  # the rows keep waiting (tried again in COMMIT_AFTER);
                    self.commit()  # the next explicit commit, a batch's flush before it reports, raises

    def _close_at_exit(self) -> None:
        """Commit what waits, then close the connection: the last connection to close folds the
        write-ahead log into the database and removes it. Left open, the log stays (up to ~200 MB) and
        every process that opens the table next reads all of it first (44 ms for 30,000 rows)."""
        if os.getpid() != self._pid:  # a forked child must not use its parent's connection
            return
        self._checkpointer.close()  # not holding the lock, which its thread may be waiting for
        with self._lock:
            try:
                self.settle()
                if self._pending:
                    self.commit()
            except Exception as exc:  # noqa: BLE001 - at exit there is no one left to raise to
                log.warning("ndustria: %d small results could not be committed at exit: %s", len(self._pending), exc)
            if self._connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._connection.close()
                self._connection = None

    def sync(self) -> None:
        """Make every committed row durable: fsync the write-ahead log and its folder. Rows a checkpoint moved into the
        database file were synced by that checkpoint (synchronous=NORMAL syncs the file after each one).

        Never the database file itself: closing any descriptor of a file drops every POSIX lock this
        process holds on it, SQLite's among them; another process would then take its connection for
        the last one, delete the log under it, and this connection would read a stale table."""
        fsync_path(self.path + "-wal", missing_ok=True)  # SQLite locks the database and -shm, never the log
        # The log's name too: each process makes a new log (the last to close removes it), and SQLite
        # syncs its folder only at a checkpoint under synchronous=NORMAL.
        fsync_path(os.path.dirname(self.path))

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is not None:
                return waiting[0]
            row = self._db.execute("SELECT data FROM blob_data WHERE id = (SELECT id FROM blob_keys WHERE key = ?)",
                                   (key,)).fetchone()
        return None if row is None else row[0]

    def lookup(self, key: str) -> tuple[int, str, float] | None:
        """(size, checksum, when written) of ``key``'s row, None if there is none; the data is not read."""
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is not None:
                return len(waiting[0]), waiting[2], waiting[1]
            return self._db.execute("SELECT size, checksum, created FROM blob_keys WHERE key = ?", (key,)).fetchone()

    def has(self, key: str) -> bool:
        with self._lock:
            if key in self._pending:
                return True
            return self._db.execute("SELECT 1 FROM blob_keys WHERE key = ?", (key,)).fetchone() is not None

    def checksums(self, keys: list[str]) -> dict[str, str]:
        """{key: checksum} of those of ``keys`` that have a row (committed or not), in one query.

        A run looks its keys up when it plans and each batch again when it claims them (another process
        may have stored one meanwhile). Keys found without a row are remembered until another writer adds
        rows: each transaction that adds rows counts itself in ``blob_counts``, read when another connection
        has committed anything (SQLite's ``data_version``; the checkpoint thread's commits add no rows).
        This connection adds rows through :meth:`put` only, which forgets its key. So a claim of keys the
        plan found missing costs no look-up (~3.5 us a key among 300,000 rows, ~1.2 among 3,000). A
        process of an ndustria from before the count (2026-12-04) adds rows uncounted: a claim here may
        miss one and compute that result again."""
        if not keys:
            return {}
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._absent_as:
                inserts = _count(self._db)
                if inserts != self._inserts:
                    self._absent, self._inserts = {}, inserts
                self._absent_as = version
            if len(self._absent) > ABSENT_MAX:
                self._absent = {}
            if all(map(self._absent.__contains__, keys)):
                out = {}
            else:
                out = self._stored_checksums(keys)
                pending = self._pending  # (a waiting row is found below, and its key must not stay once committed)
                if self._absent:
                    for key in out:
                        self._absent.pop(key, None)
                self._absent.update(dict.fromkeys([key for key in keys if key not in out and key not in pending]))
            if self._pending:
                out.update({key: self._pending[key][2] for key in keys if key in self._pending})
        return out

    def _stored_checksums(self, keys: list[str]) -> dict[str, str]:
        """{key: checksum} of the committed rows of ``keys``: the keys go in as one JSON array, the answer
        comes back as two comma-separated lists (places in it, checksums), 1.0 ms for 2,000 keys where a
        query per 500 keys bound one by one took 1.8, a row per key 1.3 (:meth:`_checksums_in` without
        SQLite's JSON)."""
        plain = "".join(keys)
        if '"' in plain or "\\" in plain or not plain.isprintable():  # a key JSON must escape (never ndustria's)
            listed = json.dumps(keys)
        else:
            listed = '["' + '","'.join(keys) + '"]'
        try:  # two lists in the same row order (one pass): half the time of a Python row per key
            places, checksums = self._db.execute(
                "SELECT group_concat(j.key, ','), group_concat(k.checksum, ',') FROM json_each(?) j"
                " JOIN blob_keys k ON k.key = j.value", (listed,)).fetchone()
            if places is None:
                return {}
            found = checksums.split(",")
            places = places.split(",")
            if len(found) != len(places):  # a checksum with a comma: not ndustria's, but answer right
                raise sqlite3.OperationalError("a checksum holds a comma")
            return dict(zip(map(keys.__getitem__, map(int, places)), found))
        except sqlite3.OperationalError:  # an SQLite built without JSON (before 3.38, unusual)
            return self._checksums_in(keys)

    def _checksums_in(self, keys: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        keys = sorted(keys)  # neighbouring keys share index pages
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            out.update(self._db.execute(f"SELECT key, checksum FROM blob_keys WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk))
        return out

    def keys(self) -> Iterator[str]:
        with self._lock:
            rows = self._db.execute("SELECT key FROM blob_keys").fetchall()
            stored = {key for (key,) in rows} if self._pending else set()
            waiting = [key for key in self._pending if key not in stored]
        for (key,) in rows:
            yield key
        yield from waiting

    def stats(self) -> dict[str, tuple[int, float]]:
        """{key: (size in bytes, when written)} of every row."""
        with self._lock:
            out = {k: (n, t or 0.0) for k, n, t in self._db.execute("SELECT key, size, created FROM blob_keys")}
            for k, (data, created, _) in self._pending.items():
                out[k] = (len(data), created)
            return out
