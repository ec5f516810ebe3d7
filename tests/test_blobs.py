"""Small entries as rows of ``objects.sqlite`` (ndustria.store.blobs): group commit without holding
SQLite's write lock while tasks compute. Rows wait in memory, visible to this process only, and are
written in one short transaction; another process saving into the same cache never waits for a
group to fill (it did: two ipyparallel engines took turns for 0.1 s each, bench_parallel 2.3x slower)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest
from support import AS_IN_A_TERMINAL, run_python, write_script

from ndustria.store import blobs as blobs_module
from ndustria.store.blobs import COMMIT_AFTER, COMMIT_ROWS, FILE, Blobs, _immediate, _move_old_rows


def other_process_sees(root, key: str) -> bool:
    db = sqlite3.connect(root / FILE)
    try:
        return db.execute("SELECT 1 FROM blob_keys WHERE key = ?", (key,)).fetchone() is not None
    finally:
        db.close()


def wait_until(condition, failure: str) -> None:
    """Wait (up to 30 s, a hang guard) until ``condition()``: something another thread does, e.g. the timer's commit."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


def test_rows_wait_in_this_process_until_their_commit(tmp_path):
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"data-a", 1.5, "c" * 32, commit=False)
    assert blobs.get("a" * 32) == b"data-a" and blobs.has("a" * 32)
    assert blobs.lookup("a" * 32) == (6, "c" * 32, 1.5)
    assert blobs.checksums(["a" * 32, "b" * 32]) == {"a" * 32: "c" * 32}
    assert list(blobs.keys()) == ["a" * 32] and blobs.stats() == {"a" * 32: (6, 1.5)}
    assert not other_process_sees(tmp_path, "a" * 32)
    released = []
    blobs.after_commit(lambda: released.append(other_process_sees(tmp_path, "a" * 32)))
    assert released == []  # a key's lock is released only once its row is committed
    blobs.commit()
    assert released == [True] and other_process_sees(tmp_path, "a" * 32)
    assert list(blobs.keys()) == ["a" * 32]


def test_checksums_answers_for_every_stored_key_of_a_long_list_in_any_order(tmp_path, monkeypatch):
    """One query for the whole list (a JSON array): committed rows, waiting rows, keys JSON must escape,
    repeated keys and missing ones; the same answer from the query per 500 keys (an SQLite without JSON)."""
    blobs = Blobs(str(tmp_path))
    stored = {f"{i:032x}": f"{i * 7:032x}" for i in range(1, 1200)}
    stored |= {'quote"key': "q" * 32, "back\\slash": "s" * 32, "tab\tkey": "t" * 32, "é-ключ": "u" * 32,
               "comma": "not,hex"}
    for key, checksum in stored.items():
        blobs.put(key, b"x", 1.0, checksum, commit=False)
    blobs.commit()
    blobs.put("w" * 32, b"waiting", 2.0, "v" * 32, commit=False)  # not committed yet: found too
    asked = [*reversed(stored), "w" * 32, "missing", f"{5:032x}", f"{5:032x}"]
    expected = {**stored, "w" * 32: "v" * 32}
    assert blobs.checksums(asked) == expected
    assert blobs.checksums([f"{5:032x}"]) == {f"{5:032x}": stored[f"{5:032x}"]}
    assert blobs.checksums(["missing"]) == {} and blobs.checksums([]) == {}

    connection = blobs._db

    class NoJson:  # the connection as an SQLite built without JSON would answer
        def execute(self, sql, *params):
            if "json_each" in sql:
                raise sqlite3.OperationalError("no such table: json_each")
            return connection.execute(sql, *params)

    monkeypatch.setattr(Blobs, "_db", property(lambda self: NoJson()))
    assert blobs.checksums(asked) == expected


