"""The bytes of a cache entry: how a result is framed, checksummed and signed, and how those
bytes are checked when read back (DESIGN.md step 6). Files, folders and renames are
:mod:`ndustria.store.entries`' job; this module only encodes and verifies.

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

``buffers_digest`` is one streaming xxh3_128 over all buffers in order; an entry's content
checksum is :func:`content_checksum` of its two region digests.

Signatures (format 2). ``signature`` is HMAC-SHA256, under the writer's secret key
(:mod:`ndustria.store.trust`; ``signer`` is the key's public id), of :func:`signed_message`: the
key, the regions, the SHA-256 of the pickle bytes and both xxh3 digests. The pickle -- the only
part that can run code when loaded -- is covered by SHA-256; array data by the signed xxh3_128
digest (a forged xxh3 collision could alter array values, not run code).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import xxhash

from ndustria.errors import CorruptEntryError, ResultNotPicklableError
from ndustria.store.trust import Keyring

FORMAT_VERSION: int = 2  # 2: entries are signed (format-1 entries read as untrusted misses)
MAGIC = b"NDUSTRIA"
PREFIX = struct.Struct("<8sII")
DIGEST = 16
ALIGN = 64
CHUNK = 4 << 20
ZERO_DIGEST = "0" * 32
EMPTY_DIGEST = xxhash.xxh3_128_hexdigest(b"")  # buffers_digest of an entry without out-of-band buffers
_UNSIGNED = 1  # the format before signatures
THREADED = 64 << 20  # entries this large are hashed by a helper thread while read


@dataclass(frozen=True)
class Header:
    pickle: tuple[int, int]
    buffers: list[tuple[int, int]]
    pickle_digest: str
    buffers_digest: str
    pickle_sha256: str = ""
    signer: str = ""
    signature: str = ""
    created: float = 0.0  # when the entry was written (not signed: bookkeeping only)

    @property
    def checksum(self) -> str:
        return content_checksum(self.pickle_digest, self.buffers_digest)


def content_checksum(pickle_digest: str, buffers_digest: str) -> str:
    """An entry's content checksum, from its two region digests."""
    return xxhash.xxh3_128_hexdigest(f"{pickle_digest}:{buffers_digest}".encode())


_HEX = re.compile(r"[0-9a-f]*")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]*")


def signed_message(key: str, hdr: Header) -> bytes:
    """What a signature covers: the sorted, compact JSON of the key, the regions and the digests.

    Written by hand when every string is plain (hex digests, a key of ``[A-Za-z0-9_-]``): the same
    bytes as ``json.dumps`` (a test checks it), at a fraction of its cost on every load. Anything else
    (a header someone edited) goes through ``json.dumps``, whose escaping keeps messages unambiguous.
    """
    if (_PLAIN_KEY.fullmatch(key) and _HEX.fullmatch(hdr.pickle_sha256) and _HEX.fullmatch(hdr.pickle_digest)
            and _HEX.fullmatch(hdr.buffers_digest) and type(hdr.pickle[0]) is int and type(hdr.pickle[1]) is int
            and all(type(o) is int and type(n) is int for o, n in hdr.buffers)):
        buffers = ",".join(f"[{o},{n}]" for o, n in hdr.buffers)
        return (f'{{"buffers":[{buffers}],"buffers_digest":"{hdr.buffers_digest}","format":{FORMAT_VERSION},'
                f'"key":"{key}","pickle":[{hdr.pickle[0]},{hdr.pickle[1]}],"pickle_digest":"{hdr.pickle_digest}",'
                f'"pickle_sha256":"{hdr.pickle_sha256}"}}').encode()
    return dumps({"format": FORMAT_VERSION, "key": key, "pickle": list(hdr.pickle),
                  "buffers": [list(r) for r in hdr.buffers], "pickle_sha256": hdr.pickle_sha256,
                  "pickle_digest": hdr.pickle_digest, "buffers_digest": hdr.buffers_digest})


def layout(key: str, n_pickle: int, sizes: list[int],
            created: float) -> tuple[dict[str, Any], list[tuple[int, int]], int]:
    """The header (with placeholder digests), the regions and the data start of an entry.

    Offsets change the header's length, so the start is guessed (from the header's usual
    size) and moved on until the header fits before it.
    """
    meta: dict[str, Any] = {"key": key, "created": created, "pickle_digest": ZERO_DIGEST,
                            "buffers_digest": ZERO_DIGEST, "pickle_sha256": "0" * 64, "signer": "0" * 16,
                            "signature": "0" * 64}
    start = first_guess(key, len(sizes))
    while True:
        regions, pos = [(start, n_pickle)], start + n_pickle
        for n in sizes:
            regions.append((align(pos), n))
            pos = align(pos) + n
        meta.update(pickle=regions[0], buffers=regions[1:])
        need = align(PREFIX.size + len(dumps(meta)) + DIGEST)
        if need <= start:
            return meta, regions, start
        start = need


