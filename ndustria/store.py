"""On-disk result store: atomic, checksummed, zero-copy for numpy arrays.

Directory layout::

    root/FORMAT                              "ndustria-store 1"
    root/objects/<key[:2]>/<key>             one entry file per result
    root/tmp/<key>.<uuid>-<pid>-<tid>.tmp    entries being written

Entry file (integers little-endian)::

    0       b"NDUSTRIA"                  magic, 8 bytes
    8       u32 format version           FORMAT_VERSION
    12      u32 header length H
    16      header, H bytes of UTF-8 JSON:
              {"key", "created", "pickle": [offset, length],
               "buffers": [[offset, length], ...],
               "pickle_digest", "buffers_digest"}      (xxh3_128, hex)
    16+H    16-byte xxh3_128 digest of bytes [0, 16+H) (magic, version, H, header)
            zero padding to a multiple of 64
            pickle bytes (cloudpickle, protocol 5)
            each out-of-band buffer, starting on a multiple of 64;
            the file ends right after the last region.

``buffers_digest`` is one streaming xxh3_128 over all buffers in order. A writer
writes to root/tmp, fsyncs, then ``os.replace``\\ s into place, so a reader sees no
entry or a complete one. ``load()`` checks every digest before unpickling anything.
``load(mmap=True)`` checks the header and pickle digests only: buffer pages are
not read, so they are not verified (``verify()`` checks everything).
"""

from __future__ import annotations

import contextlib
import json
import mmap as _mmap
import os
import pickle
import re
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import xxhash

from ndustria.errors import CacheError, CorruptEntryError, ResultNotPicklableError

try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is optional
    _np = None

__all__ = ["FORMAT_VERSION", "EntryInfo", "Store"]

FORMAT_VERSION: int = 1
MAGIC = b"NDUSTRIA"
_PREFIX = struct.Struct("<8sII")
_DIGEST = 16
_ALIGN = 64
_CHUNK = 4 << 20
_STORE_TAG = "ndustria-store"
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_TMP_RE = re.compile(r".*-(\d+)-(\d+)\.tmp")
_O_BINARY = getattr(os, "O_BINARY", 0)
_ZERO_DIGEST = "0" * 32


@dataclass(frozen=True)
class EntryInfo:
    """A stored entry: its file, size in bytes and content checksum (xxh3_128 hex)."""

    key: str
    path: Path
    size: int
    checksum: str


