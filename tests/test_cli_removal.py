"""Removing cache entries only when clearly asked (issue 14), removals racing other processes, and
``ndustria -l/--log``: the last run's console log and errors, as a user sees them."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import StoredEntry, run_python, write_script
from test_cli import cli, populate

from ndustria import Pipeline
from ndustria.show.cli import main
from ndustria.show.console import LOG_LINES, Console
from ndustria.show.runfiles import log_path, write_log


class Terminal(io.StringIO):
    """A stdin that says it is a terminal, holding what the user types."""

    def isatty(self) -> bool:
        return True


def typed(monkeypatch: pytest.MonkeyPatch, answers: str) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(answers))


def keys(pipe: Pipeline) -> set[str]:
    return set(pipe.store.keys())


# -- asking first --------------------------------------------------------------------
def test_c_lists_and_deletes_nothing_even_when_y_is_piped_in(cache_dir):
    pipe = populate()
    for flag in ("-c", "--cache"):
        proc = cli(flag, input="y\n")
        assert proc.returncode == 0 and "square(2)" in proc.stdout and "4 entries" in proc.stdout
    assert len(keys(pipe)) == 4


def test_clear_states_what_it_removes_then_asks(cache_dir, monkeypatch, capsys):
    pipe = populate()
    typed(monkeypatch, "n\n")
    assert main(["cache", "clear"]) == 2
    out = capsys.readouterr().out
    assert "square(0)" in out and "other(1)" in out and "Remove 4 entries (" in out and "[y/N]" in out
    assert "Nothing removed" in out and len(keys(pipe)) == 4
    typed(monkeypatch, "\n")  # the default is no
    assert main(["cache", "clear"]) == 2 and len(keys(pipe)) == 4
    typed(monkeypatch, "y\n")
    assert main(["cache", "clear"]) == 0 and keys(pipe) == set()


def test_echo_n_into_clear_keeps_every_entry_and_says_to_pass_yes(cache_dir):
    pipe = populate()
    proc = cli("cache", "clear", input="n\n")
    assert proc.returncode == 2 and "--yes" in proc.stderr and "nothing removed" in proc.stderr
    assert "Remove 4 entries" in proc.stderr and "square(1)" in proc.stdout
    assert len(keys(pipe)) == 4
    proc = subprocess.run([sys.executable, "-m", "ndustria", "cache", "clear"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)  # no stdin at all (a batch job)
    assert proc.returncode == 2 and len(keys(pipe)) == 4
    assert cli("-y", "cache", "clear").returncode == 0 and keys(pipe) == set()  # -y before the command too


def test_a_long_list_is_shortened(cache_dir):
    pipe = Pipeline(name="many", verbose=False)

    @pipe.AddFunction()
    def one(i):
        return i

    for i in range(25):
        one(i)
    pipe.run()
    proc = cli("cache", "rm", "one")
    assert proc.returncode == 2 and "... and 15 more" in proc.stdout and "Remove 25 entries" in proc.stderr
    assert len(keys(pipe)) == 25


def test_rm_patterns_remove_exactly_what_they_name(cache_dir):
    pipe = Pipeline(name="patterns", verbose=False)

    @pipe.AddFunction()
    def f(x):
        return x

    @pipe.AddFunction()
    def fg(x):
        return x

    handles = {repr(arg): f(arg) for arg in ([1, 2], 1, 2, 11)}
    g1 = fg(1)
    pipe.run()
    assert cli("cache", "rm", "f(1)", "--yes").stdout.count("Removed") == 1  # not f(11), not f([1, 2])
    assert cli("cache", "rm", "f(*)", "--yes").returncode == 1, "with '(': a task call, not a glob"
    proc = cli("cache", "rm", "f(3)", "--yes")
    assert proc.returncode == 1 and "No cache entry matches 'f(3)'" in proc.stdout
    assert cli("cache", "rm", handles["2"].key[:8], "--yes").stdout.count("Removed f(2)") == 1  # a key prefix
    assert cli("cache", "rm", handles["2"].key[:5], "--yes").returncode == 1  # too short to be a key prefix
    assert cli("cache", "rm", "f", "--yes").stdout.count("Removed") == 2  # a function: f([1, 2]), f(11)
    assert keys(pipe) == {g1.key}
    assert cli("cache", "rm", "f?", "--yes").stdout.count("Removed fg(1)") == 1  # a glob: * or ?, no '('
    assert keys(pipe) == set()
    help_text = cli("cache", "rm", "--help").stdout
    assert "glob" in help_text and "f([1, 2])" in help_text


def test_delete_cache_y_then_n_removes_the_first_and_keeps_the_second(cache_dir, monkeypatch, capsys):
    pipe = Pipeline(name="dflag", verbose=False)

    @pipe.AddFunction()
    def g(x):
        return x

    first, second = g(1), g(2)
    pipe.run()
    typed(monkeypatch, "y\nn\n")
    assert main(["-d", "g"]) == 0
    out = capsys.readouterr().out
    assert "Removed 1 of 2 matching entries" in out
    assert len(keys(pipe)) == 1
    (left,) = keys(pipe)
    assert left in (first.key, second.key)
    typed(monkeypatch, "q\n")
    assert main(["-d", "g"]) == 0 and len(keys(pipe)) == 1  # q(uit): nothing more
    proc = cli("-d", "g", input="y\n")  # piped: refuses
    assert proc.returncode == 2 and "--yes" in proc.stderr and len(keys(pipe)) == 1
    assert cli("-d", "g", "--yes").returncode == 0 and keys(pipe) == set()


def test_gc_without_a_terminal_refuses_unless_yes(cache_dir):
    pipe = populate()
    proc = cli("cache", "gc", "--older-than", "0s")
    assert proc.returncode == 2 and "--yes" in proc.stderr and len(keys(pipe)) == 4
    assert cli("cache", "gc", "--older-than", "0s", "--yes").returncode == 0 and keys(pipe) == set()


def test_verify_removes_only_damaged_entries_and_names_them(cache_dir):
    pipe = populate()
    damaged = next(h for h in pipe.tasks if h.name == "square(2)")
    path = StoredEntry(pipe.store, damaged.key)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = cli("cache", "verify")
    assert proc.returncode == 1 and "Removed damaged entry" in proc.stdout and "square(2)" in proc.stdout
    assert "3 intact, 1 damaged and removed" in proc.stdout
    assert len(keys(pipe)) == 3


# -- removing what another process is reading or computing ------------------------------
READER = """
import builtins, os, sys, time
import numpy as np
import ndustria.store.entries
from ndustria import Pipeline

