"""The notebook layer in-process: cell analysis, ``%%task`` details and the ``%ndustria`` commands."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError
from support import spy_fsync

import ndustria
from ndustria_nb.analysis import analyze, normalized
from ndustria_nb.kernel import get_state


def test_reads_and_binds_follow_scopes_and_order() -> None:
    names = analyze("x = x + 1\nfor i in range(n):\n    t += i\nimport os.path as p, sys\n"
                    "z = [a for a in b if a > c]\ndef f(q=d):\n    return e + q + x\n"
                    "class K(Base):\n    v = w\nw2 = (lambda: g)()\n")
    assert names.reads == ["x", "range", "n", "t", "b", "c", "d", "Base", "w", "e", "g"]
    assert names.binds == ["x", "i", "t", "p", "sys", "z", "f", "K", "w2"]
    assert analyze("y = 1\nprint(y)\n").reads == ["print"]
    assert normalized("a = 1  # note\n") == normalized("a = (1)\n\n# other\n")


def test_task_cell_restores_and_uses_the_side_table(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    state = get_state(ip)
    ip.run_cell("base = list(range(5))")
    ip.run_cell("%%task first\nvals = [v * 2 for v in base]\nprint('ran')")
    assert ip.user_ns["vals"] == [0, 2, 4, 6, 8]
    produced = ip.user_ns["vals"]
    assert id(produced) not in state.origins  # a list can change in place: later cells hash its content
    ip.run_cell("%%task second\ntotal = sum(vals)")
    produced.append(10)  # changed in place after the cell that made it
    ip.run_cell("%%task second\ntotal = sum(vals)")
    assert ip.user_ns["total"] == 30, "a cell reading a changed output must not be served the old result"
    produced.pop()
    ip.user_ns.pop("vals")
    capsys.readouterr()
    ip.run_cell("%%task first\nvals = [v * 2 for v in base]   # same code\nprint('ran')")
    out = capsys.readouterr().out
    assert "ran" in out and "restored vals" in out and ip.user_ns["vals"] == [0, 2, 4, 6, 8]
    ip.run_cell("%%task --rerun\nvals = [v * 3 for v in base]")
    assert ip.user_ns["vals"][1] == 3


def test_unpicklable_output_is_reported_and_the_cell_still_ran(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("%%task\nimport threading\nlock = threading.Lock()\nran = True")
    err = capsys.readouterr().err
    assert "lock cannot be pickled" in err and ip.user_ns["ran"] is True


def test_line_magic_commands(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("from ndustria import task\n@task\ndef double(x):\n    return 2 * x\n")
    ip.run_cell("%%ndustria --timeit --name magic_test\nh = double(21)\npair = double([1])")
    assert ip.user_ns["h"].result() == 42
    value = ip.user_ns["pair"].result()  # a list: later %%task cells hash its content, it may change in place
    assert get_state(ip).fingerprint(value) == get_state(ip).hasher.digest(value)
    assert get_state(ip).pipeline is ndustria.default_pipeline()
    capsys.readouterr()
    for line in ("status", "config", "cluster", "cache ls", "timeline", "memory", "profile magic_test"):
        ip.run_line_magic("ndustria", line)
    out = capsys.readouterr().out
    assert "double(21)" in out and "No cluster is running" in out and "pipeline 'magic_test'" in out
    ip.run_line_magic("ndustria", "cache rm double")
    assert "Removed double(21)" in capsys.readouterr().out
    ip.run_line_magic("ndustria", "cache clear")
    for bad in ("bogus", "cache rm", "cluster launch", "timeline 999", "run extra"):
        with pytest.raises(UsageError):
            ip.run_line_magic("ndustria", bad)
    with pytest.raises(UsageError):
        ip.run_cell_magic("ndustria", "--engines x", "pass")


def test_unload_removes_the_magics(ip: Any) -> None:
    ip.run_line_magic("unload_ext", "ndustria")
    assert "task" not in ip.magics_manager.magics["cell"]
    assert "ndustria" not in ip.magics_manager.magics["line"]
    ip.run_line_magic("load_ext", "ndustria")
    assert "task" in ip.magics_manager.magics["cell"]


def test_status_counts_distinct_tasks(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A cell run twice declares its calls again: they are still the same two tasks."""
    ip.run_cell("from ndustria import task\n@task\ndef inc(x):\n    return x + 1\n")
    for _ in range(2):
        ip.run_cell("%%ndustria --name twice\na = inc(1)\nb = inc(2)")
    capsys.readouterr()
    ip.run_line_magic("ndustria", "status")
    out = capsys.readouterr().out
    assert "pipeline 'twice': 2 tasks declared, 0 waiting to run" in out
    assert "2 cached" in out  # the second run found both


def test_a_task_cells_saved_outputs_are_durable_when_the_cell_ends(ip: Any, monkeypatch) -> None:
    """A %%task cell's entry (here a file: a large output) is synced before the cell ends, as a
    run's results are before run() returns."""
    import os

    import numpy as np

    ip.user_ns["np"] = np
    synced = spy_fsync(monkeypatch)
    ip.run_cell("%%task big\narr = np.arange(200_000, dtype=np.float64)")
    monkeypatch.undo()
    store = get_state(ip).pipeline.store
    files = [f for f in synced if f.startswith(os.fspath(store.root / "objects") + os.sep)]
    assert any(os.path.isfile(f) for f in files)  # the entry file (and its folder)
    assert os.fspath(store.root / "objects.sqlite-wal") in synced or not (store.root / "objects.sqlite-wal").exists()
