"""The original ndustria's users move over unchanged: its import paths, ``ndustria-init``, and its
tutorial scripts (tests/original_tutorial/, only the sizes made smaller) run twice each in fresh
interpreters, printing the lines the original README shows and storing the results they compute."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import run_python, write_script

from ndustria.record.catalog import Catalog
from ndustria.store.entries import Store

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

TUTORIAL = Path(__file__).resolve().parent / "original_tutorial"
SIZES = (32, 64, 128)  # the original: 1024 ... 16384


def run_code(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter with the test's environment."""
    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=120)


def run_twice(script: str, cwd: Path) -> tuple[str, str]:
    outs = []
    for _ in range(2):
        proc = run_python(TUTORIAL / script, cwd=cwd)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs.append(proc.stdout)
    return outs[0], outs[1]


def lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def stored(cache: Path) -> dict[str, tuple[str, object]]:
    """Every result in the cache by task call: (key, value), loaded as a user's script would."""
    store, catalog = Store(cache), Catalog(cache)
    try:
        return {row["task"]: (row["key"], store.load(row["key"])) for row in catalog.entries()}
    finally:
        catalog.close()


def matrix_calls() -> list[str]:
    calls = []
    for n in SIZES:
        calls += [f"matrix_multiplication(N={n})", f"matrix_parameters(matrix_multiplication(N={n}))"]
    return calls


def check_matrix_results(cache: Path, out: str, computed: tuple[str, ...] = ("multiplication", "parameters"),
                         ) -> dict[str, tuple[str, object]]:
    """The stored results are what the script computes, and ``out`` shows the computed ones saved and printed."""
    results = stored(cache)
    assert sorted(results) == sorted(matrix_calls())
    for n in SIZES:
        producer, consumer = f"matrix_multiplication(N={n})", f"matrix_parameters(matrix_multiplication(N={n}))"
        matrix = results[producer][1]
        assert isinstance(matrix, np.ndarray) and matrix.shape == (n, n)
        assert results[consumer][1] == (n, n)
        for kind, task in (("multiplication", producer), ("parameters", consumer)):
            if kind in computed:
                key = results[task][0]
                assert f"Saved result of {task} to {Store(cache).info(key).path}" in out
        if "parameters" in computed:
            assert f"Size of Matrix: ({n}, {n})" in out and f"Total Number of Elements: {n * n}" in out
    return results


def same_results(a: dict[str, tuple[str, object]], b: dict[str, tuple[str, object]]) -> bool:
    return a.keys() == b.keys() and all(
        a[t][0] == b[t][0] and np.array_equal(np.asarray(a[t][1]), np.asarray(b[t][1])) for t in a)


# -- the original's import paths ----------------------------------------------------------------------


@pytest.mark.parametrize("code", [
    # `import ndustria.Pipeline` first thing in a process leaves ndustria.Pipeline the class
    "import ndustria.Pipeline\nimport ndustria\nfrom ndustria.pipeline import Pipeline as P\n"
    "assert ndustria.Pipeline is P and isinstance(ndustria.Pipeline(name='x'), P)",
    "from ndustria.Pipeline import Pipeline\nfrom ndustria.pipeline import Pipeline as P\nassert Pipeline is P\n"
    "import ndustria\nassert ndustria.Pipeline is P",
    "from ndustria import Pipeline\nimport ndustria.Pipeline\nfrom ndustria.Pipeline import Pipeline as Q\n"
    "assert Pipeline is Q is ndustria.Pipeline and isinstance(Pipeline, type)",
    "import importlib, ndustria\nm = importlib.import_module('ndustria.Pipeline')\n"
    "assert m.Pipeline is ndustria.Pipeline and isinstance(ndustria.Pipeline, type)",
    # the original's other modules, and its package attributes (Task and Cache were classes there too)
    "from ndustria.Task import Task\nfrom ndustria import Task as T, TaskHandle\nassert Task is T is TaskHandle",
    "from ndustria.Cache import Cache\nfrom ndustria import Cache as C\nfrom ndustria.store.entries import Store\n"
    "assert Cache is C is Store",
    "import ndustria.Logger\nfrom ndustria import Logger\nimport logging, ndustria\nassert ndustria.Logger is Logger\n"
    "assert Logger.warn == logging.getLogger('ndustria').warning and callable(Logger.log)\n"
    "from ndustria.Logger import debug, error, log, warn",
])
def test_the_original_import_paths_work_in_a_fresh_interpreter(code: str):
    proc = run_code(code)
    assert proc.returncode == 0, proc.stderr


