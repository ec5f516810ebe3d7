"""The public surface: exported names, and what importing ndustria costs a script user."""

from __future__ import annotations

import subprocess
import sys

import ndustria


def test_all_names_exist():
    for name in ndustria.__all__:
        assert hasattr(ndustria, name), name


def test_errors_share_one_base():
    for name in ("CacheError", "ConfigError", "CorruptEntryError", "ResultNotPicklableError", "TaskError",
                 "TaskNotComputedError", "UnhashableError"):
        assert issubclass(getattr(ndustria, name), ndustria.NdustriaError)


def test_importing_the_engine_pulls_in_no_notebook_or_plotting_library():
    code = ("import sys, ndustria; from ndustria import Pipeline; "
            "bad = [m for m in ('IPython', 'ipywidgets', 'plotly', 'ipyparallel', 'mpi4py', 'ndustria_nb', "
            "'pandas', 'line_profiler') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
