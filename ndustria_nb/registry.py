"""Which cache folders the kernels of this user use: a registry file the Jupyter server reads.

``<jupyter runtime dir>/ndustria-caches.json`` (the folder of the kernels' connection files,
``jupyter --runtime-dir``; ``JUPYTER_RUNTIME_DIR`` moves it for the server and its kernels alike)::

    {"version": 1, "caches": {"/home/you/.ndustria_cache": {
        "last_used": 1767000000.0,
        "kernels": [{"pid": 4242, "host": "node1", "notebook": "02_task_cells.ipynb", "since": 1767000000.0}]}}}

A kernel adds its cache folders when ``%load_ext ndustria`` runs and after each cell (the kernel
pipeline's and those of the ``Pipeline`` objects in its namespace), and takes its pid out when it
exits. Several kernels write the file: each change is a read-modify-write under an exclusive lock
(``flock`` of ``ndustria-caches.lock``), written whole to a temporary file and renamed into place,
so a reader never sees half a file. A killed kernel cannot take itself out: readers and the next
writer drop kernels whose process is gone (same host). A cache stays listed after its kernels are
gone (its runs are still worth a look) until its folder disappears; the :data:`KEEP` most recently
used are kept.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ndustria.atomic import publish_whole

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: rename still keeps the file whole
    fcntl = None  # type: ignore[assignment]

FILENAME = "ndustria-caches.json"
VERSION = 1
KEEP = 50  # caches remembered, most recently used first
log = logging.getLogger("ndustria")


@dataclass
class CacheUse:
    """One registered cache folder and the live kernels that use it."""

    path: str
    last_used: float
    kernels: list[dict[str, Any]] = field(default_factory=list)


def registry_path(runtime_dir: str | os.PathLike | None = None) -> Path:
    """The registry file in ``runtime_dir`` (default: Jupyter's runtime folder)."""
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    return Path(runtime_dir) / FILENAME


def alive(kernel: dict[str, Any]) -> bool:
    """Whether a registered kernel's process still exists (other hosts: assume so)."""
    if kernel.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(kernel.get("pid", 0)), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError, OverflowError):
        return True  # EPERM: it exists (another user's process would not be in our registry anyway)
    return int(kernel.get("pid", 0)) > 0


def _decode(text: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    caches = data.get("caches") if isinstance(data, dict) else None
    if not isinstance(caches, dict):
        return {}
    out = {}
    for path, entry in caches.items():
        if isinstance(path, str) and os.path.isabs(path) and isinstance(entry, dict):
            kernels = [k for k in entry.get("kernels", []) if isinstance(k, dict)]
            out[path] = {"last_used": float(entry.get("last_used") or 0), "kernels": kernels}
    return out


def read(path: Path) -> list[CacheUse]:
    """The registered caches, most recently used first, with their live kernels only.

    A file that is not a regular file owned by this process's user is ignored (``[]``)."""
    if not owned_file(path):
        return []
    try:
        caches = _decode(path.read_text())
    except OSError:
        return []
    uses = [CacheUse(p, e["last_used"], [k for k in e["kernels"] if alive(k)]) for p, e in caches.items()]
    uses.sort(key=lambda u: u.last_used, reverse=True)
    return uses


def owned_file(path: Path) -> bool:
    """A regular file (not a symlink) owned by this process's user."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (not hasattr(os, "getuid") or st.st_uid == os.getuid())


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write(path: Path, caches: dict[str, dict[str, Any]]) -> None:
    ordered = sorted(caches.items(), key=lambda item: item[1]["last_used"], reverse=True)[:KEEP]
    # whole (ndustria.atomic): the server reads it without the lock; not fsynced, it lives in a runtime folder
    publish_whole(path, json.dumps({"version": VERSION, "caches": dict(ordered)}, indent=1), replace=True,
                  fsync=False)


def update(path: Path, cache_dirs: Iterable[str | os.PathLike], notebook: str, pid: int | None = None) -> None:
    """Record that process ``pid`` (this one) now uses exactly ``cache_dirs``; empty: it stopped."""
    pid = os.getpid() if pid is None else pid
    host, now = socket.gethostname(), time.time()
    wanted = {str(Path(d).absolute()) for d in cache_dirs}
    with _locked(path):
        caches = _decode(path.read_text()) if owned_file(path) else {}
        since: dict[str, float] = {}
        for cache, entry in list(caches.items()):
            mine = [k for k in entry["kernels"] if k.get("pid") == pid and k.get("host") == host]
            entry["kernels"] = [k for k in entry["kernels"] if alive(k) and k not in mine]
            if mine:
                entry["last_used"] = now  # it was in use until now
                since[cache] = float(mine[0].get("since") or now)
            if cache not in wanted and not Path(cache).is_dir():
                del caches[cache]  # its folder is gone: nothing left to show
        for cache in sorted(wanted):
            entry = caches.setdefault(cache, {"last_used": now, "kernels": []})
            entry["last_used"] = now
            entry["kernels"].append({"pid": pid, "host": host, "notebook": notebook, "since": since.get(cache, now)})
        _write(path, caches)


class Registration:
    """Keeps one process's entries in the registry in step with the caches it uses."""

    def __init__(self, notebook: str, path: Path | None = None) -> None:
        self.notebook = notebook
        self.path = path
        self.current: frozenset[str] = frozenset()

    def use(self, cache_dirs: Iterable[str | os.PathLike]) -> None:
        """Register ``cache_dirs`` if they differ from what is registered (best effort: never raises)."""
        wanted = frozenset(str(Path(d).absolute()) for d in cache_dirs)
        if wanted == self.current:
            return
        try:
            self.path = self.path or registry_path()
            update(self.path, wanted, self.notebook)
        except Exception as exc:  # the sidebar not seeing a cache must never break a kernel
            log.debug("could not update the cache registry %s: %s", self.path, exc)
            return
        self.current = wanted

    def stop(self) -> None:
        """Take this process out of the registry (its caches stay listed)."""
        self.use(())
