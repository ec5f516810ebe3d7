"""On-disk result store: atomic, checksummed, zero-copy for numpy arrays.

Directory layout::

    root/FORMAT                              "ndustria-store <version>"
    root/objects/<key[:2]>/<key>             one entry file per result
    root/tmp/<key>.<token><n>-<pid>-<tid>.tmp  entries being written (token: random, per process)

Entry file (integers little-endian)::

    0       b"NDUSTRIA"                  magic, 8 bytes
    8       u32 format version           FORMAT_VERSION
    12      u32 header length H
    16      header, H bytes of UTF-8 JSON:
              {"key", "created", "pickle": [offset, length],
               "buffers": [[offset, length], ...],
               "pickle_digest", "buffers_digest",      (xxh3_128, hex)
               "pickle_sha256", "signer", "signature"} (format 2: see "Signatures")
    16+H    16-byte xxh3_128 digest of bytes [0, 16+H) (magic, version, H, header)
            zero padding to a multiple of 64
            pickle bytes (cloudpickle, protocol 5)
            each out-of-band buffer, starting on a multiple of 64;
            the file ends right after the last region.

``buffers_digest`` is one streaming xxh3_128 over all buffers in order. A writer
writes the data, then the header, to a file in root/tmp, fsyncs it (``fsync=True``)
and renames it into place with ``os.replace``: a reader sees no entry or a complete
one. ``load()`` checks every digest before unpickling anything; arrays come back as
writable views of one page-aligned read buffer. ``load(mmap=True)`` checks the
header and pickle digests only: buffer pages are not read, so they are not verified
(``verify()`` checks everything).

Signatures (format 2). ``signature`` is HMAC-SHA256, under the writer's secret key
(:mod:`ndustria.trust`; ``signer`` is the key's public id), of the key, the regions, the
SHA-256 of the pickle bytes and both xxh3 digests. ``load()`` checks it, after the
digests and before unpickling anything: an entry signed by no trusted key, or a format-1
entry (unsigned), raises :class:`UntrustedEntryError` (a :class:`CorruptEntryError`, so
callers treat it as a miss and recompute). The pickle — the only part that can run code
when loaded — is covered by SHA-256; array data by the signed xxh3_128 digest (a forged
xxh3 collision could alter array values, not run code). ``verify()`` checks checksums only.
An entry written elsewhere (a bundle, :mod:`ndustria.bundle`) comes in through ``tmp_file()``,
``adopt()`` (every digest checked, then re-signed with the local key) and ``publish()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import mmap as _mmap
import os
import pickle
import re
import stat as _stat
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import xxhash

from ndustria.atomic import publish_whole, read_whole
from ndustria.errors import (
    CacheError,
    CacheWriteError,
    CorruptEntryError,
    ResultNotPicklableError,
    UntrustedEntryError,
)
from ndustria.trust import Keyring, load_keyring

try:
    import numpy as _np
except ImportError:  # pragma: no cover - numpy is optional
    _np = None

__all__ = ["FORMAT_VERSION", "EntryInfo", "Store"]

FORMAT_VERSION: int = 2  # 2: entries are signed (format-1 entries read as untrusted misses)
MAGIC = b"NDUSTRIA"
_PREFIX = struct.Struct("<8sII")
_DIGEST = 16
_ALIGN = 64
_CHUNK = 4 << 20
_PAGE = 4096
_THREADED = 64 << 20  # entries this large are hashed by a helper thread while read
_STORE_TAG = "ndustria-store"
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,200}")
_TMP_RE = re.compile(r".*-(\d+)-(\d+)\.tmp")
_O_BINARY = getattr(os, "O_BINARY", 0)
_ZERO_DIGEST = "0" * 32
_EMPTY_DIGEST = xxhash.xxh3_128_hexdigest(b"")  # buffers_digest of an entry without out-of-band buffers


def _load_syncfs() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs  # Linux (glibc, musl)
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()
_UNSIGNED = 1  # the format before signatures


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
    pickle_sha256: str = ""
    signer: str = ""
    signature: str = ""

    @property
    def checksum(self) -> str:
        return _checksum(self.pickle_digest, self.buffers_digest)


def _checksum(pickle_digest: str, buffers_digest: str) -> str:
    """An entry's content checksum, from its two region digests."""
    return xxhash.xxh3_128_hexdigest(f"{pickle_digest}:{buffers_digest}".encode())


