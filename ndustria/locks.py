"""Per-key compute locks: a task shared by several processes on one cache runs once.

:func:`computed_once` wraps :func:`ndustria.worker.execute`: it takes the lock
``<cache_dir>/locks/<key>.lock`` (an OS file lock via ``filelock``, released by the
kernel when its holder dies, so a killed process never blocks others), checks the
store again, and only then computes and saves. A process that waited for the lock
finds the entry and reports it as found, without recomputing.

The lock file holds ``"<pid> <host>"`` of its holder and is removed on release; a
killed holder leaves it behind. :func:`clean_stale` (called when a Pipeline opens its
store) removes such lock files and temp files of killed writers once they are old.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import filelock

from .errors import CorruptEntryError

__all__ = ["LOCK_DIR", "STALE_AFTER", "clean_locks", "clean_stale", "computed_once", "key_lock"]

log = logging.getLogger("ndustria")
LOCK_DIR = "locks"
STALE_AFTER = 3600.0  # seconds: temp files and lock files untouched this long are left-overs


def _lock_path(root: str | os.PathLike[str], key: str) -> Path:
    return Path(root) / LOCK_DIR / f"{key}.lock"


@contextlib.contextmanager
def key_lock(root: str | os.PathLike[str], key: str, timeout: float = -1) -> Iterator[None]:
    """Hold the compute lock of ``key`` in cache ``root`` (waits for another holder to finish)."""
    path = _lock_path(root, key)
    lock = filelock.FileLock(path, timeout=timeout, thread_local=False)  # the file is removed on release
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock.acquire()
    except OSError as exc:  # a read-only or full cache: run unlocked; the store reports the real problem
        log.debug("cannot take the lock %s (%s); running without it", path, exc)
        yield
        return
    try:
        with contextlib.suppress(OSError):  # who holds it, for clean_locks and for humans
            path.write_text(f"{os.getpid()} {socket.gethostname()}\n")
        yield
    finally:
        lock.release()


def computed_once(execute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorate ``execute(payload)``: under the key's lock, an entry stored meanwhile is reported as found.

    Payloads that do not use the shared cache, or must run whatever is stored (``rerun``), are
    not locked. The found report comes from ``ndustria.worker.found_report``.
    """

    @functools.wraps(execute)
    def run(payload: Any) -> Any:
        if not getattr(payload, "shared_cache", True) or getattr(payload, "rerun", False):
            return execute(payload)
        from .worker import found_report, get_store

        store = get_store(payload.store_root, payload.fsync)
        with key_lock(store.root, payload.key):
            try:
                info = store.info(payload.key) if store.contains(payload.key) else None
            except CorruptEntryError:  # a damaged entry: compute and replace it
                info = None
            if info is not None:
                return found_report(payload, info)
            return execute(payload)

    return run


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_locks(root: str | os.PathLike[str], older_than: float = 3600) -> int:
    """Remove lock files untouched for ``older_than`` seconds that no live process holds; returns how many.

    A lock whose recorded holder is a live process on this host is kept; otherwise the file
    is removed only if it can be locked without waiting (no holder on any host).
    """
    folder = Path(root) / LOCK_DIR
    if not folder.is_dir():
        return 0
    now, host, removed = time.time(), socket.gethostname(), 0
    for path in folder.glob("*.lock"):
        try:
            if now - path.stat().st_mtime < older_than:
                continue
            pid, _, where = path.read_text().strip().partition(" ")
        except (OSError, UnicodeDecodeError):
            continue
        if where == host and pid.isdigit() and _pid_alive(int(pid)):
            continue
        try:
            with filelock.FileLock(path, timeout=0, thread_local=False, preserve_lock_file=True):
                path.unlink()
        except (filelock.Timeout, OSError):
            continue
        removed += 1
    return removed


def clean_stale(store: Any, older_than: float = STALE_AFTER) -> int:
    """Remove temp files and lock files left by killed processes (untouched for ``older_than`` s).

    The temp folder holds only writes in flight, so it is checked every time. Scanning the
    locks costs a ``stat`` per lock file (one per computed key), so it runs at most once per
    ``older_than`` seconds per cache: the mtime of ``locks/.cleaned`` says when it last did.
    """
    try:
        removed = store.clean_tmp(older_than)
    except OSError:  # a read-only or vanished cache: nothing to clean
        return 0
    marker = Path(store.root) / LOCK_DIR / ".cleaned"
    try:
        if time.time() - marker.stat().st_mtime < older_than:
            return removed
    except OSError:
        pass
    try:
        removed += clean_locks(store.root, older_than)
        marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass
    return removed
