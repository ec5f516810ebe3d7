"""ndustria's SQLite settings (write-ahead log) and the thread that checkpoints a log off the writer's path.

Both databases of a cache (the small entries, ``objects.sqlite``, and the catalog) are written in WAL
mode: a commit appends pages to ``<db>-wal`` and a *checkpoint* later copies them into the database
file and syncs it. SQLite's default runs that checkpoint inside the commit that crosses its threshold,
so the writer stops for it: in a cold run of 300,000 tiny tasks, each database checkpointed 50,000
pages (200 MB) about seven times, ~0.1-0.2 s each, two syncs included (1.6 s of syncs alone; nothing
at 3,000 tasks). A :class:`Checkpointer` does it from a thread of its own with a connection of its own
(SQLite lets a passive checkpoint run while the writer goes on appending; the thread spends its time
in SQLite and in syncs, without the GIL), so a commit does not wait for one.

The checkpoint runs once the log file has grown past :data:`CHECKPOINT_AT` bytes. After a checkpoint
that copied every page, the next commit starts the log over from its beginning and cuts the file to
:data:`LOG_KEEP` bytes (``journal_size_limit``), so the file's size says how much the log holds. That
commit also syncs the log's header, so the thread makes it itself: a commit of nothing, between two of
the writer's commits. A writer committing back to back always takes the write lock first; then the
thread holds this process's writer back (its lock) for a ``RESTART`` checkpoint and that commit
(whether the log started over is read in its header), and other processes' writers for at most
:data:`RESTART_PATIENCE` seconds. A log that cannot start over (a reader in another process on an old
snapshot) is checkpointed again only after it grew by a quarter of :data:`CHECKPOINT_AT`. The writers'
own checkpoint stays as a safety net at :data:`FALLBACK_PAGES`, twice as late as the thread's: a thread
that cannot keep up (or a process that exits before it ran) still bounds the log. The thread ends after
:data:`IDLE_AFTER` seconds without a commit, and at exit.

Crash safety is SQLite's: a checkpoint copies committed pages only, syncs the database file before
the log may start over, and a process killed in the middle of one leaves a log that the next
connection replays.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import threading
import weakref
from typing import Any

__all__ = ["CHECKPOINT_AT", "FALLBACK_PAGES", "LOG_KEEP", "Checkpointer", "use_wal"]

PAGE = 4096
CHECKPOINT_AT = 192 << 20  # bytes of log that start a checkpoint (49,152 pages)
LOG_KEEP = 32 << 20  # bytes the log file is cut back to when it starts over
FALLBACK_PAGES = 2 * CHECKPOINT_AT // PAGE  # the writers' own automatic checkpoint (safety net)
RESTART_PATIENCE = 0.2  # seconds a RESTART checkpoint may wait for (and hold back) writers and readers
IDLE_AFTER = 10.0  # seconds without a commit after which the thread ends (a catalog nobody closes keeps none)
log = logging.getLogger("ndustria")
_LIVE: weakref.WeakSet[Checkpointer] = weakref.WeakSet()  # checkpointers whose thread may run


@atexit.register
def _close_all() -> None:
    """At exit, stop every thread before the writers' connections close (the last connection to close
    folds the log into the database and removes it). Weak: a checkpointer nobody uses is not kept."""
    for checkpointer in list(_LIVE):
        checkpointer.close()


def use_wal(db: sqlite3.Connection) -> None:
    """The settings of ndustria's SQLite databases (the small entries and the catalog): WAL, commits that
    do not fsync (syncs are explicit), and, because random keys touch index pages all over, those pages
    kept in memory (up to 64 MiB). Checkpoints are a :class:`Checkpointer`'s; a connection's own
    automatic one comes only at :data:`FALLBACK_PAGES` (a checkpoint copies each page the log holds once,
    however often it was written since the last one: with SQLite's default of 1,000 pages a cold run of
    300,000 tasks took 320 us per task, 196-200 with 50,000)."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-65536")
    db.execute(f"PRAGMA wal_autocheckpoint={FALLBACK_PAGES}")
    db.execute(f"PRAGMA journal_size_limit={LOG_KEEP}")


