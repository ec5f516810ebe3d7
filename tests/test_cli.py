"""The `ndustria` command, run as a user would: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ndustria import Pipeline, TaskError


def cli(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """The command with no terminal on stdin (``input`` piped in, else nothing), however pytest was started."""
    return subprocess.run([sys.executable, "-m", "ndustria", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, input=input or "")


def populate() -> Pipeline:
    pipe = Pipeline(name="clitest", verbose=False)

    @pipe.AddFunction()
    def square(x):
        return [x * x] * 1000

    @pipe.AddFunction()
    def other(x):
        return x

    for i in range(3):
        square(i)
    other(1)
    pipe.run()
    return pipe


def test_help_lists_the_commands():
    proc = cli("--help")
    assert proc.returncode == 0
    for word in ("init", "cache", "config"):
        assert word in proc.stdout


def test_init_writes_the_config_file_and_never_touches_shell_files(tmp_path):
    target = tmp_path / "mycache"
    env = {"NDUSTRIA_CACHE_DIR": ""}
    proc = cli("init", "--cache-dir", str(target), env=env)
    assert proc.returncode == 0, proc.stderr
    config = Path(os.environ["NDUSTRIA_CONFIG_FILE"])
    assert str(target) in config.read_text()
    assert target.is_dir()
    home = Path(os.environ["HOME"])
    assert not (home / ".bashrc").exists() and not (home / ".profile").exists()
    shown = cli("config", env=env)
    assert str(target) in shown.stdout and "config file" in shown.stdout


def test_ndustria_init_alias(tmp_path):
    exe = Path(sys.executable).with_name("ndustria-init")
    proc = subprocess.run([str(exe), "--cache-dir", str(tmp_path / "c2")], capture_output=True, text=True,
                          env={**os.environ, "NDUSTRIA_CACHE_DIR": ""}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "c2") in Path(os.environ["NDUSTRIA_CONFIG_FILE"]).read_text()


def test_cache_ls_rm_and_clear(cache_dir):
    pipe = populate()
    proc = cli("cache")
    assert proc.returncode == 0, proc.stderr
    assert "square(0)" in proc.stdout and "other(1)" in proc.stdout and "4 entries" in proc.stdout
    assert "KiB" in proc.stdout or " B " in proc.stdout

    proc = cli("cache", "rm", "square(1)", "--yes")
    assert proc.returncode == 0 and "Removed square(1)" in proc.stdout
    assert len(list(pipe.store.keys())) == 3

    proc = cli("cache", "rm", "squ*", "--yes")
    assert proc.stdout.count("Removed") == 2
    assert cli("cache", "rm", "nothing-like-this", "--yes").returncode == 1

    proc = cli("-c")  # the original's meaning: list the cache
    assert proc.returncode == 0 and "other(1)" in proc.stdout and "1 entries" in proc.stdout
    assert len(list(pipe.store.keys())) == 1, "-c must delete nothing"
    assert cli("cache", "clear", "--yes").returncode == 0
    assert list(pipe.store.keys()) == []
    assert "empty" in cli("cache", "ls").stdout


def test_destructive_commands_without_a_terminal_remove_nothing_unless_told(cache_dir):
    pipe = populate()
    for command in (("cache", "clear"), ("cache", "rm", "square"), ("cache", "gc", "--max-size", "0")):
        proc = cli(*command, input="n\n")  # echo n | ndustria ...
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "nothing removed" in proc.stderr and "--yes" in proc.stderr
        assert len(list(pipe.store.keys())) == 4, command
    proc = cli("cache", "gc", "--max-size", "0", "--yes")
    assert proc.returncode == 0 and list(pipe.store.keys()) == []


def test_a_task_call_pasted_from_cache_ls_removes_that_task_only(cache_dir):
    pipe = Pipeline(name="pasted", verbose=False)

    @pipe.AddFunction()
    def f(x):
        return x

    for arg in ([1, 2], 1, 2):
        f(arg)
    pipe.run()
    assert "f([1, 2])" in cli("cache", "ls").stdout
    proc = cli("cache", "rm", "f([1, 2])", "--yes")
    assert proc.returncode == 0 and proc.stdout.count("Removed") == 1, proc.stdout
    left = cli("cache", "ls").stdout
    assert "f(1)" in left and "f(2)" in left and "f([1, 2])" not in left


def test_cache_clear_subcommand(cache_dir):
    populate()
    proc = cli("cache", "clear", "--yes")
    assert proc.returncode == 0 and "Removed 4 entries" in proc.stdout


def instrumented(name: str = "kwargs", **flags) -> Pipeline:
    pipe = Pipeline(name=name, verbose=False, **flags)

    @pipe.AddFunction()
    def grow(n):
        return list(range(n))

    @pipe.AddFunction()
    def count(values):
        return len(values)

    for n in (1000, 20000):
        count(grow(n))
    pipe.run()
    return pipe


def test_timing_report_short_and_long_forms(cache_dir):
    instrumented(timeit=True)
    short, long = cli("-t", "kwargs"), cli("timeit", "kwargs")
    assert short.returncode == 0, short.stderr
    assert long.returncode == 0, long.stderr
    for proc in (short, long):
        assert "grow(20000)" in proc.stdout and "count(grow(1000))" in proc.stdout
        assert "total: 4 tasks" in proc.stdout and "FUNCTION" in proc.stdout
        assert " ms" in proc.stdout or " µs" in proc.stdout


def test_memory_and_profile_reports(cache_dir):
    instrumented(memcheck=True, profiling=True)
    mem = cli("-m", "kwargs")
    assert mem.returncode == 0, mem.stderr
    assert "HEAP PEAK" in mem.stdout and "RSS PEAK" in mem.stdout and "max of 4 tasks" in mem.stdout
    prof = cli("profile", "kwargs")
    assert prof.returncode == 0, prof.stderr
    assert prof.stdout.count("Task: ") == 4 and "return list(range(n))" in prof.stdout
    assert cli("-p", "kwargs").stdout == prof.stdout


def test_report_without_data_names_the_flag(cache_dir):
    instrumented()  # no instruments
    for args, flag in ((("-t", "kwargs"), "timeit=True"), (("memcheck", "kwargs"), "memcheck=True"),
                       (("-p", "kwargs"), "profiling=True")):
        proc = cli(*args)
        assert proc.returncode == 2
        assert "pipeline 'kwargs'" in proc.stderr and f"Pipeline(..., {flag})" in proc.stderr
    proc = cli("-t", "never-ran")
    assert proc.returncode == 2
    assert "no timing data for pipeline 'never-ran': run it with Pipeline(..., timeit=True)" in proc.stderr


def test_html_writes_the_plotly_figures(cache_dir, tmp_path):
    instrumented(timeit=True, memcheck=True)
    out = tmp_path / "timeline.html"
    proc = cli("-t", "kwargs", "--html", str(out))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "Plotly.newPlot" in html and "timeline" in html
    out2 = tmp_path / "memory.html"
    assert cli("memcheck", "kwargs", "--html", str(out2)).returncode == 0
    assert "Plotly.newPlot" in out2.read_text()


def test_runs_lists_past_runs(cache_dir):
    assert "No runs" in cli("runs").stdout
    instrumented(timeit=True)
    instrumented(timeit=True)  # everything cached
    proc = cli("runs")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["RUN", "PIPELINE", "STARTED", "DURATION", "STATE", "RUN", "CACHED", "FAILED",
                                "SKIPPED", "BACKEND", "WORKERS"]
    newest, oldest = lines[1].split(), lines[2].split()
    assert newest[1] == oldest[1] == "kwargs"
    assert newest[-7:-2] == ["done", "0", "4", "0", "0"] and oldest[-7:-2] == ["done", "4", "0", "0", "0"]
    assert oldest[-2:] == ["serial", "1"]
    assert "kwargs" in cli("runs", "kwargs").stdout and "No runs of 'other'" in cli("runs", "other").stdout


def test_delete_cache_asks_for_each_entry_as_the_original_did(cache_dir):
    pipe = populate()
    assert cli("-d", "square", input="y\n").returncode == 2, "without a terminal it refuses"
    assert len(list(pipe.store.keys())) == 4
    code = ("import sys, builtins\nanswers = iter(['y', 'n', 'n'])\nbuiltins.input = lambda q='': next(answers)\n"
            "sys.stdin.isatty = lambda: True\nfrom ndustria.show.cli import main\nsys.exit(main(['-d', 'square']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, input="")
    assert proc.returncode == 0 and "Removed 1 of 3 matching entries" in proc.stdout, proc.stdout + proc.stderr
    assert len(list(pipe.store.keys())) == 3
    assert cli("-d", "square", "--yes").returncode == 0
    assert len(list(pipe.store.keys())) == 1


def test_cache_ls_is_ordered_most_recently_used_first_or_as_asked(cache_dir):
    pipe = Pipeline(name="order", verbose=False)

    @pipe.AddFunction()
    def block(n):
        return b"x" * n

    sizes = (10_000, 300_000, 20_000)
    handles = [block(n) for n in sizes]
    pipe.run()
    catalog = pipe.catalog
    with catalog.batch() as db:  # used at distinct moments: block(300000) last, block(10000) first
        for i, h in enumerate(handles):
            db.execute("UPDATE entries SET last_used = ? WHERE key = ?", (1_000_000 + [0, 2, 1][i], h.key))

    def tasks(*args: str) -> list[str]:
        proc = cli("cache", "ls", *args)
        assert proc.returncode == 0, proc.stderr
        return [line.split()[0] for line in proc.stdout.splitlines()[1:-1]]

    assert tasks() == ["block(300000)", "block(20000)", "block(10000)"]
    assert "most recently used first (--sort size|age|task)" in cli("cache", "ls").stdout
    assert tasks("--sort", "size") == ["block(300000)", "block(20000)", "block(10000)"]
    assert tasks("--sort", "task") == ["block(10000)", "block(20000)", "block(300000)"]
    assert "largest first" in cli("cache", "ls", "--sort", "size").stdout
    assert cli("cache", "ls", "--sort", "colour").returncode == 2


def test_config_says_when_the_config_file_does_not_exist(tmp_path, cache_dir):
    missing = tmp_path / "nowhere" / "config.toml"
    proc = cli("config", env={"NDUSTRIA_CONFIG_FILE": str(missing)})
    assert proc.returncode == 0, proc.stderr
    assert f"config file: {missing}    (does not exist: `ndustria init` writes it)" in proc.stdout
    cli("init", "--cache-dir", str(cache_dir), env={"NDUSTRIA_CONFIG_FILE": str(missing)})
    proc = cli("config", env={"NDUSTRIA_CONFIG_FILE": str(missing)})
    assert f"config file: {missing}\n" in proc.stdout and "does not exist" not in proc.stdout


def test_runs_counts_skipped_tasks(cache_dir):
    pipe = Pipeline(name="skips", verbose=False)

    @pipe.AddFunction()
    def broken(x):
        raise ValueError("no")

    @pipe.AddFunction()
    def after(x):
        return x

    after(after(broken(1)))
    with pytest.raises(TaskError):
        pipe.run()
    row = cli("runs").stdout.splitlines()[1].split()
    assert row[1] == "skips" and row[-7:-2] == ["failed", "0", "0", "1", "2"]  # run, cached, failed, skipped