def first_guess(key: str, n_buffers: int) -> int:
    return align(PREFIX.size + DIGEST + 380 + len(key) + 48 * n_buffers)


def header_block(key: str, meta: dict[str, Any], regions: list[tuple[int, int]], start: int, p_digest: str,
                  b_digest: str, sha256: str, keyring: Keyring) -> tuple[bytes, Header]:
    """Prefix, signed JSON header, its digest and the zero padding up to ``start``: the entry's first bytes."""
    hdr = Header(regions[0], regions[1:], p_digest, b_digest, sha256, keyring.signer)
    meta.update(pickle_digest=p_digest, buffers_digest=b_digest, pickle_sha256=sha256, signer=hdr.signer,
                signature=keyring.sign(signed_message(key, hdr)))
    return framed(dumps(meta), start), hdr


def framed(head: bytes, start: int) -> bytes:
    """Prefix, JSON header, the digest of both, zero padding up to ``start`` (where the pickle begins)."""
    block = PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)) + head
    block += xxhash.xxh3_128_digest(block)
    assert len(block) <= start
    return block + bytes(start - len(block))


def small_entry(key: str, data: bytes, keyring: Keyring, created: float) -> tuple[bytes, str]:
    """The whole file of an entry with no out-of-band buffers, and its checksum.

    The same bytes as :func:`layout` + :func:`header_block` + the pickle (a test checks it),
    with the JSON written by hand: json.dumps of these dicts cost ~20 µs per result, a good
    part of what storing a tiny task's result costs an engine. Every string in it is hex or a
    key (``[A-Za-z0-9_-]``), so nothing needs escaping.
    """
    n, signer = len(data), keyring.signer
    p_digest, sha256 = xxhash.xxh3_128_hexdigest(data), hashlib.sha256(data).hexdigest()
    head_start = f'{{"buffers":[],"buffers_digest":"{EMPTY_DIGEST}","created":{created!r},"key":"{key}","pickle":['
    head_end = f'],"pickle_digest":"{p_digest}","pickle_sha256":"{sha256}","signature":"'
    fixed = PREFIX.size + len(head_start) + len(head_end) + 64 + len(f'","signer":"{signer}"}}') + DIGEST
    start = first_guess(key, 0)
    while True:
        need = align(fixed + len(f"{start},{n}"))
        if need <= start:
            break
        start = need
    region = f"{start},{n}"
    message = (f'{{"buffers":[],"buffers_digest":"{EMPTY_DIGEST}","format":{FORMAT_VERSION},"key":"{key}",'
               f'"pickle":[{region}],"pickle_digest":"{p_digest}","pickle_sha256":"{sha256}"}}')
    head = f'{head_start}{region}{head_end}{keyring.sign(message.encode())}","signer":"{signer}"}}'.encode()
    return framed(head, start) + data, content_checksum(p_digest, EMPTY_DIGEST)


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def dumps(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), sort_keys=True).encode()


def write_all(fd: int, data: Any, pos: int, hasher: Any = None) -> int:
    """Write ``data`` at file offset ``pos`` in large chunks, hashing each chunk while it is in cache."""
    view = memoryview(data).cast("B")
    for start in range(0, len(view), CHUNK):
        chunk = view[start : start + CHUNK]
        if hasher is not None:
            hasher.update(chunk)
        while chunk:
            chunk = chunk[os.write(fd, chunk) :]
    return pos + len(view)


