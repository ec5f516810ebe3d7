"""Reports tell the truth about cached runs (issue 18): ``ndustria -t/-m/-p NAME`` report one run (the
latest, or ``--run ID``); a cache hit shows the numbers recorded when it was computed, labelled with that
run; the tables print without plotly. Scripts run as a user runs them, the CLI as a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys

from support import run_python, write_script
from test_cli import cli

from ndustria.record.catalog import Catalog
from ndustria.units import human_seconds

TASKS = """
from ndustria import Pipeline

pipe = Pipeline(name={name!r}, {flags})

@pipe.AddFunction()
def grow(n):
    values = list(range(n))
    return values

@pipe.AddFunction()
def count(values):
    return len(values)

for n in (1000, 50000):
    count(grow(n))
pipe.run()
"""
ALL = "timeit=True, memcheck=True, profiling=True"


def script(tmp_path, name: str, flags: str = ALL) -> None:
    path = write_script(tmp_path / f"{name}.py", TASKS.format(name=name, flags=flags))
    proc = run_python(path, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_of(cache_dir, run_id: int) -> dict:
    catalog = Catalog(cache_dir, readonly=True)
    try:
        return catalog.run(run_id)
    finally:
        catalog.close()


def test_cache_hits_show_the_numbers_of_the_run_that_computed_them(tmp_path, cache_dir):
    script(tmp_path, "compute")
    script(tmp_path, "reuse")  # another script, the same tasks: all four are cache hits
    memory = cli("-m", "reuse")
    assert memory.returncode == 0, memory.stderr
    assert "run it with" not in memory.stdout + memory.stderr
    lines = [line for line in memory.stdout.splitlines() if line.startswith(("grow(", "count("))]
    assert len(lines) == 4 and all("cached" in line and "run 1 (compute, 20" in line for line in lines), lines
    assert all(re.search(r"\d (B|KiB|MiB) ", line) for line in lines)  # heap sizes of the run that computed them
    assert "Pipeline 'reuse', run 2" in memory.stdout and "4 cache hits" in memory.stdout

    profile = cli("-p", "reuse")
    assert profile.returncode == 0, profile.stderr
    assert profile.stdout.count("Task: ") == 4 and profile.stdout.count("computed by run 1 (compute, 20") == 4
    assert "values = list(range(n))" in profile.stdout

    timing = cli("-t", "reuse")
    assert timing.returncode == 0, timing.stderr
    run = run_of(cache_dir, 2)
    # the elapsed time is run 2's own, never a span reaching back into the run that computed the hits
    assert f"Elapsed (run 2, start to end): {human_seconds(run['ended'] - run['started'])}" in timing.stdout
    assert "4 of 4 tasks were cache hits" in timing.stdout and "COMPUTED BY" in timing.stdout


def test_hits_computed_without_the_instrument_say_so_and_what_to_do(tmp_path, cache_dir):
    script(tmp_path, "plain", flags="verbose=True")  # no instruments
    script(tmp_path, "reuse")
    for flag, words in (("-m", "memcheck=True"), ("-p", "profiling=True")):
        proc = cli(flag, "reuse")
        assert proc.returncode == 2
        assert f"run 2 of pipeline 'reuse' had {words}, but its 4 tasks were cache hits, computed by run 1 (plain, " \
               in proc.stderr, proc.stderr
        assert "run it with" not in proc.stderr and "ndustria cache rm" in proc.stderr


def test_t_reports_one_run_the_latest_or_the_one_named(tmp_path, cache_dir):
    script(tmp_path, "compute")
    script(tmp_path, "compute")  # run 2: hits of run 1
    latest = cli("-t", "compute")
    assert latest.returncode == 0 and "Pipeline 'compute', run 2" in latest.stdout, latest.stderr
    first = cli("-t", "compute", "--run", "1")
    assert first.returncode == 0 and "Pipeline 'compute', run 1" in first.stdout, first.stderr
    assert "COMPUTED BY" not in first.stdout and first.stdout.count(" done") == 4
    run = run_of(cache_dir, 1)
    assert f"Elapsed (run 1, start to end): {human_seconds(run['ended'] - run['started'])}" in first.stdout
    assert cli("timeit", "compute", "--run", "1").stdout == first.stdout
    other = cli("-t", "reuse", "--run", "1")
    assert other.returncode == 2 and "run 1 is not a run of pipeline 'reuse': it is a run of pipeline 'compute'" \
        in other.stderr


NO_PLOTLY = "import sys\nsys.modules['plotly'] = None\nfrom ndustria.show.cli import main\nsys.exit(main({args!r}))\n"


def test_tables_print_without_plotly_figures_need_it_only_with_html(tmp_path, cache_dir):
    script(tmp_path, "compute")
    for flag in ("-t", "-m", "-p"):
        proc = subprocess.run([sys.executable, "-c", NO_PLOTLY.format(args=[flag, "compute"])], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, (flag, proc.stderr)
        assert "grow(50000)" in proc.stdout and proc.stderr == ""
    proc = subprocess.run([sys.executable, "-c", NO_PLOTLY.format(args=["-t", "compute", "--html", "t.html"])],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "needs plotly" in proc.stderr and "pip install plotly" in proc.stderr


WRITTEN = """
from ndustria import Pipeline