def _message(key: str, hdr: _Header) -> bytes:
    """What a signature covers."""
    return _dumps({"format": FORMAT_VERSION, "key": key, "pickle": list(hdr.pickle),
                   "buffers": [list(r) for r in hdr.buffers], "pickle_sha256": hdr.pickle_sha256,
                   "pickle_digest": hdr.pickle_digest, "buffers_digest": hdr.buffers_digest})


def _layout(key: str, n_pickle: int, sizes: list[int],
            created: float) -> tuple[dict[str, Any], list[tuple[int, int]], int]:
    """The header (with placeholder digests), the regions and the data start of an entry.

    Offsets change the header's length, so the start is guessed (from the header's usual
    size) and moved on until the header fits before it.
    """
    meta: dict[str, Any] = {"key": key, "created": created, "pickle_digest": _ZERO_DIGEST,
                            "buffers_digest": _ZERO_DIGEST, "pickle_sha256": "0" * 64, "signer": "0" * 16,
                            "signature": "0" * 64}
    start = _first_guess(key, len(sizes))
    while True:
        regions, pos = [(start, n_pickle)], start + n_pickle
        for n in sizes:
            regions.append((_align(pos), n))
            pos = _align(pos) + n
        meta.update(pickle=regions[0], buffers=regions[1:])
        need = _align(_PREFIX.size + len(_dumps(meta)) + _DIGEST)
        if need <= start:
            return meta, regions, start
        start = need


def _first_guess(key: str, n_buffers: int) -> int:
    return _align(_PREFIX.size + _DIGEST + 380 + len(key) + 48 * n_buffers)


def _header_block(key: str, meta: dict[str, Any], regions: list[tuple[int, int]], start: int, p_digest: str,
                  b_digest: str, sha256: str, keyring: Keyring) -> tuple[bytes, _Header]:
    """Prefix, signed JSON header, its digest and the zero padding up to ``start``: the entry's first bytes."""
    hdr = _Header(regions[0], regions[1:], p_digest, b_digest, sha256, keyring.signer)
    meta.update(pickle_digest=p_digest, buffers_digest=b_digest, pickle_sha256=sha256, signer=hdr.signer,
                signature=keyring.sign(_message(key, hdr)))
    return _framed(_dumps(meta), start), hdr


def _framed(head: bytes, start: int) -> bytes:
    """Prefix, JSON header, the digest of both, zero padding up to ``start`` (where the pickle begins)."""
    block = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head
    block += xxhash.xxh3_128_digest(block)
    assert len(block) <= start
    return block + bytes(start - len(block))


