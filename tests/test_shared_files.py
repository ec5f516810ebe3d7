"""Files one process makes and others read are whole or absent, and readers ride out a file being written.

Each race is set up on purpose here (a writer paused in the middle, a file filled late, many writers
at once); tests/test_stress.py meets the same races by starting real processes together.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support import write_script

from ndustria import ConfigError, NdustriaError, Pipeline
from ndustria.atomic import publish_whole, read_whole
from ndustria.config import read_config_file, write_config_file
from ndustria.errors import CacheError
from ndustria.record.catalog import Catalog
from ndustria.record.schema import SCHEMA
from ndustria.show.cli import main as cli
from ndustria.store.entries import Store
from ndustria.store.trust import load_keyring


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def fill_late(path: Path, data: bytes, after: float = 0.2) -> threading.Thread:
    """Create ``path`` empty now and fill it ``after`` seconds later, as a writer that does not publish
    whole files does (an older ndustria, an editor, a filesystem without hard links)."""
    path.write_bytes(b"")

    def fill() -> None:
        time.sleep(after)
        with open(path, "r+b") as fh:
            fh.write(data)

    thread = threading.Thread(target=fill)
    thread.start()
    return thread


def test_first_writer_wins_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    target = tmp_path / "key"
    assert publish_whole(target, "first\n") is True
    assert publish_whole(target, "second\n") is False
    assert target.read_text() == "first\n" and oct(target.stat().st_mode & 0o777) == "0o600"
    assert publish_whole(target, "third\n", replace=True) is True
    assert target.read_text() == "third\n"
    assert leftovers(tmp_path) == []


def test_a_writer_paused_before_publishing_leaves_no_file_and_loses_to_a_later_writer(tmp_path, monkeypatch):
    target, paused, go = tmp_path / "key", threading.Event(), threading.Event()
    real_fsync = os.fsync
    outcome: list[bool] = []
    slow = threading.Thread(target=lambda: outcome.append(publish_whole(target, "slow\n")))

    def fsync(fd: int) -> None:
        if threading.current_thread() is slow and not paused.is_set():  # its temp file is written
            paused.set()
            go.wait(60)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    slow.start()
    assert paused.wait(60)
    assert not target.exists(), "a reader sees no file while its writer is paused"
    assert publish_whole(target, "fast\n") is True
    go.set()
    slow.join(60)
    assert outcome == [False] and target.read_text() == "fast\n"
    assert leftovers(tmp_path) == []


def test_without_hard_links_the_file_is_still_created_once(tmp_path: Path, monkeypatch) -> None:
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    assert publish_whole(tmp_path / "f", b"one") is True
    assert publish_whole(tmp_path / "f", b"two") is False
    assert (tmp_path / "f").read_bytes() == b"one" and leftovers(tmp_path) == []


def test_a_reader_waits_for_a_file_being_filled_and_then_reports_one_that_stays_bad(tmp_path: Path) -> None:
    path = tmp_path / "value"
    thread = fill_late(path, b"42")
    assert read_whole(path, lambda b: int(b.decode()), fail=lambda e: NdustriaError(str(e))) == 42
    thread.join()
    path.write_text("forty-two")
    with pytest.raises(NdustriaError, match="forty-two"):
        read_whole(path, lambda b: int(b.decode()), fail=lambda e: NdustriaError(str(e)), patience=0.1)


def test_a_key_file_being_written_by_another_writer_is_read_once_whole(tmp_path: Path, monkeypatch) -> None:
    key = tmp_path / "me.key"
    monkeypatch.setenv("NDUSTRIA_SECRET_KEY_FILE", str(key))
    thread = fill_late(key, b"ab" * 32 + b"\n")
    key.chmod(0o600)
    assert load_keyring().key == bytes.fromhex("ab" * 32)
    thread.join()
    key.write_text("")  # and one that stays empty is a clear error that says what to do
    with pytest.raises(ConfigError, match=rf"{key} holds 0 bytes; a key has at least 16.*remove a damaged one"):
        load_keyring()


def test_keys_being_made_in_a_trusted_key_folder_are_not_read_as_keys(tmp_path: Path, monkeypatch) -> None:
    team = tmp_path / "team"
    team.mkdir()
    (team / ".member2.key.1a2b-123-456.tmp").write_text("")  # a member's key, not yet published
    config = tmp_path / "config.toml"
    config.write_text(f'trusted_keys = "{team}"\n')
    monkeypatch.setenv("NDUSTRIA_CONFIG_FILE", str(config))
    monkeypatch.setenv("NDUSTRIA_SECRET_KEY_FILE", str(team / "member1.key"))
    ring = load_keyring()
    assert list(ring.trusted) == [ring.signer]


def test_many_writers_of_the_config_file_and_its_readers_see_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "config" / "config.toml"
    errors: list[BaseException] = []
    seen: set[str] = set()

    def write(i: int) -> None:
        try:
            for j in range(20):
                write_config_file({"cache_dir": f"/caches/{i}-{j}"}, path)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(200):
                seen.add(str(read_config_file(path).get("cache_dir", "")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert seen <= {""} | {f"/caches/{i}-{j}" for i in range(6) for j in range(20)}
    assert read_config_file(path)["cache_dir"] in {f"/caches/{i}-19" for i in range(6)}
    assert leftovers(path.parent) == []


def test_a_format_file_being_filled_is_waited_for(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    thread = fill_late(cache / "FORMAT", b"ndustria-store 2\n")
    Store(cache)
    thread.join()
    (cache / "FORMAT").write_text("")
    with pytest.raises(CacheError, match=rf"{cache} is not an ndustria store \(FORMAT reads ''\)"):
        Store(cache)


def test_a_reader_of_a_catalog_being_created_waits_for_its_tables(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    Store(cache)
    (cache / "catalog.sqlite").write_bytes(b"")  # what a reader may find: the file, no tables yet
    thread = threading.Timer(0.3, lambda: Catalog(cache).close())
    thread.start()
    assert Catalog(cache, readonly=True).runs() == []
    thread.join()


def test_a_catalog_that_never_gets_tables_is_a_clear_error(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    Store(cache)
    (cache / "catalog.sqlite").write_bytes(b"")
    with pytest.raises(CacheError, match=rf"cannot read the ndustria catalog {cache}/catalog.sqlite: .*move it"):
        Catalog(cache, readonly=True)


def test_the_schema_appears_in_one_step(tmp_path: Path, monkeypatch) -> None:
    """A reader polling a catalog being created sees no table or every table, never a few of them
    (the creator pauses before each statement, so a schema made in several steps would show)."""
    real_connect = sqlite3.connect

    def slow_connect(*args, **kwargs):
        db = real_connect(*args, **kwargs)
        db.set_trace_callback(lambda sql: time.sleep(0.02) if "CREATE" in sql else None)
        return db

    monkeypatch.setattr(sqlite3, "connect", slow_connect)
    cache = tmp_path / "cache"
    Store(cache)
    path = cache / "catalog.sqlite"
    script = write_script(tmp_path / "poll.py", f"""
        import json, sqlite3, time
        seen, deadline = set(), time.monotonic() + 120  # a deadlock guard only
        print("polling", flush=True)
        while time.monotonic() < deadline:
            try:
                db = sqlite3.connect("file:{path}?mode=ro", uri=True)
                names = {{r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}}
                db.close()
            except sqlite3.OperationalError:  # no file yet
                continue
            seen.add(len(names))
            if len(names) > 1:
                break
        print(json.dumps(sorted(seen)))
    """)
    poller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert poller.stdout.readline() == "polling\n"
    Catalog(cache).close()
    out, _ = poller.communicate(timeout=300)
    counts = json.loads(out)
    tables = SCHEMA.count("CREATE TABLE") + 1  # and sqlite_sequence
    assert counts and set(counts) <= {0, tables}, counts


def test_run_files_replaced_by_many_runs_are_read_whole(cache_dir: Path, capsys) -> None:
    pipe = Pipeline("shared", verbose=False, timeit=True)

    @pipe.AddFunction()
    def double(x):
        return 2 * x

    handles = [double(i) for i in range(3)]
    pipe.run()
    errors: list[BaseException] = []
    stop = threading.Event()

    def rewrite() -> None:
        try:
            while not stop.is_set():
                pipe.run()
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        for _ in range(50):
            assert cli(["-l", "shared"]) == 0
            out = capsys.readouterr().out
            assert out.startswith("ndustria log of pipeline 'shared'") and out.rstrip().endswith("All done."), out
            timing = (cache_dir / "shared_timing.csv").read_text().splitlines()
            assert timing[0].startswith("task,function,key") and len(timing) == 4, timing
    finally:
        stop.set()
        writer.join(60)
    assert errors == [] and [h.result() for h in handles] == [0, 2, 4]
    assert leftovers(cache_dir) == [] and leftovers(cache_dir / "tmp") == []