pipe = Pipeline(name="written", verbose=False)

@pipe.AddFunction()
def scale(n, factor=2):
    return n * factor

@pipe.AddFunction()
def total(a, b):
    return a + b

total(scale(1), {second})
pipe.run()
"""


def test_a_rerun_lists_its_tasks_as_it_wrote_them(tmp_path, cache_dir):
    """A warm re-run of the same calls refers to the previous run's task list (one small row, no names
    made); the same tasks written differently (a keyword, a default spelled out) are listed as written."""
    import sqlite3

    def run(second: str) -> list[str]:
        path = write_script(tmp_path / "written.py", WRITTEN.format(second=second))
        proc = run_python(path, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return sorted(row["task"] for row in tasks_of(-1))

    def tasks_of(index: int) -> list[dict]:
        catalog = Catalog(cache_dir, readonly=True)
        try:
            return catalog.tasks(sorted(r["run_id"] for r in catalog.runs("written"))[index])
        finally:
            catalog.close()

    first = run("scale(2)")
    assert first == ["scale(1)", "scale(2)", "total(scale(1), scale(2))"]
    assert run("scale(2)") == first  # all cache hits, named as the first run named them
    assert {r["status"] for r in tasks_of(0)} == {"done"} and {r["status"] for r in tasks_of(1)} == {"cached"}
    assert [r["store_key"] for r in tasks_of(0)] == [r["store_key"] for r in tasks_of(1)]
    assert run("scale(2)") == first  # the same hits again: the list of the run before
    assert run("scale(n=2)") == ["scale(1)", "scale(n=2)", "total(scale(1), scale(n=2))"]
    assert run("scale(2, factor=2)") == ["scale(1)", "scale(2, factor=2)", "total(scale(1), scale(2, factor=2))"]
    assert run("scale(2, factor=2)")[1] == "scale(2, factor=2)"
    db = sqlite3.connect(cache_dir / "catalog.sqlite")
    try:
        refers = db.execute("SELECT same_as, hits_as FROM run_members ORDER BY run_id").fetchall()
    finally:
        db.close()
    # A list of the same tasks refers to the run that wrote it (the first warm run too: only its hits
    # differ from the cold run's); the same hits refer to the run that found them first.
    assert [r[0] for r in refers] == [None, 1, 1, None, None, 5]
    assert [r[1] for r in refers] == [None, None, 2, 2, 2, 2]
    assert [{r["status"] for r in tasks_of(i)} for i in range(6)] == [{"done"}] + [{"cached"}] * 5


def test_a_list_written_before_hits_were_kept_apart_still_reads(tmp_path):
    """A catalog row of the earlier layout (a re-run referring to the run before for its list and its
    hits together, ``hits_as`` unset) reads as it did: the cached tasks and their cache keys."""
    import sqlite3

    catalog = Catalog(tmp_path)
    try:
        for _ in range(2):
            run_id = catalog.start_run("old", "serial", 1, {})
            catalog.add_tasks(run_id, ["k1", "k2"], ["f", "f"], b"\x01\x01", ["s1", "s2"], None,
                              names=lambda: ["f(1)", "f(2)"])
            catalog.finish_run(run_id, "done")
    finally:
        catalog.close()
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    with db:  # the earlier layout: no such columns (a read-only reader, the CLI, does not add them)
        assert db.execute("SELECT same_as, hits_as FROM run_members WHERE run_id = 2").fetchone() == (1, 1)
        db.execute("ALTER TABLE run_members DROP COLUMN hits_as")
        db.execute("ALTER TABLE run_members DROP COLUMN hits")
        db.execute("PRAGMA user_version = 0")
    db.close()
    catalog = Catalog(tmp_path, readonly=True)
    try:
        rows = catalog.tasks(2)
    finally:
        catalog.close()
    assert [(r["task"], r["status"], r["store_key"]) for r in rows] == [("f(1)", "cached", "s1"),
                                                                         ("f(2)", "cached", "s2")]


def test_an_older_catalog_gains_what_it_lacks_and_a_current_one_is_not_rewritten(tmp_path):
    """Opening a catalog prepares it once: one written before a column existed gets it (and says so in
    its user_version); one that says it is current is opened without a write."""
    import sqlite3

    from ndustria.record.schema import PREPARED

    Catalog(tmp_path).close()
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    with db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == PREPARED
        db.execute("ALTER TABLE run_members DROP COLUMN hits_as")
        db.execute("PRAGMA user_version = 0")
    db.close()
    Catalog(tmp_path).close()
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    try:
        assert "hits_as" in {row[1] for row in db.execute("PRAGMA table_info(run_members)")}
        assert db.execute("PRAGMA user_version").fetchone()[0] == PREPARED
        changes = db.execute("PRAGMA data_version").fetchone()[0]
        db.execute("BEGIN")  # hold a read transaction: a writer would have to wait, a current catalog does not
        Catalog(tmp_path).close()
        db.execute("COMMIT")
        assert db.execute("PRAGMA data_version").fetchone()[0] == changes
    finally:
        db.close()


def test_a_run_finds_its_pipelines_previous_list_in_steps_that_do_not_grow_with_the_history(tmp_path):
    """Registering a run's task list looks up its pipeline's previous run: with other pipelines' runs in
    between it still finds the right one, and the SQLite work it takes (virtual-machine steps, counted,
    not timed) is the same after 20 runs of the pipeline as after 400 (it was read and sorted whole)."""
    catalog = Catalog(tmp_path)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    def register(pipeline: str, keys: list[str]) -> tuple[int, int]:
        run_id = catalog.start_run(pipeline, "serial", 1, {})
        steps[0] = 0
        catalog._db.set_progress_handler(count, 100)
        try:
            catalog.add_tasks(run_id, keys, ["f"] * len(keys), bytes([1] * len(keys)), keys, None,
                              names=lambda: [f"f({k})" for k in keys])
        finally:
            catalog._db.set_progress_handler(None, 0)
        catalog.finish_run(run_id, "done")
        return run_id, steps[0]

    try:
        first, _ = register("a", ["k1", "k2"])
        register("b", ["k9"])  # another pipeline's runs in between are passed over
        second, _ = register("a", ["k1", "k2"])
        same = catalog._db.execute("SELECT same_as, hits_as FROM run_members WHERE run_id = ?", (second,)).fetchone()
        assert tuple(same) == (first, first)
        for _ in range(18):
            register("a", ["k1", "k2"])
        early = register("a", ["k1", "k2"])[1]
        for _ in range(380):
            register("a", ["k1", "k2"])
        late = register("a", ["k1", "k2"])[1]
        assert late <= early + 5, (early, late)
    finally:
        catalog.close()


def test_a_runs_entries_rows_wait_in_its_process_and_are_written_in_key_order(tmp_path, monkeypatch):
    """The entries rows of the results a run stores wait in the recording process: every read there sees
    them, another process sees them once they are written (at the run's end, after ENTRIES_AFTER seconds or
    ENTRIES_HELD rows, or when the catalog closes), and a later row for a key replaces an earlier one."""
    import sqlite3

    from ndustria.record import catalog as catalog_module
    from ndustria.records import TaskReport

    def other_process_keys() -> list[str]:
        db = sqlite3.connect(tmp_path / "catalog.sqlite")
        try:
            return [row[0] for row in db.execute("SELECT key FROM entries ORDER BY key")]
        finally:
            db.close()

    def report(key: str, size: int) -> tuple[TaskReport, tuple[str, str, str]]:
        return TaskReport(key, "done", size=size, checksum="c" * 32), (f"f({key})", "f", "p")

    catalog = Catalog(tmp_path)
    try:
        run_id = catalog.start_run("p", "serial", 1, {})
        catalog.add_tasks(run_id, ["k2", "k1", "k3"], ["f"] * 3, b"\x00\x00\x00", ["", "", ""], None,
                          names=lambda: ["f(k2)", "f(k1)", "f(k3)"])
        catalog.record_reports(run_id, [report("k2", 1), report("k1", 2)])
        assert other_process_keys() == []  # waiting in this process
        assert catalog.entry("k1")["size"] == 2 and [r["key"] for r in catalog.entries()] != []  # read here: written
        assert other_process_keys() == ["k1", "k2"]
        catalog.record_reports(run_id, [report("k3", 3), report("k3", 4)])
        catalog.finish_run(run_id, "done")  # the run's end writes what waits
        assert other_process_keys() == ["k1", "k2", "k3"] and catalog.entry("k3")["size"] == 4
        monkeypatch.setattr(catalog_module, "ENTRIES_AFTER", 0.0)  # the oldest waited long enough: written at once
        catalog.record_reports(run_id, [report("k4", 5)])
        assert other_process_keys() == ["k1", "k2", "k3", "k4"]
        monkeypatch.setattr(catalog_module, "ENTRIES_AFTER", 3600.0)
        monkeypatch.setattr(catalog_module, "ENTRIES_HELD", 2)  # enough rows wait: written together
        catalog.record_reports(run_id, [report("k5", 6)])
        assert "k5" not in other_process_keys()
        catalog.record_reports(run_id, [report("k6", 7)])
        assert other_process_keys()[-2:] == ["k5", "k6"]
        monkeypatch.setattr(catalog_module, "ENTRIES_HELD", 50_000)
        catalog.record_reports(run_id, [report("k7", 8)])
        catalog.remove_entry("k7")  # removing a waiting row: it is not written afterwards
        catalog.record_reports(run_id, [report("k8", 9)])
    finally:
        catalog.close()  # closing writes what waits
    assert "k7" not in other_process_keys() and "k8" in other_process_keys()


def test_held_entries_rows_survive_a_rolled_back_transaction_and_an_exit_without_close(tmp_path):
    """Rows written inside a transaction that rolls back (a Ctrl-C while a submission's reports are
    settled) are held again; a process that exits without closing its catalog still writes what it held."""
    import sqlite3

    script = write_script(tmp_path / "held.py", f"""
        import sys
        from ndustria.record import catalog as catalog_module
        from ndustria.record.catalog import Catalog
        from ndustria.records import TaskReport

        def report(key):
            return TaskReport(key, "done", size=1, checksum="c" * 32), (f"f({{key}})", "f", "p")

        catalog = Catalog({str(tmp_path)!r})
        run_id = catalog.start_run("p", "serial", 1, {{}})
        catalog.add_tasks(run_id, ["k1", "k2", "k3"], ["f"] * 3, bytes(3), [""] * 3, None,
                          names=lambda: ["f(k1)", "f(k2)", "f(k3)"])
        catalog.record_reports(run_id, [report("k1")])  # committed; its entries row held
        catalog_module.ENTRIES_AFTER = 0.0  # the next report writes what is held
        try:
            with catalog.batch():  # one submission's reports, as RunRecorder.settling() writes them
                try:
                    raise KeyboardInterrupt
                finally:
                    catalog.record_reports(run_id, [report("k2")])
        except KeyboardInterrupt:
            pass
        catalog_module.ENTRIES_AFTER = 3600.0
        catalog.record_reports(run_id, [report("k3")])
        sys.exit(0)  # no finish_run, no close()
    """)
    proc = run_python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    try:
        keys = [row[0] for row in db.execute("SELECT key FROM entries ORDER BY key")]
    finally:
        db.close()
    assert keys == ["k1", "k2", "k3"]


def test_task_rows_found_by_row_id_equal_those_found_by_key(tmp_path):
    """A run's reports update its ``task_runs`` rows by the row ids add_tasks wrote them at, and its end counts
    them in table order. Differential: the same run recorded with the row ids known, unknown (each row by its
    key) and wrong (two swapped, another run's rows in between) leaves the same tables."""
    import random

    from ndustria.records import TaskReport

    keys = [f"k{i:03d}" for i in random.Random(5).sample(range(300), 120)]

    def record(root, mangle) -> tuple[list, dict]:
        root.mkdir()
        catalog = Catalog(root)
        try:
            run_id = catalog.start_run("p", "serial", 1, {})
            other = catalog.start_run("q", "serial", 1, {})
            cached = bytes(i % 7 == 0 for i in range(len(keys)))
            catalog.add_tasks(run_id, keys, ["f"] * len(keys), cached, ["" for _ in keys], None,
                              names=lambda: [f"f({k})" for k in keys])
            catalog.add_tasks(other, keys[:5], ["g"] * 5, bytes(5), [""] * 5, None, names=lambda: ["g"] * 5)
            rows = catalog._task_rows[run_id]
            assert dict(catalog._db.execute("SELECT key, rowid FROM task_runs WHERE run_id = ?", (run_id,))) \
                == rows.rowids  # where the rows are
            mangle(catalog, run_id)
            todo = [k for i, k in enumerate(keys) if not cached[i]]
            catalog.set_status(run_id, todo[:10], "running")
            catalog.set_status(run_id, todo[10:12], "skipped", "input failed")
            catalog.record_reports(run_id, [(TaskReport(k, "done", engine="e", wall_s=0.5, size=3, checksum="c"),
                                             (f"f({k})", "f", "p")) for k in todo[12:80]])
            catalog.record_report(run_id, TaskReport(todo[80], "failed", error="boom"))
            catalog.finish_run(run_id, "failed")
            table = [tuple(r) for r in catalog._db.execute(
                "SELECT run_id, key, task, function, status, engine, wall_s, error, store_key FROM task_runs"
                " ORDER BY run_id, key")]
            counts = dict(catalog.run(run_id))
            return table, {k: counts[k] for k in ("n_tasks", "n_cached", "n_done", "n_failed", "n_skipped")}
        finally:
            catalog.close()

    def swap(catalog, run_id):
        at = catalog._task_rows[run_id].rowids
        a, b = list(at)[3], list(at)[40]
        at[a], at[b] = at[b], at[a]

    known = record(tmp_path / "known", lambda catalog, run_id: None)
    by_key = record(tmp_path / "by_key", lambda catalog, run_id: catalog._task_rows[run_id].rowids.clear())
    wrong = record(tmp_path / "wrong", swap)
    assert known == by_key == wrong
    assert known[1] == {"n_tasks": 102, "n_cached": 18, "n_done": 68, "n_failed": 1, "n_skipped": 2}


def test_a_run_listed_twice_counts_every_row_it_has(tmp_path):
    """add_tasks called again for a run (replacing some rows, adding others): the run's end counts every
    row of the run, as by key (found in review: only the first list's row ids were counted)."""
    catalog = Catalog(tmp_path)
    try:
        run_id = catalog.start_run("p", "serial", 1, {})
        a, b = [f"a{i}" for i in range(5)], [f"b{i}" for i in range(5)]
        for listed in (a, a[:2] + b, b[3:] + ["c"]):
            catalog.add_tasks(run_id, listed, ["f"] * len(listed), bytes(len(listed)), [""] * len(listed), None,
                              names=lambda listed=listed: listed)
        catalog.set_status(run_id, ["a0", "b4", "c"], "skipped", "input failed")
        catalog.finish_run(run_id, "done")
        rows = catalog._db.execute("SELECT COUNT(*) FROM task_runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        skipped = catalog._db.execute("SELECT COUNT(*) FROM task_runs WHERE run_id = ? AND status = 'skipped'",
                                      (run_id,)).fetchone()[0]
        assert (rows, skipped) == (11, 3)
        assert catalog.run(run_id)["n_tasks"] == 11 and catalog.run(run_id)["n_skipped"] == 3
    finally:
        catalog.close()