def _small_entry(key: str, data: bytes, keyring: Keyring, created: float) -> tuple[bytes, str]:
    """The whole file of an entry with no out-of-band buffers, and its checksum.

    The same bytes as :func:`_layout` + :func:`_header_block` + the pickle (a test checks it),
    with the JSON written by hand: json.dumps of these dicts cost ~20 µs per result, a good
    part of what storing a tiny task's result costs an engine. Every string in it is hex or a
    key (``[A-Za-z0-9_-]``), so nothing needs escaping.
    """
    n, signer = len(data), keyring.signer
    p_digest, sha256 = xxhash.xxh3_128_hexdigest(data), hashlib.sha256(data).hexdigest()
    head_start = f'{{"buffers":[],"buffers_digest":"{_EMPTY_DIGEST}","created":{created!r},"key":"{key}","pickle":['
    head_end = f'],"pickle_digest":"{p_digest}","pickle_sha256":"{sha256}","signature":"'
    fixed = _PREFIX.size + len(head_start) + len(head_end) + 64 + len(f'","signer":"{signer}"}}') + _DIGEST
    start = _first_guess(key, 0)
    while True:
        need = _align(fixed + len(f"{start},{n}"))
        if need <= start:
            break
        start = need
    region = f"{start},{n}"
    message = (f'{{"buffers":[],"buffers_digest":"{_EMPTY_DIGEST}","format":{FORMAT_VERSION},"key":"{key}",'
               f'"pickle":[{region}],"pickle_digest":"{p_digest}","pickle_sha256":"{sha256}"}}')
    head = f'{head_start}{region}{head_end}{keyring.sign(message.encode())}","signer":"{signer}"}}'.encode()
    return _framed(head, start) + data, _checksum(p_digest, _EMPTY_DIGEST)


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _dumps(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()


def _buffer(n: int) -> memoryview:
    """A writable buffer of ``n`` bytes, not zero-filled when numpy is present.

    Page-aligned, like the file: the kernel copies file pages much more slowly into memory
    whose offset within a page differs (numpy's own allocations start 16 bytes in).
    """
    if _np is None:
        return memoryview(bytearray(n))
    raw = _np.empty(n + _PAGE, _np.uint8)
    start = -raw.ctypes.data % _PAGE
    return memoryview(raw[start : start + n])


def _write_all(fd: int, data: Any, pos: int, hasher: Any = None) -> int:
    """Write ``data`` at file offset ``pos`` in large chunks, hashing each chunk while it is in cache."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), _CHUNK):
        chunk = view[start : start + _CHUNK]
        if hasher is not None:
            hasher.update(chunk)
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]
    return pos + len(view)


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
    if version not in (FORMAT_VERSION, _UNSIGNED):
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
        hdr = _Header((p_off, p_len), regions, str(head["pickle_digest"]), str(head["buffers_digest"]),
                      str(head.get("pickle_sha256", "")), str(head.get("signer", "")),
                      str(head.get("signature", "")))
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


def _read_header(key: str, path: Path, f: Any, size: int) -> tuple[_Header, int]:
    """Read and check the header of an open entry; returns it and the file position after it."""
    head = f.read(_PREFIX.size)
    if len(head) == _PREFIX.size and head[:8] == MAGIC:
        head += f.read(min(_PREFIX.unpack(head)[2] + _DIGEST, size))
    return _parse(key, path, memoryview(head), size), len(head)


def _scan(key: str, path: Path, f: Any, size: int, out: memoryview | None) -> _Header:
    """Read a whole entry sequentially and check every digest.

    Data goes into ``out`` (a buffer of the file's size) or, if None, through a scratch
    buffer. Each chunk is hashed right after it is read, while it is still in cache: for
    large entries read into ``out``, by a helper thread while the next chunk is read.
    """
    hdr, pos = _read_header(key, path, f, size)
    p_hash, b_hash = xxhash.xxh3_128(), xxhash.xxh3_128()
    segments = [(hdr.pickle[0], sum(hdr.pickle), p_hash)]
    segments += [(off, off + n, b_hash) for off, n in hdr.buffers]
    i = 0

    def feed(view: memoryview, pos: int) -> None:
        nonlocal i
        top = pos + len(view)
        while i < len(segments) and segments[i][0] < top:
            lo, hi, hasher = segments[i]
            hasher.update(view[max(lo, pos) - pos : min(hi, top) - pos])
            if hi > top:
                return
            i += 1

    scratch = memoryview(bytearray(min(_CHUNK, size))) if out is None else None
    with contextlib.ExitStack() as stack:
        pool = None
        if out is not None and size >= _THREADED:
            pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="ndustria-hash"))
        while pos < size:
            view = out[pos : pos + _CHUNK] if out is not None else scratch[: min(_CHUNK, size - pos)]
            n = f.readinto(view)
            if not n:
                raise CorruptEntryError(key, str(path), "the file shrank while it was read")
            if pool is not None:
                pool.submit(feed, view[:n], pos)  # one worker: chunks are hashed in order
            else:
                feed(view[:n], pos)
            pos += n
    if p_hash.hexdigest() != hdr.pickle_digest:
        raise CorruptEntryError(key, str(path), "pickle checksum mismatch")
    if b_hash.hexdigest() != hdr.buffers_digest:
        raise CorruptEntryError(key, str(path), "array data checksum mismatch")
    return hdr


_ATOMS = frozenset({int, float, str, bytes, bool, type(None)})


def _pickled(key: str, value: object) -> tuple[bytes, list[memoryview]]:
    """The pickle of a result and its out-of-band buffers (numpy arrays' data, not copied)."""
    if type(value) in _ATOMS:  # the same bytes as cloudpickle's, without building a pickler (~2 µs)
        return pickle.dumps(value, protocol=5), []
    pickled: list[pickle.PickleBuffer] = []
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=pickled.append)
        return data, [b.raw() for b in pickled]
    except Exception as exc:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise ResultNotPicklableError(
            f"cannot store the result {key}: a value of type {kind} could not be pickled "
            f"({type(exc).__name__}: {exc}). Return plain data (arrays, dicts, dataclasses) "
            "or make the object picklable (define __reduce__ or __getstate__/__setstate__)."
        ) from exc


def _write_large(fd: int, key: str, data: bytes, views: list[memoryview], keyring: Keyring) -> tuple[int, str]:
    """Write an entry with array buffers or a large pickle: data first, hashed while in cache, the header
    last. Returns the file's size and the entry's checksum."""
    meta, regions, start = _layout(key, len(data), [v.nbytes for v in views], round(time.time(), 6))
    os.lseek(fd, start, os.SEEK_SET)
    p_hash, b_hash = xxhash.xxh3_128(), xxhash.xxh3_128()
    pos = _write_all(fd, data, start, p_hash)
    for (off, _), view in zip(regions[1:], views):
        pos = _write_all(fd, bytes(off - pos), pos)
        pos = _write_all(fd, view, pos, b_hash)
    block, hdr = _header_block(key, meta, regions, start, p_hash.hexdigest(), b_hash.hexdigest(),
                               hashlib.sha256(data).hexdigest(), keyring)
    os.lseek(fd, 0, os.SEEK_SET)
    _write_all(fd, block, 0)
    return pos, hdr.checksum


def _rename_into_place(tmp: str, final: str) -> None:
    try:
        os.replace(tmp, final)
    except FileNotFoundError:  # the entry's folder objects/<key[:2]> does not exist yet
        os.makedirs(os.path.dirname(final), mode=0o700, exist_ok=True)
        os.replace(tmp, final)


def _sync_dir(final: str) -> None:
    """Make the rename of ``final`` durable (POSIX: fsync its folder)."""
    if os.name != "posix":
        return
    dir_fd = os.open(os.path.dirname(final), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        self._objects = self.root / "objects"
        self._objects_str = os.fspath(self._objects)
        self._tmp = self.root / "tmp"
        self._tmp_str = os.fspath(self._tmp)
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

    def _check_signature(self, key: str, path: Path, hdr: _Header, pickled: memoryview) -> None:
        def untrusted(reason: str) -> UntrustedEntryError:
            return UntrustedEntryError(key, str(path), reason)

        if not hdr.signature:
            raise untrusted("it has no signature (written by an older ndustria); it is recomputed")
        if hashlib.sha256(pickled).hexdigest() != hdr.pickle_sha256:
            raise untrusted("pickle SHA-256 mismatch")
        if not self.keyring.check(hdr.signer, hdr.signature, _message(key, hdr)):
            who = "a key you do not trust" if hdr.signer not in self.keyring.trusted else "a bad signature"
            raise untrusted(f"it is signed by {who} (signer {hdr.signer}); add that key to trusted_keys "
                            "to use results written by others")

    def _tmp_path(self, name: str) -> str:
        return f"{self._tmp_str}/{name}.{_unique()}-{os.getpid()}-{threading.get_ident()}.tmp"

    def path(self, key: str) -> Path:
        """The file of ``key``: root/objects/<key[:2]>/<key>."""
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ValueError(f"invalid store key {key!r}: use 1-200 characters from [A-Za-z0-9_-]")
        return f"{self._objects_str}/{key[:2]}/{key}"

    def contains(self, key: str) -> bool:
        """Whether an entry exists (one stat; the entry is not read). Hot: called once per declared task."""
        if not isinstance(key, str) or "/" in key or key.startswith("."):
            return False
        try:
            return _stat.S_ISREG(os.stat(f"{self._objects_str}/{key[:2]}/{key}").st_mode)
        except (OSError, ValueError):
            return False

    def save(self, key: str, value: object) -> EntryInfo:
        """Store ``value`` atomically under ``key``; numpy arrays are written without copies."""
        final = self._file(key)
        data, views = _pickled(key, value)
        keyring = self.keyring
        tmp = self._tmp_path(key)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        except OSError as exc:
            raise self._write_error(key, exc) from exc
        try:
            try:
                if not views and len(data) <= _CHUNK:  # a small result: one write of the whole file
                    whole, checksum = _small_entry(key, data, keyring, round(time.time(), 6))
                    size = _write_all(fd, whole, 0)
                else:
                    size, checksum = _write_large(fd, key, data, views, keyring)
                if self.fsync:
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
        if self.fsync:
            _sync_dir(final)
        return EntryInfo(key, Path(final), size, checksum)

    # -- entries written elsewhere (bundles: ndustria.bundle) ------------------------------
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
            hdr = _scan(key, where, f, size, None)
            if not hdr.signature or not hdr.pickle_sha256:
                raise CorruptEntryError(key, str(where), "written by an older ndustria, without signatures")
            p_off, p_len = hdr.pickle
            sha256 = hashlib.sha256()
            f.seek(p_off)
            for start in range(0, p_len, _CHUNK):
                chunk = f.read(min(_CHUNK, p_len - start))
                if not chunk:
                    raise CorruptEntryError(key, str(where), "the file shrank while it was read")
                sha256.update(chunk)
            if sha256.hexdigest() != hdr.pickle_sha256:
                raise CorruptEntryError(key, str(where), "pickle SHA-256 mismatch")
            f.seek(0)
            prefix = f.read(_PREFIX.size)
            meta = json.loads(f.read(_PREFIX.unpack(prefix)[2]))  # checked by _scan's header digest
            signed = _Header(hdr.pickle, hdr.buffers, hdr.pickle_digest, hdr.buffers_digest, hdr.pickle_sha256,
                             self.keyring.signer)
            meta.update(signer=signed.signer, signature=self.keyring.sign(_message(key, signed)))
            head = _dumps(meta)
            if _PREFIX.size + len(head) + _DIGEST > p_off:
                raise CorruptEntryError(key, str(where), "its header leaves no room for a signature")
            f.seek(0)
            _write_all(f.fileno(), _framed(head, p_off), 0)
            if self.fsync:
                os.fsync(f.fileno())
        return EntryInfo(key, where, size, hdr.checksum)

    def publish(self, key: str, path: str | os.PathLike[str]) -> Path:
        """Move a whole entry file (from :meth:`tmp_file`, checked by :meth:`adopt`) into place
        atomically, replacing any entry of ``key``; returns the entry's path."""
        final = self._file(key)
        _rename_into_place(os.fspath(path), final)
        if self.fsync:
            _sync_dir(final)
        return Path(final)

    def sync(self) -> None:
        """Make every entry written so far durable: one ``syncfs`` of the cache's filesystem
        (``os.sync()`` where syncfs is unavailable). Used after a batch saved with fsync deferred."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _SYNCFS is None or _SYNCFS(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def _write_error(self, key: str, exc: OSError) -> CacheWriteError:
        why = exc.strerror or str(exc)
        return CacheWriteError(
            f"cannot write the result {key} to the cache directory {self.root}: {why}. Free disk space, make "
            "the directory writable, or choose another cache directory (Pipeline(cache_dir=...)); "
            "Pipeline(on_cache_error='warn') runs without caching instead", exc.errno, str(self.root), why
        )

    @contextlib.contextmanager
    def _open(self, key: str) -> Iterator[tuple[Path, Any, int]]:
        path = self.path(key)
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
        with self._open(key) as (path, f, size):
            if mmap:
                hdr, _ = _read_header(key, path, f, size)
                buf = memoryview(_mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_COPY))
                p_off, p_len = hdr.pickle
                if xxhash.xxh3_128_hexdigest(buf[p_off : p_off + p_len]) != hdr.pickle_digest:
                    raise CorruptEntryError(key, str(path), "pickle checksum mismatch")
            else:
                buf = _buffer(size)
                hdr = _scan(key, path, f, size, buf)
        p_off, p_len = hdr.pickle
        self._check_signature(key, path, hdr, buf[p_off : p_off + p_len])
        buffers = [buf[off : off + n] for off, n in hdr.buffers]
        return pickle.loads(buf[p_off : p_off + p_len], buffers=buffers)

    def verify(self, key: str) -> None:
        """Check every digest of an entry without unpickling it; raises CorruptEntryError or KeyError."""
        with self._open(key) as (path, f, size):
            _scan(key, path, f, size, None)

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
        try:
            with self._open(key) as (path, f, size):
                hdr, _ = _read_header(key, path, f, size)
        except KeyError:
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