class Checkpointer:
    """Checkpoints the log of the database at ``path`` from a daemon thread, once it holds more than
    :data:`CHECKPOINT_AT` bytes. The writer calls :meth:`wrote` after each commit (a ``stat`` of the
    log; the thread starts the first time the log is due); :meth:`close` (or the exit) stops the thread
    and closes its connection, so that the writer's connection can be the last to close (the last one
    folds the log into the database and removes it)."""

    def __init__(self, path: str | os.PathLike[str], writer_lock: Any = None) -> None:
        self.path = os.fspath(path)
        self._writer_lock = writer_lock  # held by this process's writer around its transactions (see _checkpoint)
        self._wal = self.path + "-wal"
        self.checkpoints = 0  # how many checkpoints the thread ran (tests, benchmarks)
        self.attempts = 0  # how many times it went through :meth:`_checkpoint`
        self._reset()

    def _reset(self) -> None:
        self._wake = threading.Event()
        self._lock = threading.Lock()  # held while the thread starts or ends
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pid = os.getpid()

    def wrote(self) -> None:
        """A commit was made: if the log is due for a checkpoint, wake the thread (started then, the first
        time: a process whose logs stay small never runs one)."""
        if self._stopping:
            return
        if self._pid != os.getpid():  # a forked child: its parent's thread did not come along
            self._reset()
        if self._thread is None:
            if not self.due():
                return
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._loop, name="ndustria-checkpoint", daemon=True)
                    self._thread.start()
                    _LIVE.add(self)  # closed at exit: its connection must close before the writer's
        self._wake.set()

    def due(self) -> bool:
        """Whether the log has grown past :data:`CHECKPOINT_AT` bytes."""
        return self._log_size() >= CHECKPOINT_AT

    def _log_size(self) -> int:
        try:
            return os.stat(self._wal).st_size
        except OSError:
            return 0

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread (waiting up to ``timeout`` seconds for a checkpoint in progress) and close its
        connection. Later :meth:`wrote` calls do nothing: the writer is closing too. Never called with the
        writer's lock held: the thread may be waiting for it."""
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout)

    def _loop(self) -> None:
        db: sqlite3.Connection | None = None
        tried = 0  # the log's size after a checkpoint that could not start it over (see the module doc)
        try:
            while True:
                if not self._wake.wait(IDLE_AFTER):
                    with self._lock:  # idle: let go of the thread and its connection (wrote() starts another)
                        if not self._wake.is_set():
                            self._thread = None
                            return
                self._wake.clear()
                if self._stopping:
                    return
                size = self._log_size()
                if size < CHECKPOINT_AT:
                    tried = 0
                    continue
                if tried and size < tried + CHECKPOINT_AT // 4:
                    continue
                restarted = False
                try:
                    if db is None:
                        db = sqlite3.connect(self.path, timeout=RESTART_PATIENCE, isolation_level=None,
                                             check_same_thread=False)
                        use_wal(db)  # journal_size_limit and synchronous are a connection's own settings
                    restarted = self._checkpoint(db)
                except sqlite3.Error as exc:  # busy, or a database going away: the next commit tries again
                    log.debug("ndustria: checkpoint of %s: %s", self.path, exc)
                tried = 0 if restarted else self._log_size()
        finally:
            if db is not None:
                with contextlib.suppress(sqlite3.Error):
                    db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> bool:
        """Copy the log into the database without holding writers back (a second pass for what the writer
        appended meanwhile), then start the log over here (:meth:`_start_over`), between two of the
        writer's commits. A writer committing back to back takes the write lock first every time (its
        commit then only appends, and SQLite's polling of a busy lock never wins): then this process's
        writer is held back (its lock) for a RESTART checkpoint, which catches up, and the commit.
        Returns whether the log started over (read in its header)."""
        self.attempts += 1
        sequence = self._sequence()
        for _ in range(2):
            busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if not busy and copied >= frames:
                break
        db.execute("PRAGMA busy_timeout = 20")
        try:
            self._start_over(db)
            if self._sequence() != sequence:
                return True
        except sqlite3.OperationalError:  # the writer held the lock: hold it back, below
            pass
        finally:
            db.execute(f"PRAGMA busy_timeout = {int(RESTART_PATIENCE * 1000)}")
        with self._writer_lock if self._writer_lock is not None else contextlib.nullcontext():
            db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            self.checkpoints += 1
            self._start_over(db)
        return self._sequence() != sequence

    def _sequence(self) -> int | None:
        """The log's checkpoint sequence number (bytes 12-15 of its header, big-endian: SQLite's file
        format), which changes each time the log starts over. SQLite never locks the log file, so
        opening and closing it here cannot drop a lock of this process's connections."""
        try:
            with open(self._wal, "rb") as f:
                header = f.read(16)
        except OSError:
            return None
        return int.from_bytes(header[12:16], "big") if len(header) == 16 else None

    @staticmethod
    def _start_over(db: sqlite3.Connection) -> None:
        """Commit a write of nothing (the database's ``user_version``, set to what it is), so that the
        log starts over in this thread: the commit that starts it over syncs the log's header (SQLite,
        synchronous=NORMAL), 20-40 ms that the writer would otherwise wait for. If the writer appended
        since the checkpoint, this commit only appends one page."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            db.execute(f"PRAGMA user_version = {version}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