pipe = Pipeline(name="big", verbose=False)

@pipe.AddFunction()
def big(n):
    return np.arange(n, dtype=np.float64)

handle = big(4_000_000)
pipe.run()
opened, go = os.environ.get("OPENED"), os.environ.get("GO")
if opened:
    def paused_open(path, *args, **kwargs):  # the entry is open: let the test remove it, then read on
        f = builtins.open(path, *args, **kwargs)
        if "objects" in str(path):
            open(opened, "w").close()
            deadline = time.time() + 60
            while not os.path.exists(go) and time.time() < deadline:
                time.sleep(0.01)
        return f
    ndustria.store.entries.open = paused_open
value = handle.result()
print(len(value), float(value.sum()), np.array_equal(value, np.arange(4_000_000, dtype=np.float64)))
"""


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_a_reader_gets_the_whole_value_while_cache_rm_removes_the_entry(cache_dir, tmp_path):
    script = write_script(tmp_path / "reader.py", READER)
    first = run_python(script)
    assert first.returncode == 0 and first.stdout.split()[-1] == "True", first.stderr
    opened, go = tmp_path / "opened", tmp_path / "go"
    reader = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "OPENED": str(opened), "GO": str(go)})
    try:
        wait_for(opened, reader)
        proc = cli("cache", "rm", "big(4000000)", "--yes")
        assert proc.returncode == 0 and "Removed big(4000000) (30.5 MiB)" in proc.stdout, proc.stdout
        assert "0 entries" in cli("cache", "ls").stdout or "empty" in cli("cache", "ls").stdout
        go.touch()
        out, err = reader.communicate(timeout=120)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    assert out.split() == ["4000000", str(float(sum(range(4_000_000)))), "True"]
    assert not list((cache_dir / "tmp").iterdir())


COMPUTER = """
import os, time
import numpy as np
from ndustria import Pipeline

pipe = Pipeline(name="slow", verbose=False)

@pipe.AddFunction(rerun=True)
def slow(n):
    open(os.environ["STARTED"], "w").close()
    deadline = time.time() + 60
    while not os.path.exists(os.environ["GO"]) and time.time() < deadline:
        time.sleep(0.01)
    return np.full(n, 7.0)

handle = slow(1_000_000)
pipe.run()
print("sum", float(handle.result().sum()))
"""


def test_an_entry_removed_while_its_task_is_computed_lands_whole_afterwards(cache_dir, tmp_path):
    script = write_script(tmp_path / "computer.py", COMPUTER)
    started, go = tmp_path / "started", tmp_path / "go"
    env = {"STARTED": str(started), "GO": str(go)}
    go.touch()
    assert run_python(script, env=env).returncode == 0  # the entry exists
    go.unlink()
    started.unlink()
    computer = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, **env})
    try:
        wait_for(started, computer)  # computing it again (rerun=True)
        proc = cli("cache", "rm", "slow(1000000)", "--yes")
        assert proc.returncode == 0 and proc.stdout.count("Removed slow(1000000)") == 1, proc.stdout
        go.touch()
        out, err = computer.communicate(timeout=120)
    finally:
        computer.kill()
    assert computer.returncode == 0 and "sum 7000000.0" in out, err
    listed = cli("cache", "ls").stdout
    assert "slow(1000000)" in listed and "1 entries" in listed  # stored again, whole, and in the catalog
    assert cli("cache", "verify").returncode == 0
    check = "from ndustria.store.entries import Store; import os, sys\n" \
            "s = Store(os.environ['NDUSTRIA_CACHE_DIR']); (k,) = s.keys(); print(float(s.load(k).sum()))"
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "7000000.0", loaded.stderr


# -- -l/--log ----------------------------------------------------------------------------
FAILING = """
import os
from ndustria import Pipeline