def parse(key: str, path: Path, buf: memoryview, size: int) -> Header:
    """Check magic, version and header digest of an entry; ``buf`` holds at least the header."""

    def bad(reason: str) -> CorruptEntryError:
        return CorruptEntryError(key, str(path), reason)

    if len(buf) < PREFIX.size:
        raise bad(f"truncated ({size} bytes)")
    magic, version, hlen = PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise bad("not an ndustria entry (bad magic bytes)")
    if version > FORMAT_VERSION:
        raise bad(f"written by a newer ndustria (format {version}); upgrade ndustria or remove the entry")
    if version not in (FORMAT_VERSION, _UNSIGNED):
        raise bad(f"unknown format version {version}")
    end = PREFIX.size + hlen
    if len(buf) < end + DIGEST:
        raise bad(f"truncated inside the header ({size} bytes)")
    if xxhash.xxh3_128_digest(buf[:end]) != bytes(buf[end : end + DIGEST]):
        raise bad("header checksum mismatch")
    try:
        head = json.loads(bytes(buf[PREFIX.size : end]))
        p_off, p_len = (int(v) for v in head["pickle"])
        regions = [(int(o), int(n)) for o, n in head["buffers"]]
        hdr = Header((p_off, p_len), regions, str(head["pickle_digest"]), str(head["buffers_digest"]),
                      str(head.get("pickle_sha256", "")), str(head.get("signer", "")),
                      str(head.get("signature", "")), float(head.get("created", 0.0)))
        stored_key = head["key"]
    except (ValueError, TypeError, KeyError) as exc:
        raise bad(f"malformed header ({exc})") from None
    if stored_key != key:
        raise bad(f"the file holds entry {stored_key!r}")
    pos = end + DIGEST
    for off, n in [hdr.pickle, *regions]:
        if off < pos or n < 0 or off % ALIGN:
            raise bad("malformed header (bad region offsets)")
        pos = off + n
    if size < pos:
        raise bad(f"truncated: file has {size} bytes, header says {pos}")
    if size > pos:
        raise bad(f"{size - pos} unexpected trailing bytes")
    return hdr


def read_header(key: str, path: Path, f: Any, size: int) -> tuple[Header, int]:
    """Read and check the header of an open entry; returns it and the file position after it."""
    head = f.read(PREFIX.size)
    if len(head) == PREFIX.size and head[:8] == MAGIC:
        head += f.read(min(PREFIX.unpack(head)[2] + DIGEST, size))
    return parse(key, path, memoryview(head), size), len(head)


def scan(key: str, path: Path, f: Any, size: int, out: memoryview | None) -> Header:
    """Read a whole entry sequentially and check every digest.

    Data goes into ``out`` (a buffer of the file's size) or, if None, through a scratch
    buffer. Each chunk is hashed right after it is read, while it is still in cache: for
    large entries read into ``out``, by a helper thread while the next chunk is read.
    """
    hdr, pos = read_header(key, path, f, size)
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

    scratch = memoryview(bytearray(min(CHUNK, size))) if out is None else None
    with contextlib.ExitStack() as stack:
        pool = None
        if out is not None and size >= THREADED:
            pool = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="ndustria-hash"))
        while pos < size:
            view = out[pos : pos + CHUNK] if out is not None else scratch[: min(CHUNK, size - pos)]
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


def pickle_result(key: str, value: object, in_band_below: int = 0) -> tuple[bytes, list[memoryview]]:
    """The pickle of a result and its out-of-band buffers (numpy arrays' data, not copied); buffers
    smaller than ``in_band_below`` bytes in all go inside the pickle (a small entry needs no layout)."""
    if type(value) in _ATOMS:  # the same bytes as cloudpickle's, without building a pickler (~2 µs)
        return pickle.dumps(value, protocol=5), []
    pickled: list[pickle.PickleBuffer] = []
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=pickled.append)
        views = [b.raw() for b in pickled]
        if views and sum(v.nbytes for v in views) + len(data) < in_band_below:
            return cloudpickle.dumps(value, protocol=5), []
        return data, views
    except Exception as exc:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        raise ResultNotPicklableError(
            f"cannot store the result {key}: a value of type {kind} could not be pickled "
            f"({type(exc).__name__}: {exc}). Return plain data (arrays, dicts, dataclasses) "
            "or make the object picklable (define __reduce__ or __getstate__/__setstate__)."
        ) from exc


def write_large(fd: int, key: str, data: bytes, views: list[memoryview], keyring: Keyring) -> tuple[int, str]:
    """Write an entry with array buffers or a large pickle: data first, hashed while in cache, the header
    last. Returns the file's size and the entry's checksum."""
    meta, regions, start = layout(key, len(data), [v.nbytes for v in views], round(time.time(), 6))
    os.lseek(fd, start, os.SEEK_SET)
    p_hash, b_hash = xxhash.xxh3_128(), xxhash.xxh3_128()
    pos = write_all(fd, data, start, p_hash)
    for (off, _), view in zip(regions[1:], views):
        pos = write_all(fd, bytes(off - pos), pos)
        pos = write_all(fd, view, pos, b_hash)
    block, hdr = header_block(key, meta, regions, start, p_hash.hexdigest(), b_hash.hexdigest(),
                               hashlib.sha256(data).hexdigest(), keyring)
    os.lseek(fd, 0, os.SEEK_SET)
    write_all(fd, block, 0)
    return pos, hdr.checksum
