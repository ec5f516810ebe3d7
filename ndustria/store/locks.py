"""Per-key compute locks: a task shared by several processes on one cache runs once.

:func:`ndustria.run.worker.execute` takes the key's lock, checks the store again, and only
then computes and saves (and releases the lock once the result is stored). A process
that waited for the lock finds the entry and reports it as found, without recomputing.

A key's lock is one byte of the file ``<cache_dir>/locks/keys``: a POSIX record lock
(``fcntl.lockf``) on the byte at an offset hashed from the key. The kernel releases it
when its holder dies, so a killed process never blocks others and leaves nothing to
clean; it works across hosts wherever the filesystem supports POSIX locks (NFS does).
Taking one costs two system calls and no file creation, which matters for batches of
tiny tasks (a lock file per key cost ~60 µs per task here, ~350 µs through filelock).

POSIX record locks belong to a process, not to a thread or file descriptor, so each
process keeps one descriptor of the lock file open for good (closing any descriptor of
it would drop all of the process's locks) and threads of one process exclude each
other with a ``threading.Lock`` per locked byte.

:func:`clean_stale` (called when a Pipeline opens its store) removes temp files of
killed writers once they are old.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import xxhash

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_DIR", "LOCK_FILE", "STALE_AFTER", "KeyLock", "clean_stale", "key_lock", "release_taken", "taken_mark"]

log = logging.getLogger("ndustria")
LOCK_DIR = "locks"
LOCK_FILE = "keys"
STALE_AFTER = 3600.0  # seconds: temp files untouched this long are left-overs
_SPAN = 1 << 62  # lock offsets are hashed into [0, _SPAN)

_MUTEX = threading.Lock()
_RELEASING = threading.Lock()  # see KeyLock.release
_PID = os.getpid()
_FDS: dict[str, tuple[int, int, float]] = {}  # cache root -> (descriptor of its lock file, inode, checked at)
RECHECK = 1.0  # seconds: how often a cached descriptor is checked against the file now at its path
_LOCAL: dict[tuple[str, int], list[Any]] = {}  # (root, offset) -> [threading.Lock, number of users]


class _Taken(threading.local):
    def __init__(self) -> None:
        self.locks: set[KeyLock] = set()  # the KeyLocks this thread took and nobody released yet


_TAKEN = _Taken()  # see release_taken
_STAMPS = itertools.count(1)  # when a lock was taken, in the order of the process (see taken_mark)


def offset_of(key: str) -> int:
    """The byte of the lock file that stands for ``key``'s compute lock."""
    return xxhash.xxh3_64_intdigest(key.encode()) % _SPAN


def _attach(root: str, offset: int) -> tuple[int, threading.Lock]:
    """This process's lock-file descriptor for ``root`` and the thread lock of ``offset`` (counted)."""
    global _PID
    with _MUTEX:
        if os.getpid() != _PID:  # a forked child: the parent's thread locks are not ours
            _PID = os.getpid()
            _LOCAL.clear()
        fd = _lock_file(root)
        entry = _LOCAL.setdefault((root, offset), [threading.Lock(), 0])
        entry[1] += 1
        return fd, entry[0]


def _lock_file(root: str) -> int:
    """This process's descriptor of ``root``'s lock file (called under ``_MUTEX``).

    A cache directory removed and made again (``rm -rf``, ``ndustria cache clear``) has a new
    lock file: a descriptor of the old one would lock nothing other processes see, so the
    cached descriptor is checked against the path now and then. An old descriptor stays open:
    locks taken through it are released through it, and closing it would drop them.
    """
    now = time.monotonic()
    cached = _FDS.get(root)
    if cached is not None and now - cached[2] < RECHECK:
        return cached[0]
    path = os.path.join(root, LOCK_DIR, LOCK_FILE)
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        inode = None
    if cached is not None and inode == cached[1]:
        _FDS[root] = (cached[0], inode, now)
        return cached[0]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    _FDS[root] = (fd, os.fstat(fd).st_ino, now)
    return fd


def _detach(root: str, offset: int) -> None:
    with _MUTEX:
        entry = _LOCAL.get((root, offset))
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _LOCAL[(root, offset)]