def test_the_old_import_paths_travel_to_process_workers(tmp_path: Path):
    """Task functions of a script using the old paths are pickled to loky workers, which import them too."""
    script = write_script(tmp_path / "old_imports.py", """
        import os

        import ndustria.Pipeline
        from ndustria import Logger
        from ndustria.Pipeline import Pipeline
        from ndustria.Task import Task

        pipe = Pipeline(name="old_imports", backend="processes", engines=2)

        @pipe.AddFunction()
        def square(x):
            Logger.debug("squaring %s", x)
            assert ndustria.Pipeline is Pipeline and isinstance(Pipeline, type)
            return x * x, os.getpid()

        @pipe.AddFunction()
        def total(values):
            return sum(v for v, _ in values)

        squares = [square(i) for i in range(6)]
        result = total(squares)
        pipe.run()
        print("is a Task:", isinstance(result, Task))
        print("total:", result.result())
        print("in workers:", all(s.result()[1] != os.getpid() for s in squares))
    """)
    for expected in ("Saved result of total(", "[Cache hit!] total("):
        proc = run_python(script, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert expected in proc.stdout
        assert "is a Task: True" in proc.stdout and "total: 55" in proc.stdout and "in workers: True" in proc.stdout


# -- ndustria-init ----------------------------------------------------------------------------------


def console_script(name: str) -> str:
    """A console script installed with ndustria (beside this interpreter in a virtualenv)."""
    exe = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert exe, f"the {name} console script is installed with ndustria"
    return exe


def test_ndustria_init_writes_the_config_file_and_no_shell_file(tmp_path: Path):
    exe = console_script("ndustria-init")
    home = tmp_path / "fresh-home"
    home.mkdir()
    shell_files = {".bashrc": "export PS1='$ '\n", ".profile": "# profile\n"}
    for name, text in shell_files.items():
        (home / name).write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NDUSTRIA_CACHE_DIR", "NDUSTRIA_CONFIG_FILE", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home)

    proc = subprocess.run([exe], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    config = home / ".config" / "ndustria" / "config.toml"
    assert f"Wrote {config}" in proc.stdout
    assert tomllib.loads(config.read_text())["cache_dir"] == str(home / ".ndustria_cache")
    assert (home / ".ndustria_cache").is_dir()
    assert {p.name for p in home.iterdir()} == {*shell_files, ".config", ".ndustria_cache"}
    assert all((home / name).read_text() == text for name, text in shell_files.items())

    elsewhere = tmp_path / "elsewhere"
    proc = subprocess.run([exe, "--cache-dir", str(elsewhere)], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    used = subprocess.run([sys.executable, "-c", "from ndustria.Pipeline import Pipeline; print(Pipeline().cache_dir)"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert used.stdout.strip() == str(elsewhere), used.stderr


# -- the original's tutorial scripts, unchanged but for their sizes -------------------------------------


def test_simple_example_then_rerun_test(tmp_path: Path, cache_dir: Path):
    first, second = run_twice("simple_example.py", tmp_path)
    assert lines(first, "[Added Task] ") == [f"[Added Task] {c}" for c in matrix_calls()]
    assert " Starting a run with 6 tasks." in first.splitlines()
    assert "Datatype of Matrix Object: <class 'numpy.ndarray'>" in first
    saved = [line.split(" to ")[0].removeprefix("Saved result of ") for line in lines(first, "Saved result of ")]
    assert sorted(saved) == sorted(matrix_calls())
    for n in SIZES:  # a consumer is saved after its producer
        assert saved.index(f"matrix_multiplication(N={n})") < saved.index(f"matrix_parameters(matrix_multiplication(N={n}))")
    assert first.splitlines()[-1] == "All done."
    results = check_matrix_results(cache_dir, first)

    assert lines(second, "[Cache hit!] ") == [f"[Cache hit!] {c} can be skipped" for c in matrix_calls()]
    assert " Starting a run with 0 tasks." in second.splitlines()
    assert lines(second, "Saved result of") == [] and second.splitlines()[-1] == "All done."
    assert same_results(stored(cache_dir), results)

    # rerun_test.py, another script: the products are hits, the rerun=True task runs every time
    for out in run_twice("rerun_test.py", tmp_path):
        assert lines(out, "[Cache hit!] ") == [f"[Cache hit!] matrix_multiplication(N={n}) can be skipped"
                                               for n in SIZES]
        assert lines(out, "[Added Task] ") == [f"[Added Task] matrix_parameters(matrix_multiplication(N={n}))"
                                               for n in SIZES]
        assert " Starting a run with 3 tasks." in out.splitlines()
        assert len(lines(out, "Saved result of matrix_parameters(")) == 3
        check_matrix_results(cache_dir, out, computed=("parameters",))
    assert same_results(stored(cache_dir), results)


def test_iterations_test(tmp_path: Path, cache_dir: Path):
    first, second = run_twice("iterations_test.py", tmp_path)
    assert " Starting a run with 10 tasks." in first.splitlines()
    assert len(lines(first, "[Added Task] ")) == 10 and len(lines(first, "Saved result of ")) == 10
    assert "Viewing data for 1000 random numbers:" in first and "Viewing data for 10000 random numbers:" in first
    results = stored(cache_dir)
    for n in (1000, 10000):
        _, data = results[f"create_random_array(N={n})"]
        arg = f"(create_random_array(N={n}))"
        assert results["do_sum" + arg][1] == {"sum": np.sum(data), "length": n}
        assert results["do_mean" + arg][1] == {"mean": np.mean(data), "length": n}
        assert results["do_std" + arg][1] == {"std": np.std(data), "length": n}
        assert results[f"view_data(do_sum{arg}, do_mean{arg}, do_std{arg})"][1] is None

    assert len(lines(second, "[Cache hit!] ")) == 10 and lines(second, "Saved result of") == []
    assert " Starting a run with 0 tasks." in second.splitlines()
    assert same_results(stored(cache_dir), results)


@pytest.mark.slow
def test_pipeline_kwargs_then_its_reports(tmp_path: Path, cache_dir: Path):
    """parallel=True without mpirun: a local ipyparallel cluster; then the README's ndustria -t/-m/-p kwargs."""
    first, second = run_twice("pipeline_kwargs.py", tmp_path)
    assert lines(first, "[Added Task] ") == [f"[Added Task] {c}" for c in matrix_calls()]
    assert lines(first, "Initializing parallel run with ")
    assert " Starting a run with 6 tasks." in first.splitlines()
    check_matrix_results(cache_dir, first)
    assert lines(second, "[Cache hit!] ") == [f"[Cache hit!] {c} can be skipped" for c in matrix_calls()]
    assert " Starting a run with 0 tasks." in second.splitlines()

    for name in ("kwargs_timing.csv", "kwargs_memcheck.csv", "kwargs_profile.txt"):
        assert (cache_dir / name).is_file(), name
    for flag in ("-t", "-m", "-p"):
        proc = subprocess.run([console_script("ndustria"), flag, "kwargs"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "matrix_multiplication(N=32)" in proc.stdout, (flag, proc.stdout)