def test_keys_found_missing_are_asked_again_once_another_writer_adds_rows(tmp_path):
    """checksums() remembers keys it found without a row (a batch's claim re-checks what the run's plan
    looked up) until another writer adds rows: then it asks SQLite again, and finds what another process
    stored. Another connection's commit that adds no rows (the checkpoint thread's) changes nothing. A key
    this process puts is found at once; a connection opened anew remembers nothing."""
    blobs = Blobs(str(tmp_path))
    keys = [f"{i:032x}" for i in range(10)]
    asked: list[str] = []
    blobs._db.set_trace_callback(asked.append)
    assert blobs.checksums(keys) == {}
    asked.clear()
    assert blobs.checksums(keys[2:6]) == {}
    assert asked == ["PRAGMA data_version"]  # nothing else asked: remembered
    other = sqlite3.connect(tmp_path / FILE, isolation_level=None)
    other.execute("PRAGMA user_version = 0")  # a commit that adds no rows, as the checkpoint thread makes
    other.close()
    asked.clear()
    assert blobs.checksums(keys[2:6]) == {}
    assert len(asked) == 2 and "blob_counts" in asked[1]  # the count read, not the keys
    writer = ("import sys\nfrom ndustria.store.blobs import Blobs\n"
              "Blobs(sys.argv[1]).put(sys.argv[2], b'other', 2.0, 'd' * 32)\n")
    proc = subprocess.run([sys.executable, "-c", writer, str(tmp_path), keys[3]], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert blobs.checksums(keys[2:6]) == {keys[3]: "d" * 32}
    blobs.put(keys[4], b"mine", 3.0, "e" * 32, commit=False)
    assert blobs.checksums(keys[2:6]) == {keys[3]: "d" * 32, keys[4]: "e" * 32}
    blobs.commit()
    assert blobs.checksums(keys[2:6]) == {keys[3]: "d" * 32, keys[4]: "e" * 32}
    blobs.put(keys[5], b"mine too", 3.0, "f" * 32)  # committed at once
    assert blobs.checksums(keys[5:6]) == {keys[5]: "f" * 32}
    assert blobs.checksums(keys[6:8]) == {}
    proc = subprocess.run([sys.executable, "-c", writer, str(tmp_path), keys[6]], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    blobs.put(keys[8], b"mine", 3.0, "e" * 32)  # this connection's write sees the other's in the count
    asked.clear()
    assert blobs.checksums(keys[6:8]) == {keys[6]: "d" * 32}

    assert blobs.checksums([keys[9]]) == {}  # an older ndustria writes it in the old layout's table, which
    db = sqlite3.connect(tmp_path / FILE, isolation_level=None)  # another process opening the cache moves over
    db.executescript(OLD_LAYOUT.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS").replace(
        "CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
    db.execute("INSERT INTO blobs VALUES (?, ?, ?, ?)", (keys[9], b"old", 1.0, "g" * 32))
    db.close()
    proc = subprocess.run([sys.executable, "-c", "import sys\nfrom ndustria.store.blobs import Blobs\n"
                           "Blobs(sys.argv[1]).keys()\n", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert blobs.checksums([keys[9]]) == {keys[9]: "g" * 32}

    (tmp_path / "fresh").mkdir()
    fresh = Blobs(str(tmp_path / "fresh"))  # a connection's counts start over: the new one may say what the old said
    assert fresh.checksums(keys[:2]) == {}
    fresh._connection.close()
    fresh._connection = None
    proc = subprocess.run([sys.executable, "-c", writer, str(tmp_path / "fresh"), keys[0]],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert fresh.checksums(keys[:2]) == {keys[0]: "d" * 32}


def test_a_key_looked_up_while_its_row_waits_is_found_after_the_commit(tmp_path):
    """A look-up that finds a key only among the rows waiting for their commit must not remember it as
    missing: this connection's own commit does not clear what is remembered (found in review: a task of a
    batch running a pipeline that declares an earlier task of the batch, then a look-up, computed it twice)."""
    blobs = Blobs(str(tmp_path))
    key, other = "a" * 32, "b" * 32
    assert blobs.checksums([key, other]) == {}
    blobs.put(key, b"data", 1.0, "c" * 32, commit=False)
    assert blobs.checksums([key, other]) == {key: "c" * 32}
    blobs.commit()
    assert blobs.checksums([key]) == {key: "c" * 32} and blobs.checksums([key, other]) == {key: "c" * 32}


NESTED = """
import os, sys
from ndustria import Pipeline

CACHE = sys.argv[1]
LOG = os.path.join(CACHE, "calls.log")


def g(i):
    with open(LOG, "a") as f:
        f.write(f"{i}\\n")
    if i == 100:  # a task of the batch runs a pipeline needing an earlier task of the batch (its row waits)
        inner = Pipeline(name="inner", backend="serial", cache_dir=CACHE, verbose=False)
        h = inner.AddFunction(version="1")(g)(50)
        inner.run()
        return h.result() + 1
    return i


outer = Pipeline(name="outer", backend="serial", cache_dir=CACHE, verbose=False)
hs = [outer.AddFunction(version="1")(g)(i) for i in range(200)]
outer.run()
again = Pipeline(name="again", backend="serial", cache_dir=CACHE, verbose=False)
ag = again.AddFunction(version="1")(g)
others = [ag(i) for i in range(1000, 1100)]
again.look_up()  # keys found missing: remembered
h = ag(50)
again.look_up()
print(h.status, outer.last_scheduler.submissions)
again.run()
print(open(LOG).read().split().count("50"), hs[100].result())
"""


def test_a_result_stored_during_a_batch_is_found_by_later_pipelines_of_the_process(tmp_path):
    """The script of the review: a batch's task runs a pipeline that computes an earlier task of the batch
    while its row waits for the batch's commit; a later pipeline of the same process must find it cached."""
    script = write_script(tmp_path / "nested.py", NESTED)
    proc = run_python(script, str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status, computed = proc.stdout.split("\n")[:2]
    assert status.split()[0] == "cached" and computed.split() == ["1", "51"], proc.stdout


def test_another_process_writes_at_once_while_rows_wait(tmp_path):
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"waiting", 1.0, "c" * 32, commit=False)
    writer = (
        "import sqlite3, sys\n"
        "db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"  # fails at once with 'database is locked' if a group holds the lock
        "db.execute('INSERT INTO blob_data VALUES (1000, ?)', (b'other',))\n"
        "db.execute('INSERT INTO blob_keys VALUES (?, ?, ?, ?, ?)', ('b' * 32, 'd' * 32, 2.0, 5, 1000))\n"
        "db.execute('COMMIT')\n"
    )
    proc = subprocess.run([sys.executable, "-c", writer, str(tmp_path / FILE)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    blobs.commit()
    assert other_process_sees(tmp_path, "a" * 32) and blobs.get("b" * 32) == b"other"


def test_a_full_group_commits_and_the_timer_commits_a_lone_row(tmp_path):
    blobs = Blobs(str(tmp_path))
    for i in range(COMMIT_ROWS):
        blobs.put(f"{i:032x}", b"x", 1.0, "c" * 32, commit=False)
    assert other_process_sees(tmp_path, f"{COMMIT_ROWS - 1:032x}")  # the group's last row wrote it
    blobs.put("e" * 32, b"lone", 1.0, "c" * 32, commit=False)
    # no later write: the timer commits it
    wait_until(lambda: other_process_sees(tmp_path, "e" * 32), "a lone waiting row was never committed")


def test_a_held_group_is_left_to_its_batch_by_the_timer_but_not_by_the_row_limit(tmp_path):
    blobs = Blobs(str(tmp_path))
    with blobs.held():  # a batch in this thread that commits its rows when it ends
        blobs.put("a" * 32, b"held", 1.0, "c" * 32, commit=False)
        time.sleep(4 * COMMIT_AFTER)
        blobs.put("b" * 32, b"held", 1.0, "c" * 32, commit=False)  # past COMMIT_AFTER: still no commit
        assert not other_process_sees(tmp_path, "a" * 32), "the clock committed a held group"
        for i in range(COMMIT_ROWS):
            blobs.put(f"{i:032x}", b"x", 1.0, "c" * 32, commit=False)
        assert other_process_sees(tmp_path, "a" * 32), "a full group is written, held or not"
        blobs.put("d" * 32, b"last", 1.0, "c" * 32, commit=False)
    blobs.commit()  # as the batch does when it ends
    assert other_process_sees(tmp_path, "d" * 32)
    blobs.put("e" * 32, b"lone", 1.0, "c" * 32, commit=False)
    # no longer held: the timer commits again
    wait_until(lambda: other_process_sees(tmp_path, "e" * 32), "the timer stopped committing after a held group")


def test_the_clock_still_commits_a_held_group_that_waits_too_long(tmp_path, monkeypatch):
    monkeypatch.setattr(blobs_module, "HELD_AFTER", 0.3)  # a task of the batch runs far longer than expected
    blobs = Blobs(str(tmp_path))
    with blobs.held():
        blobs.put("a" * 32, b"held", 1.0, "c" * 32, commit=False)
        wait_until(lambda: other_process_sees(tmp_path, "a" * 32), "a held row waited for good")


def test_a_ctrl_c_while_a_commit_releases_locks_still_releases_the_others(tmp_path):
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"x", 1.0, "c" * 32, commit=False)
    ran = []

    def interrupted():
        ran.append("ctrl-c")
        raise KeyboardInterrupt

    for job in (lambda: ran.append(1), interrupted, lambda: ran.append(3)):
        blobs.after_commit(job)
    with pytest.raises(KeyboardInterrupt):
        blobs.commit()
    assert ran == [1, "ctrl-c", 3], "a lock left held after the Ctrl-C"
    assert other_process_sees(tmp_path, "a" * 32)


class InterruptedAfterBegin:
    """A connection whose BEGIN is followed at once by a Ctrl-C (the signal lands as execute returns)."""

    def __init__(self, db):
        self.db = db

    def execute(self, sql, *args):
        out = self.db.execute(sql, *args)
        if sql.startswith("BEGIN"):
            raise KeyboardInterrupt
        return out

    @property
    def in_transaction(self):
        return self.db.in_transaction


def test_a_ctrl_c_right_after_begin_leaves_no_transaction_open(tmp_path):
    db = sqlite3.connect(tmp_path / "t.sqlite", isolation_level=None)
    with pytest.raises(KeyboardInterrupt), _immediate(InterruptedAfterBegin(db)):
        pytest.fail("the block must not run")
    assert not db.in_transaction, "SQLite's write lock kept"
    db.close()


def test_deleting_a_waiting_row(tmp_path):
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"committed", 1.0, "c" * 32)
    blobs.put("b" * 32, b"waiting", 1.0, "c" * 32, commit=False)
    assert blobs.delete("b" * 32) and blobs.delete("a" * 32) and not blobs.delete("f" * 32)
    blobs.commit()
    assert list(blobs.keys()) == [] and not other_process_sees(tmp_path, "a" * 32)


def test_rows_the_timer_could_not_write_keep_waiting_and_fail_the_next_commit(tmp_path, monkeypatch):
    """A batch reports its tasks saved only after its own flush succeeds: rows the timer's commit could
    not write (a full disk) are not dropped; they keep waiting, every commit raises until they are
    written, and the next commit that can write them does."""
    blobs = Blobs(str(tmp_path))
    failures = []

    def full_disk(rows):
        failures.append(len(rows))
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(blobs, "_write", full_disk)
    blobs.put("a" * 32, b"kept", 1.0, "c" * 32, commit=False)
    wait_until(lambda: failures, "the timer never committed")  # it tried to write the row, and could not
    assert blobs.get("a" * 32) == b"kept"  # still waiting, still seen by this process
    try:
        blobs.commit()  # a batch's flush while the disk is still full
    except sqlite3.OperationalError as exc:
        assert "full" in str(exc)
    else:
        raise AssertionError("a commit that could not write its rows reported success")
    monkeypatch.undo()
    blobs.commit()
    assert other_process_sees(tmp_path, "a" * 32)


EXITS = """
import atexit, sys
from ndustria.store.blobs import Blobs

root = sys.argv[1]
late = []
atexit.register(lambda: late.append(Blobs.of(root).put("f" * 32, b"late", 1.0, "c" * 32)))  # runs after the close
blobs = Blobs.of(root)
for i in range(2000):
    blobs.put(f"{i:032x}", b"x" * 100, 1.0, "c" * 32, commit=False)
"""


def test_a_process_folds_its_log_in_at_exit_and_keeps_every_row(tmp_path):
    """A script that exits without closing anything leaves no write-ahead log behind (the next process
    to open the table would read all of it first: 44 ms for 30,000 rows), and no row is lost: not the
    ones waiting at exit, nor one an exit handler running after the close writes."""
    script = tmp_path / "exits.py"
    script.write_text(EXITS)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    db = sqlite3.connect(tmp_path / FILE)
    try:
        assert db.execute("SELECT COUNT(*) FROM blob_keys").fetchone()[0] == 2001
    finally:
        db.close()
    wal = tmp_path / (FILE + "-wal")
    # the late handler's connection stays open at exit: its log holds at most that one row's pages
    assert not wal.exists() or wal.stat().st_size < 64 << 10


def test_syncing_keeps_this_process_reading_what_others_write(tmp_path):
    """``sync()`` must not drop SQLite's locks (closing a descriptor of the database file would): a
    reader that closed next took itself for the last connection and removed the log and its index
    under this one, and this process went on reading a row another process had deleted since
    (``ndustria cache`` then ``ndustria cache rm`` while a kernel is open)."""
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"one", 1.0, "c" * 32)
    blobs.put("b" * 32, b"two", 1.0, "c" * 32)
    blobs.sync()
    reader = ("import sqlite3, sys\n"
              "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "db.execute('SELECT COUNT(*) FROM blob_keys').fetchone()\n"
              "db.close()\n")
    remover = reader.replace("'SELECT COUNT(*) FROM blob_keys').fetchone()",
                             "'DELETE FROM blob_keys WHERE key = ?', ('a' * 32,))")
    for script in (reader, remover):
        proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / FILE)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / (FILE + "-wal")).exists()  # this process's connection still holds the log
    assert list(blobs.keys()) == ["b" * 32] and blobs.get("a" * 32) is None


# The layout before this one: one table, the bytes with the key, and a covering index of (key, checksum).
OLD_LAYOUT = ("CREATE TABLE blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL, created REAL, checksum TEXT);"
              "CREATE INDEX blobs_checksums ON blobs (key, checksum);")


def to_old_layout(path) -> None:
    """Rewrite a table of this layout as an older ndustria wrote it (``blobs``), keeping every row."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript("BEGIN;" + OLD_LAYOUT + "INSERT INTO blobs SELECT k.key, d.data, k.created, k.checksum"
                         " FROM blob_keys k JOIN blob_data d ON d.id = k.id; DROP TABLE blob_keys;"
                         " DROP TABLE blob_data; COMMIT;")
    finally:
        db.close()


def old_rows(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]
    finally:
        db.close()


def row_counts(path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("blob_keys", "blob_data"))
    finally:
        db.close()


def test_rows_of_the_old_layout_are_moved_over_when_the_table_is_opened(tmp_path):
    db = sqlite3.connect(tmp_path / FILE, isolation_level=None)
    db.executescript(OLD_LAYOUT)
    db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?)",
                   [("a" * 32, b"data-a", 1.5, "c" * 32), ("b" * 32, b"bb", 2.5, "d" * 32)])
    db.close()
    blobs = Blobs(str(tmp_path))
    assert blobs.get("a" * 32) == b"data-a" and blobs.get("b" * 32) == b"bb"
    assert blobs.lookup("a" * 32) == (6, "c" * 32, 1.5)
    assert blobs.checksums(["a" * 32, "b" * 32, "e" * 32]) == {"a" * 32: "c" * 32, "b" * 32: "d" * 32}
    assert blobs.stats() == {"a" * 32: (6, 1.5), "b" * 32: (2, 2.5)}
    assert old_rows(tmp_path / FILE) == 0 and row_counts(tmp_path / FILE) == (2, 2)
    blobs.put("c" * 32, b"new", 3.0, "f" * 32)  # new rows go after the moved ones
    assert blobs.get("c" * 32) == b"new" and blobs.get("a" * 32) == b"data-a"


def test_rows_an_older_version_writes_after_the_move_are_moved_at_the_next_open(tmp_path):
    """An older ndustria sharing the cache goes on writing the old table; the next open moves those rows
    too. Of two rows of one key the later written stays, whichever table it was in, and no bytes are
    left without a key."""
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"first", 1.0, "c" * 32)
    blobs.put("n" * 32, b"newer", 5.0, "c" * 32)
    db = sqlite3.connect(tmp_path / FILE, isolation_level=None)
    db.executescript(OLD_LAYOUT)
    db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?)",
                   [("a" * 32, b"later", 2.0, "d" * 32), ("b" * 32, b"other", 2.0, "e" * 32),
                    ("n" * 32, b"older", 4.0, "d" * 32)])
    db.close()
    again = Blobs(str(tmp_path))
    assert again.get("a" * 32) == b"later" and again.lookup("a" * 32) == (5, "d" * 32, 2.0)
    assert again.get("b" * 32) == b"other" and again.get("n" * 32) == b"newer"
    assert row_counts(tmp_path / FILE) == (3, 3) and old_rows(tmp_path / FILE) == 0


def test_an_older_version_still_running_keeps_working_after_the_move(tmp_path):
    """A kernel of an older ndustria, open on the cache while a script of this one moves the old table's
    rows, must go on reading and writing: the emptied table is kept (dropping it failed every statement
    of that process with "no such table"). What it writes is moved at the next open."""
    db = sqlite3.connect(tmp_path / FILE, isolation_level=None)
    db.executescript(OLD_LAYOUT)
    db.execute("INSERT INTO blobs VALUES (?, ?, ?, ?)", ("a" * 32, b"data-a", 1.0, "c" * 32))
    older = sqlite3.connect(tmp_path / FILE, isolation_level=None)  # the older process's connection, open
    assert older.execute("SELECT data FROM blobs WHERE key = ?", ("a" * 32,)).fetchone() == (b"data-a",)
    assert Blobs(str(tmp_path)).get("a" * 32) == b"data-a"  # moved
    assert older.execute("SELECT data FROM blobs WHERE key = ?", ("a" * 32,)).fetchone() is None  # a miss
    older.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?, ?)", ("b" * 32, b"data-b", 2.0, "d" * 32))
    assert older.execute("SELECT data FROM blobs WHERE key = ?", ("b" * 32,)).fetchone() == (b"data-b",)
    older.close()
    db.close()
    assert Blobs(str(tmp_path)).get("b" * 32) == b"data-b"


def test_a_large_old_table_is_moved_a_chunk_per_transaction(tmp_path):
    db = sqlite3.connect(tmp_path / FILE, isolation_level=None)
    db.executescript(OLD_LAYOUT)
    db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?)", [(f"{i:032x}", b"x" * i, float(i), "c" * 32)
                                                              for i in range(7)])
    Blobs(str(tmp_path))  # makes the new tables (and moves the rows)
    db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?)", [(f"{i:032x}", b"y" * i, 10.0 + i, "d" * 32)
                                                              for i in range(3, 12)])
    _move_old_rows(db, chunk=2)
    db.close()
    blobs = Blobs(str(tmp_path))
    assert blobs.stats() == {f"{i:032x}": (i, float(i) if i < 3 else 10.0 + i) for i in range(12)}
    assert all(blobs.get(f"{i:032x}") == (b"x" if i < 3 else b"y") * i for i in range(12))
    assert row_counts(tmp_path / FILE) == (12, 12) and old_rows(tmp_path / FILE) == 0


def test_replacing_or_deleting_a_row_leaves_no_bytes_behind(tmp_path):
    blobs = Blobs(str(tmp_path))
    for value in (b"one", b"two", b"three"):  # a rerun's value replaces the one before
        blobs.put("a" * 32, value, 1.0, "c" * 32)
    blobs.put("b" * 32, b"bee", 1.0, "c" * 32)
    assert blobs.get("a" * 32) == b"three" and blobs.lookup("a" * 32)[0] == 5
    assert row_counts(tmp_path / FILE) == (2, 2)
    assert blobs.delete("a" * 32)
    assert row_counts(tmp_path / FILE) == (1, 1) and blobs.get("b" * 32) == b"bee"
    db = sqlite3.connect(tmp_path / FILE, isolation_level=None)  # ``ndustria cache rm`` of another process
    db.execute("DELETE FROM blob_keys WHERE key = ?", ("b" * 32,))
    db.close()
    assert row_counts(tmp_path / FILE) == (0, 0)


UPGRADE = """
import json, sys
from ndustria import Pipeline
pipe = Pipeline(name="upgrade", verbose=False)

@pipe.AddFunction()
def square(i):
    return {"i": i, "square": i * i}

@pipe.AddFunction()
def total(parts):
    return sum(p["square"] for p in parts)

parts = [square(i) for i in range(50)]
answer = total(parts)
summary = pipe.run()
print(json.dumps({"executed": summary.executed, "answer": answer.result(), "first": parts[7].result()}))
"""


def test_a_cache_of_the_old_layout_answers_a_script_as_before(tmp_path):
    """Upgrading ndustria keeps a cache's small results: a script run on a cache of the old layout finds
    every task cached and gets what it got when it computed them."""
    script = write_script(tmp_path / "upgrade.py", UPGRADE)
    env = {"NDUSTRIA_CACHE_DIR": str(tmp_path / "cache")}

    def run() -> dict:
        proc = run_python(script, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    cold = run()
    to_old_layout(tmp_path / "cache" / FILE)
    runs = [cold, run(), run()]  # the first after the upgrade moves the rows; the next finds them moved
    assert [r["executed"] for r in runs] == [51, 0, 0]
    assert runs[0]["answer"] == runs[1]["answer"] == runs[2]["answer"] == sum(i * i for i in range(50))
    assert runs[0]["first"] == runs[1]["first"] == {"i": 7, "square": 49}
    assert old_rows(tmp_path / "cache" / FILE) == 0


# -- a commit finished by the landing thread (Blobs.commit_soon: the serial backend's batches) -----------
def test_a_commit_landed_on_its_thread_runs_what_waited_only_once_other_processes_see_the_rows(tmp_path):
    """The batch's locks (``then`` and the jobs that waited) are released by the next call that settles the
    commit, and only once another process sees the rows; this process sees them all along."""
    blobs = Blobs(str(tmp_path))
    keys = [f"{i:032x}" for i in range(50)]
    for key in keys:
        blobs.put(key, b"v-" + key.encode(), 1.0, "c" * 32, commit=False)
    seen_at_release: list[bool] = []
    blobs.after_commit(lambda: seen_at_release.append(other_process_sees(tmp_path, keys[0])))
    landed = blobs.commit_soon(lambda: seen_at_release.append(other_process_sees(tmp_path, keys[-1])))
    assert landed is not None
    assert all(blobs.get(key) == b"v-" + key.encode() for key in keys)  # in the transaction, or committed
    assert blobs.checksums(keys) == dict.fromkeys(keys, "c" * 32)
    assert landed.result(timeout=30) is None
    assert seen_at_release == []  # nothing released before this process settles the commit
    blobs.after_commit(lambda: seen_at_release.append(True))  # landed, not settled: nothing left waits for it
    assert seen_at_release == [True]
    blobs.settle()
    assert seen_at_release == [True, True, True]
    blobs.settle()  # nothing in the air: nothing runs twice
    assert len(seen_at_release) == 3


def test_with_nothing_waiting_commit_soon_releases_at_once(tmp_path):
    blobs = Blobs(str(tmp_path))
    released = []
    assert blobs.commit_soon(lambda: released.append(1)) is None and released == [1]


def test_every_write_waits_for_the_commit_in_the_air(tmp_path):
    """A row put while the landing thread commits, a delete, and a plain commit each come after it: the
    rows all land, the deleted one does not come back, and what waited for the first commit is run."""
    blobs = Blobs(str(tmp_path))
    blobs.put("a" * 32, b"first", 1.0, "c" * 32, commit=False)
    blobs.put("b" * 32, b"gone", 1.0, "c" * 32, commit=False)
    released = []
    blobs.commit_soon(lambda: released.append("first"))
    blobs.put("d" * 32, b"second", 1.0, "c" * 32, commit=False)
    assert blobs.delete("b" * 32)
    assert released == ["first"]  # the delete settled the commit before it
    blobs.commit()
    assert other_process_sees(tmp_path, "a" * 32) and other_process_sees(tmp_path, "d" * 32)
    assert not other_process_sees(tmp_path, "b" * 32)


FULL_AT_COMMIT = """
import json, os, resource, signal, sys
from ndustria.store.blobs import Blobs

root = sys.argv[1]
blobs = Blobs.of(root)
blobs.put("0" * 32, b"first", 1.0, "c" * 32)  # the table and its log exist
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
limit = os.path.getsize(os.path.join(root, "objects.sqlite-wal")) + 4096
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
keys = [f"{i + 1:032x}" for i in range(200)]
for key in keys:
    blobs.put(key, os.urandom(2000), 1.0, "c" * 32, commit=False)
released = []
landed = blobs.commit_soon(lambda: released.append(1))
error = landed.exception(timeout=60)  # the log cannot grow: the landing thread's COMMIT fails
out = {"error": repr(error), "released_early": bool(released)}
blobs.settle()
out["released"], out["waiting"] = bool(released), all(blobs.has(key) for key in keys)
try:
    blobs.commit()  # still full: the rows keep waiting and the commit says so
except Exception as exc:
    out["again"] = repr(exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
blobs.commit()
print(json.dumps(out))
"""


def test_a_commit_that_fails_on_the_landing_thread_keeps_its_rows_waiting(tmp_path):
    """A real write error (the log cannot grow: a file size limit) in the landing thread's COMMIT: the
    future says so, the rows wait again in this process, the locks are released all the same, and a
    later commit that can write them does."""
    script = write_script(tmp_path / "full.py", FULL_AT_COMMIT)
    (tmp_path / "cache").mkdir()
    done = run_python(script, str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["error"] != "None" and not out["released_early"], out
    assert out["released"] and out["waiting"] and "again" in out, out
    assert all(other_process_sees(tmp_path / "cache", f"{i + 1:032x}") for i in range(200))


def test_a_serial_run_reports_each_result_only_once_other_processes_can_read_it(tmp_path, monkeypatch):
    """Several batches of tiny tasks, their commits landing on the store's thread while the next batch
    runs (each landing slowed down, as on a slow disk): at the moment each result is reported saved (the
    run's record of it), another connection finds its row, and the results are the values computed."""
    import threading

    from ndustria import Pipeline
    from ndustria.record.recorder import RunRecorder

    class SlowToLand(threading.Event):
        def set(self) -> None:  # the landing thread took the flight: it waits before its COMMIT
            super().set()
            time.sleep(0.1)

    real_init = blobs_module._Flight.__init__

    def slow_flight(self, *args):
        real_init(self, *args)
        self.cleared = SlowToLand()

    monkeypatch.setattr(blobs_module._Flight, "__init__", slow_flight)
    cache = tmp_path / "cache"
    seen: list[bool] = []
    real = RunRecorder.completed

    def completed(self, report):
        seen.append(other_process_sees(cache, report.store_key or report.key))
        real(self, report)

    monkeypatch.setattr(RunRecorder, "completed", completed)
    pipe = Pipeline(name="landing", backend="serial", cache_dir=cache, verbose=False)
    square = pipe.AddFunction()(lambda i: i * i)
    handles = [square(i) for i in range(3 * COMMIT_ROWS)]
    pipe.run()
    assert len(seen) == 3 * COMMIT_ROWS and all(seen), f"{seen.count(False)} reported before their commit"
    assert [h.result() for h in handles] == [i * i for i in range(3 * COMMIT_ROWS)]
    pipe.close()


def test_a_task_after_a_batch_runs_with_that_batchs_keys_free(tmp_path):
    """The batch's commit lands while the scheduler moves on; the single task that follows settles it
    first, so another process never waits on the batch's keys for as long as that task runs."""
    from support import lock_state

    from ndustria import Pipeline

    cache = tmp_path / "cache"
    pipe = Pipeline(name="after", backend="serial", cache_dir=cache, verbose=False)
    part = pipe.AddFunction()(lambda i: i)
    states: list[str] = []

    def total(*values):
        states.extend(lock_state(cache, h.key) for h in parts[:2] + parts[-2:])
        return sum(values)

    parts = [part(i) for i in range(300)]
    whole = pipe.AddFunction()(total)(*parts)
    pipe.run()
    assert whole.result() == sum(range(300))
    assert states == ["free"] * 4, states
    pipe.close()


def test_a_ctrl_c_is_held_until_the_transaction_is_handed_over():
    import signal

    from ndustria.store.blobs import _interrupts_held

    done = []
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (as in a terminal, however launched)
    try:
        with pytest.raises(KeyboardInterrupt), _interrupts_held():
            signal.raise_signal(signal.SIGINT)
            done.append("after the signal")  # the block's statements all run
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


CTRL_C_AT_TAKE_OFF = """
import os, signal, sqlite3, sys
from ndustria import Pipeline
from ndustria.store import blobs

def double(i):
    return 2 * i

real, fired = blobs.Blobs._insert, []
def insert_then_ctrl_c(self, rows):  # the user's Ctrl-C while a batch's transaction is open (once)
    out = real(self, rows)
    if not fired and sys._getframe(1).f_code.co_name == "_take_off":
        fired.append(len(rows))
        os.kill(os.getpid(), signal.SIGINT)
    return out

cache = sys.argv[1]
blobs.Blobs._insert = insert_then_ctrl_c
pipe = Pipeline(name="p", backend="serial", cache_dir=cache, verbose=False)
first = [pipe.AddFunction()(double)(i) for i in range(1200)]
try:
    pipe.run()
except KeyboardInterrupt:
    print("interrupted" if fired else "not-fired")
blobs.Blobs._insert = real
other = sqlite3.connect(os.path.join(cache, "objects.sqlite"), timeout=1)
other.execute("BEGIN IMMEDIATE")  # nobody holds SQLite's write lock
other.execute("ROLLBACK")
stored = other.execute("SELECT count(*) FROM blob_keys").fetchone()[0]
reported = sum(h.status == "done" for h in first)
again = Pipeline(name="p", backend="serial", cache_dir=cache, verbose=False)
handles = [again.AddFunction()(double)(i) for i in range(1200)]
summary = again.run()
print(stored, reported, summary.executed, summary.cached, sum(h.result() for h in handles))
"""


def test_a_ctrl_c_while_a_batch_hands_its_commit_over_keeps_what_it_saved_and_no_lock(tmp_path):
    """A real SIGINT while the batch's rows are written in their transaction: the run stops, no
    transaction stays open (another connection can write), every result reported saved is stored, and
    the same process runs the pipeline again computing only what was not."""
    script = write_script(tmp_path / "ctrl_c.py", CTRL_C_AT_TAKE_OFF)
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], capture_output=True, text=True,
                          timeout=120, **AS_IN_A_TERMINAL)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "interrupted", done.stdout
    stored, reported, executed, cached, total = map(int, lines[1:])
    assert stored >= reported and stored + executed == 1200 and cached == stored, done.stdout
    assert total == 2 * sum(range(1200))
