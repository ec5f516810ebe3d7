"""Cache size limit (LRU, sparing the current run), `ndustria cache gc` and `ndustria cache verify`."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from ndustria import ConfigError, Pipeline
from ndustria.show.cli import main
from ndustria.store.entries import Store
from ndustria.store.eviction import parse_age, parse_size, resolve_max_size

KB = 1000


def make(limit=None, name="evict"):
    pipe = Pipeline(name=name, verbose=False, fsync=False, max_cache_size=limit)

    @pipe.AddFunction()
    def blob(i):
        return np.full(100 * KB, i, dtype=np.uint8)  # ~100 kB entries

    return pipe, blob


def stored(cache_dir: Path) -> set[str]:
    return set(Store(cache_dir).keys())


def age(cache_dir: Path, keys, seconds: float) -> None:
    """Pretend the entries were last used ``seconds`` ago."""
    with sqlite3.connect(cache_dir / "catalog.sqlite") as db:
        db.executemany("UPDATE entries SET last_used = ? WHERE key = ?", [(time.time() - seconds, k) for k in keys])


def test_parse_size_and_age() -> None:
    assert parse_size(1234) == 1234
    assert parse_size("10GB") == 10**10
    assert parse_size("1.5 GiB") == int(1.5 * 2**30)
    assert parse_size("500mb") == 500 * 10**6
    assert parse_age("7d") == 7 * 86400
    assert parse_age("30min") == 1800
    assert parse_age(90) == 90
    for bad in ("ten", "10 parsecs", "-1GB"):
        with pytest.raises(ConfigError, match="invalid size"):
            parse_size(bad)
    with pytest.raises(ConfigError, match="invalid age"):
        parse_age("soon")


def test_limit_from_argument_environment_and_config_file(tmp_path: Path, monkeypatch) -> None:
    assert resolve_max_size() is None
    config = Path(tmp_path / "config" / "config.toml")
    config.parent.mkdir()
    config.write_text('max_size = "2GB"\n')
    assert resolve_max_size() == 2 * 10**9
    monkeypatch.setenv("NDUSTRIA_MAX_CACHE_SIZE", "3GB")
    assert resolve_max_size() == 3 * 10**9
    assert resolve_max_size("1MiB") == 2**20
    assert Pipeline(max_cache_size="1kB", verbose=False).max_cache_size == 1000
    with pytest.raises(ConfigError):
        Pipeline(max_cache_size="lots", verbose=False)


def test_least_recently_used_are_evicted_never_the_current_run(cache_dir: Path) -> None:
    pipe, blob = make()
    old = [blob(i) for i in range(5)]
    pipe.run()
    keys = [h.key for h in old]
    for i, key in enumerate(keys):  # entry 0 used longest ago ... entry 4 most recently
        age(cache_dir, [key], 1000 - i)

    pipe, blob = make(limit=f"{450 * KB}B")
    hit = blob(1)  # a cached hit: touched by the run, so it is now recently used
    new = [blob(i) for i in (10, 11)]
    pipe.run()
    left = stored(cache_dir)
    assert {hit.key, *(h.key for h in new)} <= left  # what this run used survives
    assert keys[0] not in left and keys[2] not in left  # the least recently used went first
    assert sum((cache_dir / "objects" / k[:2] / k).stat().st_size for k in left) <= 450 * KB
    assert all(h.result()[0] == i for h, i in zip(new, (10, 11)))
    assert np.array_equal(hit.result(), np.full(100 * KB, 1, dtype=np.uint8))


def test_a_run_larger_than_the_limit_keeps_its_entries(cache_dir: Path, caplog) -> None:
    pipe, blob = make(limit="150kB")
    handles = [blob(i) for i in range(3)]
    pipe.run()
    assert {h.key for h in handles} <= stored(cache_dir)
    assert "over its limit" in caplog.text


def test_cache_gc_by_size_and_age(cache_dir: Path, capsys) -> None:
    pipe, blob = make()
    handles = [blob(i) for i in range(4)]
    pipe.run()
    age(cache_dir, [handles[0].key], 40 * 86400)
    age(cache_dir, [handles[1].key], 2 * 86400)
    assert main(["cache", "gc", "--older-than", "30d", "--yes"]) == 0
    assert stored(cache_dir) == {h.key for h in handles[1:]}
    assert main(["cache", "gc", "--max-size", "250kB", "--yes"]) == 0
    assert stored(cache_dir) == {h.key for h in handles[2:]}  # handles[1] was the least recently used
    out = capsys.readouterr().out
    assert "Removed blob(0)" in out and "Removed blob(1)" in out and "Freed" in out
    assert main(["cache", "gc"]) == 2  # nothing to collect by
    assert "--max-size" in capsys.readouterr().err


def test_cache_verify_removes_damaged_entries(cache_dir: Path, capsys) -> None:
    pipe, blob = make()
    handles = [blob(i) for i in range(3)]
    pipe.run()
    path = cache_dir / "objects" / handles[1].key[:2] / handles[1].key
    with open(path, "r+b") as fh:  # flip one byte of the array data
        fh.seek(-10, 2)
        byte = fh.read(1)
        fh.seek(-10, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert main(["cache", "verify"]) == 1
    out = capsys.readouterr().out
    assert f"Removed damaged entry {handles[1].key}" in out and "2 intact, 1 damaged" in out
    assert stored(cache_dir) == {handles[0].key, handles[2].key}
    assert main(["cache", "verify"]) == 0
    pipe, blob = make()
    again = blob(1)
    pipe.run()  # recomputed
    assert again.result()[0] == 1
