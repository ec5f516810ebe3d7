"""On-disk result store: atomic, checksummed, zero-copy for numpy arrays.

Directory layout::

    root/FORMAT                              "ndustria-store <version>"
    root/objects/<key[:2]>/<key>             one entry file per result (bytes: :mod:`ndustria.store.format`)
    root/tmp/<key>.<token><n>-<pid>-<tid>.tmp  entries being written (token: random, per process)

A writer writes the data, then the header, to a file in root/tmp, fsyncs it (``fsync=True``)
and renames it into place with ``os.replace``: a reader sees no entry or a complete
one. ``load()`` checks every digest before unpickling anything; arrays come back as
writable views of one page-aligned read buffer. ``load(mmap=True)`` checks the
header and pickle digests only: buffer pages are not read, so they are not verified
(``verify()`` checks everything).

``load()`` checks the signature after the digests and before unpickling anything: an entry
signed by no trusted key, or a format-1 entry (unsigned), raises :class:`UntrustedEntryError`
(a :class:`CorruptEntryError`, so callers treat it as a miss and recompute). ``verify()``
checks checksums only. An entry written elsewhere (a bundle, :mod:`ndustria.record.bundle`)
comes in through ``tmp_file()``, ``adopt()`` (every digest checked, then re-signed with the
local key) and ``publish()``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import itertools
import json
import mmap as _mmap
import os
import pickle
import re
import sqlite3
import stat as _stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import xxhash

from ndustria.atomic import fsync_path, publish_whole, read_whole
from ndustria.errors import (
    CacheError,
    CacheWriteError,
    CorruptEntryError,
    UntrustedEntryError,
)
from ndustria.store.blobs import FILE as BLOBS_FILE
from ndustria.store.blobs import SMALL_MAX, Blobs
from ndustria.store.format import (
    CHUNK,
    DIGEST,
    FORMAT_VERSION,
    PREFIX,
    Header,
    dumps,
    framed,
    parse,
    pickle_result,
    read_header,
    scan,
    signed_message,
    small_entry,
    write_all,
    write_large,
)
from ndustria.store.trust import Keyring, load_keyring

__all__ = ["FORMAT_VERSION", "EntryInfo", "Store"]

_PAGE = 4096
_SQLITE_ERRNO = {sqlite3.SQLITE_READONLY: errno.EROFS, sqlite3.SQLITE_FULL: errno.ENOSPC,
                 sqlite3.SQLITE_PERM: errno.EACCES, sqlite3.SQLITE_CANTOPEN: errno.EACCES}
_STORE_TAG = "ndustria-store"
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_TMP_RE = re.compile(r".*-(\d+)-(\d+)\.tmp")
_O_BINARY = getattr(os, "O_BINARY", 0)


def _load_syncfs() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs  # Linux (glibc, musl)
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
SYNC_FILES = 64  # Store.sync: up to this many entry files are fsynced one by one, more take one syncfs


@dataclass(frozen=True)
class EntryInfo:
    """A stored entry: where it is (its file, or ``objects.sqlite`` for a small one), size in bytes,
    content checksum (xxh3_128 hex) and when it was written."""

    key: str
    where: str  # the path as text (a Path per saved result cost ~4 us; most callers want the text)
    size: int
    checksum: str
    created: float = 0.0

    @property
    def path(self) -> Path:
        return Path(self.where)


@functools.cache
def _numpy() -> Any:
    """numpy, imported when a file entry is first loaded (None without numpy): a process that only
    reads and writes small entries (a worker of many tiny tasks) never pays its ~50-150 ms import."""
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is optional
        return None
    return numpy


def _buffer(n: int) -> memoryview:
    """A writable buffer of ``n`` bytes, not zero-filled when numpy is present.

    Page-aligned, like the file: the kernel copies file pages much more slowly into memory
    whose offset within a page differs (numpy's own allocations start 16 bytes in).
    """
    np = _numpy()
    if np is None:
        return memoryview(bytearray(n))
    raw = np.empty(n + _PAGE, np.uint8)
    start = -raw.ctypes.data % _PAGE
    return memoryview(raw[start : start + n])


def _rename_into_place(tmp: str, final: str) -> None:
    try:
        os.replace(tmp, final)
    except FileNotFoundError:  # the entry's folder objects/<key[:2]> does not exist yet
        os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
        os.replace(tmp, final)


def _sync_dir(final: str) -> None:
    """Make the rename of ``final`` durable (POSIX: fsync its folder)."""
    fsync_path(os.path.dirname(final))


_TOKEN: tuple[int, str, Iterator[int]] = (0, "", itertools.count())


def _unique() -> str:
    """A temp-name part no other writer uses: a random token per process (hosts may share pids), a counter."""
    global _TOKEN
    pid, token, counter = _TOKEN
    if pid != os.getpid():
        _TOKEN = pid, token, counter = os.getpid(), uuid.uuid4().hex[:16], itertools.count()
    return f"{token}{next(counter)}"


class Store:
    """A directory of results, one checksummed file per key; safe for concurrent processes."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True, keyring: Keyring | None = None) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
        self.fsync = fsync
        self._keyring = keyring
        self._row_prefix = os.path.join(os.fspath(self.root), BLOBS_FILE + "#")  # a small entry's reported path
        self._objects = self.root / "objects"
        self._objects_str = os.fspath(self._objects)
        self._tmp = self.root / "tmp"
        self._tmp_str = os.fspath(self._tmp)
        self._unsynced: set[str] | None = set()  # entry files written without their own fsync, for sync()
        self._unsynced_lock = threading.Lock()
        self._syncing = threading.Lock()  # one sync at a time: a second caller waits for the first's fsyncs
        try:
            existed = self.root.is_dir()
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not existed or not any(self.root.iterdir()):
                os.chmod(self.root, 0o700)
            self._objects.mkdir(mode=0o700, exist_ok=True)
            self._tmp.mkdir(mode=0o700, exist_ok=True)
            self._check_format()
            self.blobs = Blobs.of(os.fspath(self.root))
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(
                f"cannot use cache directory {self.root}: {exc}; choose a writable directory"
            ) from exc

    def _check_format(self) -> None:
        fmt = self.root / "FORMAT"
        if not fmt.exists():  # a new cache: the first process to publish its FORMAT wins, every one reads it
            publish_whole(fmt, f"{_STORE_TAG} {FORMAT_VERSION}\n", tmp_dir=self._tmp, mode=0o644, fsync=self.fsync)

        def parse(data: bytes) -> int:
            text = data.decode("utf-8", errors="replace").strip()
            tag, _, version = text.partition(" ")
            if tag != _STORE_TAG or not version.isdigit():
                raise ValueError(f"FORMAT reads {text[:40]!r}")
            return int(version)

        version = read_whole(fmt, parse, fail=lambda exc: CacheError(f"{self.root} is not an ndustria store ({exc})"))
        if version > FORMAT_VERSION:
            raise CacheError(
                f"cache directory {self.root} was written by a newer ndustria (store format {version}); "
                "upgrade ndustria or use another cache directory"
            )

    @property
    def keyring(self) -> Keyring:
        """The keys entries are signed with and checked against (loaded on first use)."""
        if self._keyring is None:
            self._keyring = load_keyring()
        return self._keyring

    def _check_signature(self, key: str, path: Path, hdr: Header, pickled: memoryview) -> None:
        def untrusted(reason: str) -> UntrustedEntryError:
            return UntrustedEntryError(key, str(path), reason)

        if not hdr.signature:
            raise untrusted("it has no signature (written by an older ndustria); it is recomputed")
        if hashlib.sha256(pickled).hexdigest() != hdr.pickle_sha256:
            raise untrusted("pickle SHA-256 mismatch")
        if not self.keyring.check(hdr.signer, hdr.signature, signed_message(key, hdr)):
            who = "a key you do not trust" if hdr.signer not in self.keyring.trusted else "a bad signature"
            raise untrusted(f"it is signed by {who} (signer {hdr.signer}); add that key to trusted_keys "
                            "to use results written by others")

    def _tmp_path(self, name: str) -> str:
        return f"{self._tmp_str}/{name}.{_unique()}-{os.getpid()}-{threading.get_ident()}.tmp"

    def path(self, key: str) -> Path:
        """The file of ``key``: root/objects/<key[:2]>/<key> (a small entry lives in objects.sqlite
        instead: see :meth:`info` and :meth:`open_entry`)."""
        return Path(self._file(key))

    def _row_name(self, key: str) -> str:
        """Where a small entry is, as reported: the table's file and the key (``objects.sqlite#<key>``),
        which is no file of its own: removing it must go through :meth:`remove`."""
        return self._row_prefix + key

    def _file(self, key: str) -> str:
        key = self._valid(key)
        return f"{self._objects_str}/{key[:2]}/{key}"

    @staticmethod
    def _valid(key: str) -> str:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid store key {key!r}: use 1-200 characters from [A-Za-z0-9_-]")
        return key

    def contains(self, key: str) -> bool:
        """Whether an entry exists (a row or a stat; the entry is not read). Hot: once per declared task."""
        if not isinstance(key, str) or "/" in key or key.startswith("."):
            return False
        if self.blobs.has(key):
            return True
        try:
            return _stat.S_ISREG(os.stat(f"{self._objects_str}/{key[:2]}/{key}").st_mode)
        except (OSError, ValueError):
            return False

    def known_checksums(self, keys: list[str]) -> dict[str, str]:
        """{key: checksum} of the stored ``keys``: a row's checksum, ``""`` for a file (its header is read
        only when a dependent's key needs it). One query for the small entries, a stat for each other key."""
        found = self.blobs.checksums(keys)
        for key in keys:
            if key not in found:
                try:
                    if _stat.S_ISREG(os.stat(self._file(key)).st_mode):
                        found[key] = ""
                except (OSError, ValueError):
                    continue
        return found

    def save(self, key: str, value: object, *, defer: bool = False) -> EntryInfo:
        """Store ``value`` atomically under ``key``; numpy arrays are written without copies.

        A small result (at most :data:`~ndustria.store.blobs.SMALL_MAX` bytes as an entry) becomes a row
        of ``objects.sqlite``, any other a file. ``defer=True`` (a batch's saves) leaves its commit and
        durability to the caller (:meth:`flush`, :meth:`sync`); otherwise the entry is committed at once
        and, with ``fsync``, durable when this returns.
        """
        final = self._file(key)
        data, views = pickle_result(key, value, in_band_below=SMALL_MAX // 4)
        keyring = self.keyring
        if not views and len(data) <= SMALL_MAX - 1024:  # the header takes well under 1 KiB
            created = round(time.time(), 6)
            whole, checksum = small_entry(key, data, keyring, created)
            try:
                self.blobs.put(key, whole, created, checksum, commit=not defer)
                if not defer and self.fsync:
                    self.blobs.sync()
            except (OSError, sqlite3.Error) as exc:
                raise self._write_error(key, exc) from exc
            with contextlib.suppress(OSError):
                os.unlink(final)  # an earlier, larger value under this key (rerun, a nondeterministic task)
            return EntryInfo(key, self._row_name(key), len(whole), checksum, created)
        size, checksum = self._save_file(key, final, data, views, sync=self.fsync and not defer)
        if self.blobs.has(key):  # an earlier, smaller value under this key (kept if the new one fails)
            self.blobs.delete(key)
        return EntryInfo(key, final, size, checksum)

    def _save_file(self, key: str, final: str, data: bytes, views: list[memoryview], sync: bool) -> tuple[int, str]:
        tmp = self._tmp_path(key)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        except OSError as exc:
            raise self._write_error(key, exc) from exc
        try:
            try:
                if not views and len(data) <= CHUNK:  # one write of the whole file
                    whole, checksum = small_entry(key, data, self.keyring, round(time.time(), 6))
                    size = write_all(fd, whole, 0)
                else:
                    size, checksum = write_large(fd, key, data, views, self.keyring)
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            _rename_into_place(tmp, final)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):  # disk full, read-only, quota: say where and what to do
                raise self._write_error(key, exc) from exc
            raise
        if sync:
            _sync_dir(final)
        else:
            self._to_sync(final)
        return size, checksum

    def _to_sync(self, final: str) -> None:
        with self._unsynced_lock:
            if self._unsynced is not None:  # None: too many to list, the next sync syncs the filesystem
                self._unsynced.add(final)
                if len(self._unsynced) > SYNC_FILES:
                    self._unsynced = None

    def flush(self) -> None:
        """Commit the small entries saved with ``defer=True`` (visible to other processes from then on)."""
        self.blobs.commit()

    def is_row(self, path: str) -> bool:
        """Whether ``path``, as a report gives it, names a small entry's row rather than a file."""
        return path.startswith(self._row_prefix)

    def flush_soon(self, then: Callable[[], None]) -> Future[None] | None:
        """:meth:`flush` finished by another thread while this one goes on: the future is done once the
        entries are visible; ``then`` runs after that, at the next :meth:`settle` (or at once if nothing
        waited). See :meth:`ndustria.store.blobs.Blobs.commit_soon`."""
        return self.blobs.commit_soon(then)

    def settle(self) -> None:
        """Wait for a :meth:`flush_soon` in progress and run what waited for it."""
        self.blobs.settle()

    def after_commit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` once the entries saved so far are visible to other processes."""
        self.blobs.after_commit(job)

    def held(self) -> contextlib.AbstractContextManager[None]:
        """A block whose deferred small entries the caller commits (:meth:`flush`) when it ends: the clock
        does not commit them meanwhile (:meth:`ndustria.store.blobs.Blobs.held`)."""
        return self.blobs.held()

    # -- entries written elsewhere (bundles: ndustria.record.bundle) ------------------------------
    def tmp_file(self, key: str) -> str:
        """A fresh temp path in root/tmp for an entry of ``key`` being brought in (see :meth:`adopt`);
        one left behind by a killed process is removed by :meth:`clean_tmp`."""
        self._file(key)  # a valid key
        return self._tmp_path(key)

    def adopt(self, key: str, path: str | os.PathLike[str]) -> EntryInfo:
        """Check the entry file at ``path`` as :meth:`load` would, except whose key signed it, then
        sign it with this store's key, in place. Not yet published: see :meth:`publish`.

        For entries written elsewhere (a bundle from another user): their signer is not trusted
        here, so the caller's decision to import them stands in for the signature check. Every
        digest is verified (header, pickle, array data) and the pickle's SHA-256 must match the
        header's; only the signer and signature in the header change (the checksum stays, so the
        keys of dependents still match). Raises :class:`CorruptEntryError` naming what is wrong.
        """
        where = Path(path)
        with open(where, "r+b", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            hdr = scan(key, where, f, size, None)
            if not hdr.signature or not hdr.pickle_sha256:
                raise CorruptEntryError(key, str(where), "written by an older ndustria, without signatures")
            p_off, p_len = hdr.pickle
            sha256 = hashlib.sha256()
            f.seek(p_off)
            for start in range(0, p_len, CHUNK):
                chunk = f.read(min(CHUNK, p_len - start))
                if not chunk:
                    raise CorruptEntryError(key, str(where), "the file shrank while it was read")
                sha256.update(chunk)
            if sha256.hexdigest() != hdr.pickle_sha256:
                raise CorruptEntryError(key, str(where), "pickle SHA-256 mismatch")
            f.seek(0)
            prefix = f.read(PREFIX.size)
            meta = json.loads(f.read(PREFIX.unpack(prefix)[2]))  # checked by scan's header digest
            signed = Header(hdr.pickle, hdr.buffers, hdr.pickle_digest, hdr.buffers_digest, hdr.pickle_sha256,
                             self.keyring.signer)
            meta.update(signer=signed.signer, signature=self.keyring.sign(signed_message(key, signed)))
            head = dumps(meta)
            if PREFIX.size + len(head) + DIGEST > p_off:
                raise CorruptEntryError(key, str(where), "its header leaves no room for a signature")
            f.seek(0)
            write_all(f.fileno(), framed(head, p_off), 0)
            if self.fsync:
                os.fsync(f.fileno())
        return EntryInfo(key, os.fspath(where), size, hdr.checksum)

    def publish(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Move a whole entry file (from :meth:`tmp_file`, checked by :meth:`adopt`) into place
        atomically, replacing any entry of ``key``; returns the entry's path."""
        final = self._file(key)
        _rename_into_place(os.fspath(path), final)
        if self.fsync:
            _sync_dir(final)
        else:
            self._to_sync(final)
        return Path(final)

    def sync(self, written: Iterable[str] = ()) -> None:
        """Make every entry written so far durable (after saves with ``defer=True`` or ``fsync=False``):
        commit the small ones and fsync their table, and fsync each entry file this store wrote since
        the last sync, and those of ``written`` (paths of entries other processes or stores wrote; rows,
        ``objects.sqlite#<key>``, are in the table), with their folders; more than :data:`SYNC_FILES`
        files take one ``syncfs`` of the cache's filesystem instead (``os.sync()`` where syncfs is
        unavailable). Not a syncfs every time: it also writes out whatever else is dirty on that
        filesystem (another program's files); a cold run of 3,000 tiny tasks paid 0.1-0.5 s for a
        benchmark's earlier writes."""
        self.flush()
        for path in written:
            if path and not self.is_row(path):
                self._to_sync(path)
        with self._syncing:
            self._sync_taken()

    def _sync_taken(self) -> None:
        """Sync the files listed so far (under ``_syncing``: a caller returns only once what it listed,
        and what another caller took before it, is durable)."""
        with self._unsynced_lock:
            files, self._unsynced = self._unsynced, set()
        try:
            if files is None:
                fd = os.open(self.root, os.O_RDONLY)
                try:
                    if _SYNCFS is None or _SYNCFS(fd) != 0:
                        os.sync()
                finally:
                    os.close(fd)
                return
            for path in files:
                fsync_path(path, missing_ok=True)  # replaced or removed since: nothing of it to keep
            for folder in {os.path.dirname(path) for path in files}:  # the renames, and a new folder's own entry
                fsync_path(folder, missing_ok=True)
            if files:
                fsync_path(self._objects_str)
            self.blobs.sync()  # and the cache's folder (a new log's name)
        except BaseException:
            with self._unsynced_lock:  # not known durable: the next sync tries again
                self._unsynced = None if files is None or self._unsynced is None else self._unsynced | files
            raise

    def _write_error(self, key: str, exc: OSError | sqlite3.Error) -> CacheWriteError:
        if isinstance(exc, sqlite3.Error):  # the small entries' table: the OS reason behind SQLite's code
            code = _SQLITE_ERRNO.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF, errno.EIO)
            why = os.strerror(code)
        else:
            code, why = exc.errno, exc.strerror or str(exc)
        return CacheWriteError(
            f"cannot write the result {key} to the cache directory {self.root}: {why}. Free disk space, make "
            "the directory writable, or choose another cache directory (Pipeline(cache_dir=...)); "
            "Pipeline(on_cache_error='warn') runs without caching instead", code, str(self.root), why
        )

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[tuple[Path, Any, int]]:
        path = Path(self._file(key))
        blob = self.blobs.get(key)
        if blob is not None:
            yield Path(self._row_name(key)), io.BytesIO(blob), len(blob)
            return
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - only a missing file means KeyError
        except FileNotFoundError:
            raise KeyError(key) from None
        with f:
            yield path, f, os.fstat(f.fileno()).st_size

    def load(self, key: str, *, mmap: bool = False) -> object:
        """Verify and unpickle an entry; arrays are writable views of one read buffer.

        With ``mmap=True`` arrays are copy-on-write views of a memory map of the file:
        nothing of them is read until used, and their bytes are not verified.
        Raises KeyError if absent, CorruptEntryError (without unpickling) if damaged.
        """
        blob = self.blobs.get(self._valid(key))
        if blob is not None:  # a small entry: checked and unpickled where it lies, no copy
            return self._load_row(key, memoryview(blob))
        with self._open(key) as (path, f, size):
            if mmap and isinstance(f, io.BytesIO):  # a small entry: nothing worth mapping
                mmap = False
            if mmap:
                hdr, _ = read_header(key, path, f, size)
                buf = memoryview(_mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY))
                p_off, p_len = hdr.pickle
                if xxhash.xxh3_128_hexdigest(buf[p_off : p_off + p_len]) != hdr.pickle_digest:
                    raise CorruptEntryError(key, str(path), "pickle checksum mismatch")
            else:
                buf = _buffer(size)
                hdr = scan(key, path, f, size, buf)
        p_off, p_len = hdr.pickle
        self._check_signature(key, path, hdr, buf[p_off : p_off + p_len])
        buffers = [buf[off : off + n] for off, n in hdr.buffers]
        return pickle.loads(buf[p_off : p_off + p_len], buffers=buffers)

    def _load_row(self, key: str, buf: memoryview) -> object:
        path = self._row_name(key)
        hdr = parse(key, path, buf, len(buf))
        p_off, p_len = hdr.pickle
        if xxhash.xxh3_128_hexdigest(buf[p_off : p_off + p_len]) != hdr.pickle_digest:
            raise CorruptEntryError(key, str(path), "pickle checksum mismatch")
        buffers_digest = xxhash.xxh3_128()
        for off, n in hdr.buffers:
            buffers_digest.update(buf[off : off + n])
        if buffers_digest.hexdigest() != hdr.buffers_digest:
            raise CorruptEntryError(key, str(path), "array data checksum mismatch")
        self._check_signature(key, path, hdr, buf[p_off : p_off + p_len])
        return pickle.loads(buf[p_off : p_off + p_len], buffers=[buf[off : off + n] for off, n in hdr.buffers])

    def verify(self, key: str) -> None:
        """Check every digest of an entry without unpickling it; raises CorruptEntryError or KeyError."""
        with self._open(key) as (path, f, size):
            scan(key, path, f, size, None)

    def remove(self, key: str) -> bool:
        """Delete an entry; False if there was none."""
        path = self.path(key)
        removed = self.blobs.delete(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return removed
        return True

    def keys(self) -> Iterator[str]:
        """Keys of all stored entries (in no particular order)."""
        small = set(self.blobs.keys())
        yield from small
        for key in self._file_keys():
            if key not in small:
                yield key

    def _file_keys(self) -> Iterator[str]:
        with os.scandir(self._objects) as subdirs:
            for sub in subdirs:
                if not sub.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(sub.path) as entries:
                    for e in entries:
                        if e.name[:2] == sub.name and _KEY_RE.fullmatch(e.name) and e.is_file():
                            yield e.name

    def info(self, key: str) -> EntryInfo | None:
        """Size and checksum of an entry from its header (data is not read); None if absent."""
        row = self.blobs.lookup(key)
        if row is not None:
            return EntryInfo(key, self._row_name(key), row[0], row[1], row[2] or 0.0)
        try:
            with self._open(key) as (path, f, size):
                hdr, _ = read_header(key, path, f, size)
        except KeyError:
            return None
        return EntryInfo(key, os.fspath(path), size, hdr.checksum, hdr.created)

    def stats(self) -> dict[str, tuple[int, float]]:
        """{key: (size in bytes, when written)} of every entry: one query for the small ones, a stat for each
        file; nothing is read."""
        out = self.blobs.stats()
        for key in self._file_keys():
            if key not in out:
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(self._file(key))
                    out[key] = (st.st_size, st.st_mtime)
        return out

    def open_entry(self, key: str) -> tuple[int, BinaryIO]:
        """The bytes of an entry as stored (size, a binary stream to read and close), whichever its
        kind: what a bundle carries. KeyError if absent."""
        blob = self.blobs.get(key)
        if blob is not None:
            return len(blob), io.BytesIO(blob)
        try:
            f = open(self._file(key), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise KeyError(key) from None
        return os.fstat(f.fileno()).st_size, f

    def clean_tmp(self, older_than: float = 3600) -> int:
        """Remove temp files not modified for ``older_than`` seconds; returns how many.

        Files of live writer threads of this process are kept whatever their age.
        """
        now, removed = time.time(), 0
        alive = {t.ident for t in threading.enumerate()}
        with os.scandir(self._tmp) as entries:
            for e in entries:
                m = _TMP_RE.fullmatch(e.name)
                if not m or (int(m[1]) == os.getpid() and int(m[2]) in alive):
                    continue
                try:
                    if now - e.stat(follow_symlinks=False).st_mtime < older_than:
                        continue
                    os.unlink(e.path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed
