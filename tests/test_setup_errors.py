"""Fail before starting anything (issue 18): a missing package or a bad option is reported when the
pipeline is made or run() starts, before a cluster starts or a task runs, with an install command that
fits how ndustria was installed; the closing line of a failed run counts exactly what happened."""

from __future__ import annotations

import importlib.metadata
import json

import pytest
from support import ROOT, run_python, write_script

from ndustria import ConfigError, Pipeline, TaskError, install

BLOCKED = """
import sys
sys.modules["line_profiler"] = None  # as if it were not installed: `import line_profiler` fails
from ndustria import ConfigError, Pipeline
from ndustria.run import cluster
"""


def test_a_missing_instrument_fails_the_pipeline_before_a_cluster_starts(tmp_path):
    script = write_script(tmp_path / "blocked.py", BLOCKED + """
try:
    Pipeline(name="blocked", parallel=True, engines=2, profiling=True)
except ConfigError as exc:
    print("ERROR:", exc)
print("cluster started:", cluster.local_cluster(2) is not None)
""")
    proc = run_python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: profiling=True needs line_profiler, which is not installed" in proc.stdout
    assert "pip install line_profiler" in proc.stdout
    assert "cluster started: False" in proc.stdout


def test_an_option_changed_later_fails_at_run_before_anything_runs(tmp_path, cache_dir):
    """A notebook's kernel pipeline gets its options just before run(): they are checked there too."""
    script = write_script(tmp_path / "later.py", BLOCKED + """
pipe = Pipeline(name="later", parallel=True, engines=2)
pipe.profiling = True

@pipe.AddFunction()
def f(x):
    print("TASK RAN")
    return x

h = f(1)
try:
    pipe.run()
except ConfigError as exc:
    print("ERROR:", exc)
print("cluster started:", cluster.local_cluster(2) is not None)
print("runs recorded:", len(pipe.catalog.runs()))
print("still pending:", len(pipe.pending()))
""")
    proc = run_python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR: profiling=True needs line_profiler" in proc.stdout
    assert "TASK RAN" not in proc.stdout and "Starting a run" not in proc.stdout
    assert "cluster started: False" in proc.stdout and "runs recorded: 0" in proc.stdout
    assert "still pending: 1" in proc.stdout  # fix the option and run() again: nothing was lost


@pytest.mark.parametrize("options, words", [
    ({"engines": 0}, "engines must be a positive integer, not 0"),
    ({"engines": "4"}, "engines must be a positive integer, not '4'"),
    ({"retries": -1}, "retries must be a whole number >= 0, not -1"),
    ({"backend": "gpu"}, "unknown backend 'gpu'"),
    ({"memcheck": "heap"}, "memcheck must be True, False or 'rss'"),
])
def test_bad_options_are_refused_when_the_pipeline_is_made(cache_dir, options, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Pipeline(name="bad", **options)


def fake_install(monkeypatch, where, direct_url: dict | None, version: str = "0.1.0") -> None:
    """Make ``ndustria`` look imported from ``where``, installed as ``direct_url.json`` says (None: from
    an index)."""

    class Dist:
        def read_text(self, name):
            return json.dumps(direct_url) if direct_url is not None and name == "direct_url.json" else None

        def locate_file(self, path):
            return str(where)  # site-packages, for a copy installed there

    Dist.version = version
    monkeypatch.setattr(install, "PACKAGE_ROOT", where)
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())


def test_install_hints_fit_how_ndustria_was_installed(monkeypatch, tmp_path):
    folder, site = tmp_path / "my checkout", tmp_path / "site-packages"
    folder.mkdir()
    site.mkdir()
    fake_install(monkeypatch, folder, {"url": folder.as_uri(), "dir_info": {"editable": True}})
    assert install.install_command("mpi") == f"pip install -e '{folder}[mpi]'"
    fake_install(monkeypatch, site, {"url": folder.as_uri(), "dir_info": {}})  # pip install ./my-checkout
    assert install.install_command("mpi") == f"pip install '{folder}[mpi]'"
    fake_install(monkeypatch, site, None, version="1.2.3")  # from PyPI: that very version, not the newest
    assert install.install_command("mpi") == "pip install 'ndustria[mpi]==1.2.3'"
    assert install.install_command(None, ("line_profiler",)) == "pip install line_profiler"


def test_the_running_checkout_is_named_in_the_hint():
    """This test suite runs ndustria from this checkout (pip install -e .): the hint names it."""
    assert install.origin().folder == str(ROOT)
    assert install.install_command("mpi") == f"pip install -e '{ROOT}[mpi]'"


def test_the_closing_line_counts_what_completed_failed_and_was_skipped(cache_dir, capsys):
    pipe = Pipeline(name="closing")

    @pipe.AddFunction()
    def make(i):
        if i == 2:
            raise ValueError("two is broken")
        return i

    @pipe.AddFunction()
    def use(x):
        return x + 1

    make(3)
    pipe.run()  # make(3) is a cache hit from now on
    capsys.readouterr()
    use(make(1))
    use(make(2))
    make(3)
    with pytest.raises(TaskError):
        pipe.run()
    out = capsys.readouterr().out
    # completed: make(1), use(make(1)); failed: make(2); skipped: use(make(2)); a cache hit: make(3)
    assert "1 task(s) failed, 1 skipped; 2 completed and are cached (1 was a cache hit)." in out


def test_the_closing_line_says_when_nothing_completed(cache_dir, capsys):
    pipe = Pipeline(name="none")

    @pipe.AddFunction()
    def broken(i):
        raise RuntimeError(f"task {i} is broken")

    for i in range(3):
        broken(i)
    with pytest.raises(TaskError):
        pipe.run()
    out = capsys.readouterr().out
    assert "3 task(s) failed, 0 skipped; none completed." in out
    assert "the others completed" not in out