@dataclass(frozen=True)
class _Header:
    pickle: tuple[int, int]
    buffers: list[tuple[int, int]]
    pickle_digest: str
    buffers_digest: str

    @property
    def checksum(self) -> str:
        return xxhash.xxh3_128_hexdigest(f"{self.pickle_digest}:{self.buffers_digest}".encode())


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _write_all(fd: int, data: Any, hasher: Any = None) -> None:
    """Write a bytes-like object in large chunks, hashing each chunk while it is hot in cache."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _CHUNK):
        chunk = view[start : start + _CHUNK]
        if hasher is not None:
            hasher.update(chunk)
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be fsynced on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse(key: str, path: Path, buf: memoryview, size: int) -> _Header:
    """Check magic, version and header digest of an entry; ``buf`` holds at least the header."""

    def bad(reason: str) -> CorruptEntryError:
        return CorruptEntryError(key, str(path), reason)

    if len(buf) < _PREFIX.size:
        raise bad(f"truncated ({size} bytes)")
    magic, version, hlen = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise bad("not an ndustria entry (bad magic bytes)")
    if version > FORMAT_VERSION:
        raise bad(f"written by a newer ndustria (format {version}); upgrade ndustria or remove the entry")
    if version != FORMAT_VERSION:
        raise bad(f"unknown format version {version}")
    end = _PREFIX.size + hlen
    if len(buf) < end + _DIGEST:
        raise bad(f"truncated inside the header ({size} bytes)")
    if xxhash.xxh3_128_digest(buf[:end]) != bytes(buf[end : end + _DIGEST]):
        raise bad("header checksum mismatch")
    try:
        head = json.loads(bytes(buf[_PREFIX.size : end]))
        p_off, p_len = (int(v) for v in head["pickle"])
        regions = [(int(o), int(n)) for o, n in head["buffers"]]
        hdr = _Header((p_off, p_len), regions, str(head["pickle_digest"]), str(head["buffers_digest"]))
        stored_key = head["key"]
    except (ValueError, TypeError, KeyError) as exc:
        raise bad(f"malformed header ({exc})") from None
    if stored_key != key:
        raise bad(f"the file holds entry {stored_key!r}")
    pos = end + _DIGEST
    for off, n in [hdr.pickle, *regions]:
        if off < pos or n < 0 or off % _ALIGN:
            raise bad("malformed header (bad region offsets)")
        pos = off + n
    if size < pos:
        raise bad(f"truncated: file has {size} bytes, header says {pos}")
    if size > pos:
        raise bad(f"{size - pos} unexpected trailing bytes")
    return hdr


class Store:
    """A directory of results, one checksummed file per key; safe for concurrent processes."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(os.path.abspath(os.path.expanduser(os.fspath(root))))
        self.fsync = fsync
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        try:
            existed = self.root.is_dir()
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not existed or not any(self.root.iterdir()):
                os.chmod(self.root, 0o700)
            self._objects.mkdir(mode=0o700, exist_ok=True)
            self._tmp.mkdir(mode=0o700, exist_ok=True)
            self._check_format()
        except OSError as exc:
            raise CacheError(
                f"cannot use cache directory {self.root}: {exc}; choose a writable directory"
            ) from exc

    def _check_format(self) -> None:
        fmt = self.root / "FORMAT"
        try:
            text = fmt.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            tmp = self._tmp / f"FORMAT.{uuid.uuid4().hex}-{os.getpid()}-{threading.get_ident()}.tmp"
            tmp.write_text(f"{_STORE_TAG} {FORMAT_VERSION}\n", encoding="utf-8")
            os.replace(tmp, fmt)
            return
        tag, _, version = text.partition(" ")
        if tag != _STORE_TAG or not version.isdigit():
            raise CacheError(f"{self.root} is not an ndustria store (FORMAT reads {text[:40]!r})")
        if int(version) > FORMAT_VERSION:
            raise CacheError(
                f"cache directory {self.root} was written by a newer ndustria (store format {version}); "
                "upgrade ndustria or use another cache directory"
            )

    def path(self, key: str) -> Path:
        """The file of ``key``: root/objects/<key[:2]>/<key>."""
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid store key {key!r}: use 1-200 characters from [A-Za-z0-9_-]")
        return self._objects / key[:2] / key

    def contains(self, key: str) -> bool:
        """Whether an entry exists (one stat; the entry is not read)."""
        return os.path.isfile(self.path(key))

    def save(self, key: str, value: object) -> EntryInfo:
        """Store ``value`` atomically under ``key``; numpy arrays are written without copies."""
        final = self.path(key)
        pickled: list[pickle.PickleBuffer] = []
        try:
            data = cloudpickle.dumps(value, protocol=5, buffer_callback=pickled.append)
            views = [b.raw() for b in pickled]
        except Exception as exc:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            raise ResultNotPicklableError(
                f"cannot store the result {key}: a value of type {kind} could not be pickled "
                f"({type(exc).__name__}: {exc}). Return plain data (arrays, dicts, dataclasses) "
                "or make the object picklable (define __reduce__ or __getstate__/__setstate__)."
            ) from exc

        created = round(time.time(), 6)

        def layout(start: int) -> list[tuple[int, int]]:
            regions, pos = [(start, len(data))], start + len(data)
            for v in views:
                pos = _align(pos)
                regions.append((pos, v.nbytes))
                pos += v.nbytes
            return regions

        def header(regions: list[tuple[int, int]], pd: str, bd: str) -> bytes:
            head = {"key": key, "created": created, "pickle": regions[0], "buffers": regions[1:],
                    "pickle_digest": pd, "buffers_digest": bd}
            return json.dumps(head, separators=(",", ":"), sort_keys=True).encode()

        start = _ALIGN
        while True:  # offsets change the header length: settle on a start that fits the header
            regions = layout(start)
            need = _align(_PREFIX.size + len(header(regions, _ZERO_DIGEST, _ZERO_DIGEST)) + _DIGEST)
            if need <= start:
                break
            start = need

        tmp = self._tmp / f"{key}.{uuid.uuid4().hex}-{os.getpid()}-{threading.get_ident()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        try:
            try:
                os.lseek(fd, start, os.SEEK_SET)
                p_hash, b_hash = xxhash.xxh3_128(), xxhash.xxh3_128()
                _write_all(fd, data, p_hash)
                pos = start + len(data)
                for (off, n), view in zip(regions[1:], views):
                    if off > pos:
                        _write_all(fd, bytes(off - pos))
                    _write_all(fd, view, b_hash)
                    pos = off + n
                head = header(regions, p_hash.hexdigest(), b_hash.hexdigest())
                block = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head
                block += xxhash.xxh3_128_digest(block)
                assert len(block) <= start
                os.lseek(fd, 0, os.SEEK_SET)
                _write_all(fd, block + bytes(start - len(block)))
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if self.fsync:
            _fsync_dir(final.parent)
        hdr = _Header(regions[0], regions[1:], p_hash.hexdigest(), b_hash.hexdigest())
        return EntryInfo(key, final, pos, hdr.checksum)

    def load(self, key: str, *, mmap: bool = False) -> object:
        """Verify and unpickle an entry; arrays are writable views of one read buffer.

        With ``mmap=True`` arrays are copy-on-write views of a memory map of the file:
        nothing of them is read until used, and their bytes are not verified.
        Raises KeyError if absent, CorruptEntryError (without unpickling) if damaged.
        """
        path = self.path(key)
        try:
            with open(path, "rb", buffering=0) as f:
                size = os.fstat(f.fileno()).st_size
                if mmap and size > 0:
                    buf = memoryview(_mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY))
                else:
                    buf = memoryview(_np.empty(size, _np.uint8) if _np is not None else bytearray(size))
                    got = 0
                    while got < size and (n := f.readinto(buf[got:])):
                        got += n
                    buf = buf[:got]
        except FileNotFoundError:
            raise KeyError(key) from None
        hdr = _parse(key, path, buf, len(buf))
        p_off, p_len = hdr.pickle
        pickle_bytes = buf[p_off : p_off + p_len]
        if xxhash.xxh3_128_hexdigest(pickle_bytes) != hdr.pickle_digest:
            raise CorruptEntryError(key, str(path), "pickle checksum mismatch")
        buffers = [buf[off : off + n] for off, n in hdr.buffers]
        if not mmap:
            b_hash = xxhash.xxh3_128()
            for b in buffers:
                b_hash.update(b)
            if b_hash.hexdigest() != hdr.buffers_digest:
                raise CorruptEntryError(key, str(path), "array data checksum mismatch")
        return pickle.loads(pickle_bytes, buffers=buffers)

    def _read_header(self, key: str, f: Any) -> tuple[_Header, int]:
        size = os.fstat(f.fileno()).st_size
        head = f.read(_PREFIX.size)
        if len(head) == _PREFIX.size and head[:8] == MAGIC:
            hlen = _PREFIX.unpack(head)[2]
            head += f.read(min(hlen + _DIGEST, size))
        return _parse(key, self.path(key), memoryview(head), size), size

    def verify(self, key: str) -> None:
        """Check every digest of an entry without unpickling it; raises CorruptEntryError or KeyError."""
        path = self.path(key)
        try:
            f = open(path, "rb", buffering=0)  # noqa: SIM115 - only the open may raise KeyError
        except FileNotFoundError:
            raise KeyError(key) from None
        with f:
            hdr, _ = self._read_header(key, f)
            scratch = memoryview(bytearray(_CHUNK))
            digests = []
            for group in ([hdr.pickle], hdr.buffers):
                hasher = xxhash.xxh3_128()
                for off, n in group:
                    f.seek(off)
                    while n > 0:
                        got = f.readinto(scratch[: min(n, _CHUNK)])
                        if not got:
                            raise CorruptEntryError(key, str(path), "truncated while reading")
                        hasher.update(scratch[:got])
                        n -= got
                digests.append(hasher.hexdigest())
        if digests[0] != hdr.pickle_digest:
            raise CorruptEntryError(key, str(path), "pickle checksum mismatch")
        if digests[1] != hdr.buffers_digest:
            raise CorruptEntryError(key, str(path), "array data checksum mismatch")

    def remove(self, key: str) -> bool:
        """Delete an entry; False if there was none."""
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            return False
        return True

    def keys(self) -> Iterator[str]:
        """Keys of all stored entries (in no particular order)."""
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
        path = self.path(key)
        try:
            with open(path, "rb", buffering=0) as f:
                hdr, size = self._read_header(key, f)
        except FileNotFoundError:
            return None
        return EntryInfo(key, path, size, hdr.checksum)

    def clean_tmp(self, older_than: float = 3600) -> int:
        """Remove temp files not modified for ``older_than`` seconds; returns how many.

        Files of live writer threads of this process are kept whatever their age.
        """
        now, removed = time.time(), 0
        alive = {t.ident for t in threading.enumerate()}
        with os.scandir(self._tmp) as entries:
            for e in entries:
                m = _TMP_RE.fullmatch(e.name)
                if not m:
                    continue
                if int(m[1]) == os.getpid() and int(m[2]) in alive:
                    continue
                try:
                    if now - e.stat(follow_symlinks=False).st_mtime < older_than:
                        continue
                    os.unlink(e.path)
                except FileNotFoundError:
                    continue
                removed += 1
        return removed
