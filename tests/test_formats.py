"""Future formats are reported, never a crash; a full or read-only cache is a clear error, never a partial file."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash
from support import StoredEntry

import ndustria.store.entries as store_module
from ndustria import NdustriaError, NdustriaWarning, Pipeline, TaskError
from ndustria.errors import CacheWriteError
from ndustria.store.blobs import Blobs
from ndustria.store.entries import FORMAT_VERSION, Store

CALLS: list = []


class Log(list):
    def __ndustria_token__(self) -> str:
        return "log"


def make(**kwargs):
    calls = Log()
    pipe = Pipeline(name="formats", verbose=False, fsync=False, **kwargs)

    @pipe.AddFunction()
    def big(n):
        calls.append(("big", n))
        return np.arange(n, dtype=np.int64)

    @pipe.AddFunction()
    def total(values):
        calls.append(("total",))
        return int(values.sum())

    return pipe, big, total, calls


def files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_future_store_format_is_a_clear_error(cache_dir: Path) -> None:
    cache_dir.mkdir(parents=True)
    (cache_dir / "FORMAT").write_text(f"ndustria-store {FORMAT_VERSION + 1}\n")
    pipe, big, total, calls = make()
    with pytest.raises(NdustriaError, match=rf"{cache_dir}.*newer ndustria"):
        total(big(10))
    (cache_dir / "FORMAT").write_text("something else\n")
    with pytest.raises(NdustriaError, match=rf"{cache_dir} is not an ndustria store"):
        make()[1](10)
    assert calls == []


def test_future_entry_version_is_a_miss_with_a_warning(cache_dir: Path) -> None:
    pipe, big, total, calls = make()
    handle = total(big(1000))
    pipe.run()
    path = StoredEntry(Store(cache_dir), handle.deps[0].key)
    raw = bytearray(path.read_bytes())
    hlen = struct.unpack_from("<I", raw, 12)[0]
    struct.pack_into("<I", raw, 8, FORMAT_VERSION + 1)
    raw[16 + hlen : 32 + hlen] = xxhash.xxh3_128_digest(bytes(raw[: 16 + hlen]))
    path.write_bytes(bytes(raw))
    pipe, big, total, calls = make()
    handle = big(1000)
    with pytest.warns(NdustriaWarning, match=f"format {FORMAT_VERSION + 1}"):
        assert handle.result().sum() == 499500
    assert calls == [("big", 1000)]  # recomputed, not a crash


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_cache_is_a_clear_error_and_leaves_nothing(cache_dir: Path, monkeypatch, code) -> None:
    pipe, big, total, calls = make()
    pipe.store  # noqa: B018 - create the cache before the fault
    real_open, real_write = os.open, os.write

    def fail_open(path, flags, mode=0o777, **kw):
        if code == errno.EROFS and str(path).startswith(str(cache_dir / "tmp")):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, mode, **kw)

    def fail_write(fd, data):  # ENOSPC after the first 4 MiB chunk: a partial temp file exists
        if code == errno.ENOSPC and len(data) >= 1 << 20 and getattr(fail_write, "seen", False):
            raise OSError(code, os.strerror(code))
        fail_write.seen = True
        return real_write(fd, data)

    handle = total(big(2_000_000))  # 16 MB
    with monkeypatch.context() as m, pytest.raises(TaskError) as info:
        m.setattr(store_module.os, "open", fail_open)
        m.setattr(store_module.os, "write", fail_write)
        pipe.run()
    message = str(info.value)
    assert "CacheWriteError" in message and str(cache_dir) in message and os.strerror(code) in message
    assert isinstance(info.value.failures[0].exception, CacheWriteError)
    assert files(cache_dir / "tmp") == [] and files(cache_dir / "objects") == []
    pipe, big, total, calls = make()
    again = total(big(2_000_000))
    pipe.run()  # works once the disk is fine again
    assert again.id == handle.id and again.result() == sum(range(2_000_000))  # its input never produced a key


def test_opt_in_uncached_run_warns_and_keeps_results_in_memory(cache_dir: Path, monkeypatch) -> None:
    pipe, big, total, calls = make(on_cache_error="warn")
    pipe.store  # noqa: B018
    real_open = os.open

    def read_only(path, flags, mode=0o777, **kw):
        if str(path).startswith(str(cache_dir / "tmp")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, mode, **kw)

    def read_only_table(self, key, data, created, checksum, commit=True):  # SQLite on a read-only file system says so
        exc = sqlite3.OperationalError("attempt to write a readonly database")
        exc.sqlite_errorcode = sqlite3.SQLITE_READONLY
        raise exc

    monkeypatch.setattr(store_module.os, "open", read_only)
    monkeypatch.setattr(Blobs, "put", read_only_table)
    handle = total(big(1000))
    with pytest.warns(NdustriaWarning, match=r"\(Read-only file system\): results are kept in memory"):
        pipe.run()
    assert handle.result() == 499500 and handle.deps[0].result()[-1] == 999
    assert calls == [("big", 1000), ("total",)]
    assert files(cache_dir / "tmp") == [] and files(cache_dir / "objects") == []
    with pytest.raises(NdustriaError, match="on_cache_error"):
        Pipeline(on_cache_error="ignore")


def test_header_json_is_unchanged_by_a_reader(cache_dir: Path) -> None:
    """Readers never rewrite entries (a shared cache may hold entries of other versions)."""
    store = Store(cache_dir, fsync=False)
    store.save("k", [1])
    before = StoredEntry(store, "k").read_bytes()
    store.load("k")
    store.verify("k")
    assert StoredEntry(store, "k").read_bytes() == before
    hlen = struct.unpack_from("<I", before, 12)[0]
    assert {"signer", "signature", "pickle_sha256"} <= set(json.loads(before[16 : 16 + hlen]))
