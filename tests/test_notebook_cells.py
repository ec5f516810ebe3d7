"""``%%task`` cells in real kernels: restored after a restart, and recomputed exactly when something changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from nb_helpers import errors, mimes, run_notebook, setup_cell, text

pytestmark = pytest.mark.slow

HELPER = "def helper(x):\n    return x + 1\n"
CHANGED_HELPER = "def helper(x):\n    return x + 2\n"


def task_cell(counter: Path, comment: str = "") -> str:
    return (f"%%task expensive\n{comment}"
            f"open({str(counter)!r}, 'a').write('x')  # a side effect: counts executions\n"
            "y = helper(n)\nsquares = [i * i for i in range(n)]\nprint('y is', y)\n"
            "from IPython.display import HTML, display\ndisplay(HTML('<b>rich</b>'))\n")


def runs(counter: Path) -> int:
    return len(counter.read_text()) if counter.exists() else 0


def test_task_cell_hits_after_restart_and_recomputes_on_change(tmp_path: Path) -> None:
    cache, counter = tmp_path / "cache", tmp_path / "counter.txt"
    setup = setup_cell(cache)

    nb = run_notebook([setup, HELPER, "n = 3", task_cell(counter),
                       "%%task failing\nz = 1\nraise ValueError('boom')",
                       "%ndustria bogus", "%ndustria cluster start -n zero", "%%ndustria --engines\nx = 1"],
                      tmp_path)
    assert runs(counter) == 1
    assert "y is 4" in text(nb.cells[3]) and "cached y, squares, HTML, display" in text(nb.cells[3])
    assert errors(nb.cells[4]) and errors(nb.cells[4])[0].ename == "ValueError"
    for cell in nb.cells[5:]:  # argument mistakes: a one-line usage message, no traceback
        assert not errors(cell), cell.outputs
        assert "UsageError" in text(cell)

    # a fresh kernel, a comment-only edit: restored, not run; the failing cell stored nothing
    nb = run_notebook([setup, HELPER, "n = 3", task_cell(counter, "# only a comment\n"),
                       "print(y, squares)", "%%task failing\nz = 1\nraise ValueError('boom')"], tmp_path)
    assert runs(counter) == 1
    out = text(nb.cells[3])
    assert "y is 4" in out and "restored" in out and "saved" in out
    assert "text/html" in mimes(nb.cells[3])  # rich outputs are replayed too
    assert "4 [0, 1, 4]" in text(nb.cells[4])
    assert errors(nb.cells[5])

    # a changed input recomputes; so does a changed helper cell
    run_notebook([setup, HELPER, "n = 4", task_cell(counter)], tmp_path)
    assert runs(counter) == 2
    nb = run_notebook([setup, CHANGED_HELPER, "n = 3", task_cell(counter), "print(y)"], tmp_path)
    assert runs(counter) == 3
    assert text(nb.cells[4]).strip() == "5"