class KeyLock:
    """The compute lock of one key in one cache; another thread may release it (write-behind saves do).

    Where the lock cannot be taken (a read-only cache, a filesystem without POSIX locks)
    ``acquire`` returns and the holder runs unlocked: the store's atomic writes still keep
    every entry whole.
    """

    def __init__(self, root: str | os.PathLike[str], key: str) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.key = key
        self._offset = offset_of(key)
        self._fd = -1
        self._local: threading.Lock | None = None
        self._locked = False
        self._fallback: Any = None
        self._taken_by: set[KeyLock] | None = None  # the set of the thread that took it (release_taken)
        self._stamp = 0  # when it was taken (release_taken's ``since``)

    def acquire(self, blocking: bool = True) -> bool:
        """Hold this key's lock, waiting for another process or thread to finish with it.

        Without ``blocking``, returns False at once if someone else holds it. True means the
        caller may go on (also when the lock could not be used at all and the caller runs unlocked).
        """
        if fcntl is None:  # pragma: no cover - not POSIX: an exclusive lock file per key
            import filelock

            self._fallback = filelock.FileLock(os.path.join(self.root, LOCK_DIR, f"{self.key}.lock"),
                                               timeout=-1 if blocking else 0, thread_local=False)
            try:
                self._fallback.acquire()
            except filelock.Timeout:
                self._fallback = None
                return False
            return True
        try:
            self._fd, self._local = _attach(self.root, self._offset)
        except OSError as exc:
            log.debug("cannot open the lock file of %s (%s); running without it", self.root, exc)
            return True
        try:
            got = self._local.acquire(blocking)
        except BaseException:  # Ctrl-C while another thread of this process holds it
            got = False
            raise
        finally:
            if not got:
                _detach(self.root, self._offset)
                self._local = None
        if not got:
            return False
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self._offset)
            self._locked = True
        except OSError as exc:
            if not blocking and exc.errno in (errno.EACCES, errno.EAGAIN):  # another process holds it
                self._release_local()
                return False
            log.debug("cannot lock %s in %s (%s); running without it", self.key, self.root, exc)  # ENOLCK, EDEADLK
        except BaseException:  # Ctrl-C while waiting
            self._release_local()
            raise
        self._stamp = next(_STAMPS)
        self._taken_by = _TAKEN.locks
        self._taken_by.add(self)
        return True

    def release(self) -> None:
        """Let the next waiter in (once; later calls, from any thread, do nothing)."""
        if self._fallback is not None:  # pragma: no cover - not POSIX
            self._fallback.release()
            self._fallback = None
            return
        # One release at a time (a batch's end and a run giving claims back may race), each step marked done
        # only after it is done: a Ctrl-C in between leaves the rest to the next release() (the batch's end)
        with _RELEASING:
            if self._locked:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, self._offset)  # again is harmless: the key's thread
                self._locked = False  # lock, still held, keeps this process's other users out
            self._release_local()
        if self._taken_by is not None:
            self._taken_by.discard(self)

    def _release_local(self) -> None:
        if self._local is not None:
            local, self._local = self._local, None
            local.release()
            _detach(self.root, self._offset)


def taken_mark() -> int:
    """A mark for :func:`release_taken`: locks this thread takes from now on come after it."""
    return next(_STAMPS)


def release_taken(since: int = 0) -> int:
    """Release every compute lock this thread took after the mark ``since`` and nobody released yet;
    returns how many.

    For a run that a Ctrl-C ended, once what it saved is committed: the interrupt can land between a
    lock's acquisition and the code that would release it (Python raises it at any bytecode), and a lock
    left held makes every other process, and this process's next run (a notebook's), wait for good.
    Locks taken before the run's mark are left alone: a run inside a task holds its batch's other keys,
    which the batch releases itself (releasing them here would let another process compute them too)."""
    # list() copies the set in one step: a writer thread may release (discard) one of them meanwhile
    held = [lock for lock in list(_TAKEN.locks) if lock._stamp > since]
    for lock in held:
        lock.release()
    return len(held)


@contextlib.contextmanager
def key_lock(root: str | os.PathLike[str], key: str) -> Iterator[None]:
    """Hold the compute lock of ``key`` in cache ``root`` (waits for another holder to finish)."""
    lock = KeyLock(root, key)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def clean_stale(store: Any, older_than: float = STALE_AFTER) -> int:
    """Remove temp files left by killed writers (untouched for ``older_than`` seconds); returns how many."""
    try:
        return store.clean_tmp(older_than)
    except OSError:  # a read-only or vanished cache: nothing to clean
        return 0