pipe = Pipeline(name="failing")

@pipe.AddFunction()
def work(i):
    if i == 1 and not os.environ.get("FIXED"):
        raise RuntimeError("task one is broken")
    print("work", i, "printed this")
    return i

for i in range(3):
    work(i)
pipe.run()
"""


def test_log_after_a_failed_run_shows_the_error_and_its_traceback(cache_dir, tmp_path):
    script = write_script(tmp_path / "failing.py", FAILING)
    failed = run_python(script)
    assert failed.returncode == 1
    proc = cli("-l", "failing")
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout
    assert log.startswith("ndustria log of pipeline 'failing': run 1,") and "failed" in log.splitlines()[0]
    for text in ("[Added Task] work(2)", "Starting a run with 3 tasks.", "Saved result of work(0)",
                 "[Failed] work(1): RuntimeError: task one is broken", "1 task(s) failed, 0 skipped",
                 "ndustria.errors.TaskError: 1 task(s) failed", "work(1) raised RuntimeError",
                 "Traceback (most recent call last):", 'failing.py", line 10, in work',
                 "RuntimeError: task one is broken"):
        assert text in log, text
    assert cli("--log", "failing").stdout == log
    latest = cli("-l")  # without NAME: the most recent log, saying whose
    assert latest.returncode == 0 and "the most recent log: pipeline 'failing'" in latest.stdout
    assert log in latest.stdout

    fixed = run_python(script, env={"FIXED": "1"})  # the next run replaces the log
    assert fixed.returncode == 0, fixed.stderr
    log = cli("-l", "failing").stdout
    assert "run 2," in log.splitlines()[0] and "done" in log.splitlines()[0]
    assert "[Cache hit!] work(0) can be skipped" in log and "All done." in log
    assert "RuntimeError" not in log and "Traceback" not in log


def test_log_of_a_pipeline_that_never_ran(cache_dir):
    proc = cli("-l", "never-ran")
    assert proc.returncode == 1 and "No log of pipeline 'never-ran'" in proc.stderr
    assert cli("-l").returncode == 1
    populate()
    proc = cli("-l", "never-ran")
    assert proc.returncode == 1 and "pipelines with a log: clitest" in proc.stderr


def test_a_quiet_run_and_a_dry_run_still_leave_a_log(cache_dir, capsys):
    pipe = Pipeline(name="quiet", verbose=False)

    @pipe.AddFunction()
    def boom(x):
        raise ValueError(f"bad {x}")

    boom(3)
    with pytest.raises(Exception, match="bad 3"):
        pipe.run()
    assert capsys.readouterr().out.count("[Failed] boom(3)") == 1  # failures print even when quiet
    text = log_path(cache_dir, "quiet").read_text()
    assert "Starting a run with 1 tasks." in text and "ValueError: bad 3" in text and "Traceback" in text

    dry = Pipeline(name="quiet", dryrun=True)

    @dry.AddFunction()
    def plan(x):
        return x

    plan(1)
    dry.run()
    text = log_path(cache_dir, "quiet").read_text()
    assert "dry run" in text.splitlines()[0] and "[Dry run] would run" in text and "ValueError" not in text


def test_the_log_is_capped_and_written_whole(cache_dir):
    console = Console(verbose=False, stream=io.StringIO())
    for i in range(LOG_LINES + 500):
        console.recomputing(f"t({i})", "x" * (5000 if i == LOG_LINES + 499 else 1))
    lines, left_out = console.take_log()
    assert len(lines) == LOG_LINES and left_out == 500 and console.take_log() == ([], 0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = write_log(cache_dir, "capped", [*lines, "two\nlines"], run_id=7, started=time.time(), state="done",
                     left_out=left_out)
    text = path.read_text().splitlines()
    assert len(text) == 2 + LOG_LINES and "502 earlier lines left out" in text[1]  # 500 + 2 over the cap
    assert text[-1] == "lines" and max(len(line) for line in text) < 2100
    assert [p.name for p in cache_dir.iterdir()] == ["capped_log.txt"]  # no temporary file left
    assert not Console(record=False).recording and Console(record=False).take_log() == ([], 0)


def test_logging_costs_little_per_task(cache_dir):
    pipe = Pipeline(name="tiny", verbose=True)

    @pipe.AddFunction()
    def inc(i):
        return i + 1

    for i in range(2000):
        inc(i)
    pipe.console.stream = io.StringIO()
    pipe.run()
    log = log_path(cache_dir, "tiny").read_text()
    assert log.count("Saved result of inc(") == 2000 and log.count("[Added Task]") == 2000
