"""Files one process makes and others read, whole or absent: no reader ever sees one partly written.

:func:`publish_whole` writes the bytes to a temporary file (a hidden name beside the target, or in a
folder of the same filesystem), fsyncs it, then publishes it in one step: ``os.link`` when the
first writer must win (a signing key, ``FORMAT``: a later writer reads the winner's file) or
``os.replace`` when the last one does (the config file, a run's report files). :func:`read_whole`
reads and parses a file and, when it cannot be parsed, reads it again for a moment before giving
up: a file made by something that does not publish this way (an older ndustria, a user's editor,
a filesystem without hard links) may still be being written.

Imports only the standard library and :mod:`ndustria.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ndustria.errors import NdustriaError

__all__ = ["PATIENCE", "publish_whole", "read_whole", "temp_name"]

T = TypeVar("T")
PATIENCE = 2.0  # seconds a reader keeps reading a file it cannot parse before it reports it
# link() errors of filesystems without hard links (some FUSE, SMB and FAT mounts)
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def temp_name(path: Path, tmp_dir: Path | None = None) -> Path:
    """A hidden temporary name for a file becoming ``path``, unique across processes and hosts. It ends
    like the store's temp files (``-<pid>-<thread>.tmp``), so a cache's ``tmp/`` cleaning removes it too."""
    name = f".{path.name}.{secrets.token_hex(6)}-{os.getpid()}-{threading.get_ident()}.tmp"
    return (tmp_dir or path.parent) / name


def publish_whole(path: str | os.PathLike[str], data: bytes | str, *, replace: bool = False,
                  tmp_dir: str | os.PathLike[str] | None = None, mode: int = 0o600, fsync: bool = True) -> bool:
    """Make ``path`` hold ``data``, never partly: write a temporary file, fsync it, then publish it.

    ``replace=False``: the first writer wins. Returns False, leaving the file there alone, when
    ``path`` exists already (read that one). ``replace=True``: ``path`` is replaced whole (the last
    writer wins); returns True. ``tmp_dir`` (same filesystem) holds the temporary file instead of
    ``path``'s folder, ``mode`` is its permission bits (under the umask). ``fsync``: the file is
    synced before it is published, and a first writer's folder after (a replaced file, rewritten at
    every run, skips that second sync: ~4 ms). Raises ``OSError``.
    """
    path = Path(path)
    tmp = temp_name(path, Path(tmp_dir) if tmp_dir is not None else None)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        _write_new(tmp, raw, mode, fsync)
        if replace:
            os.replace(tmp, path)
            published = True
        else:
            published = _link(tmp, path, raw, mode, fsync)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # after link() the temporary name is a second name of the published file
    if published and fsync and not replace:  # a file made once that others rely on: make its name durable too
        _sync_folder(path.parent)
    return published


def _link(tmp: Path, path: Path, raw: bytes, mode: int, fsync: bool) -> bool:
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    # No hard links here: create the file exclusively and fill it. A reader may see it partly
    # written for a moment, which read_whole rides out.
    try:
        _write_new(path, raw, mode, fsync)
    except FileExistsError:
        return False
    return True


def _write_new(path: Path, raw: bytes, mode: int, fsync: bool) -> None:
    """Create ``path`` (it must not exist) holding ``raw``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    """Make a publication durable (POSIX: fsync the folder); best effort."""
    with contextlib.suppress(OSError):
        fsync_path(folder)


def fsync_path(path: str | os.PathLike[str], *, missing_ok: bool = False) -> None:
    """fsync a file, or a folder (POSIX only: elsewhere folders cannot be opened), by its path."""
    if os.name != "posix" and os.path.isdir(path):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_whole(path: str | os.PathLike[str], parse: Callable[[bytes], T], *,
               fail: Callable[[ValueError], NdustriaError], patience: float = PATIENCE) -> T:
    """``parse(bytes of path)``; while ``parse`` raises ``ValueError``, read again after a short sleep,
    for up to ``patience`` seconds, then raise ``fail(that error)``.

    ``OSError`` (a missing file, no permission) is raised at once: the caller knows what it means.
    """
    deadline = time.monotonic() + patience
    delay = 0.002
    while True:
        with open(path, "rb") as fh:
            data = fh.read()
        try:
            return parse(data)
        except ValueError as exc:
            if time.monotonic() >= deadline:
                raise fail(exc) from exc
        time.sleep(delay)
        delay = min(2 * delay, 0.1)
