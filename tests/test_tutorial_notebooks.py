"""The tutorial notebooks use the user's cache, so a second run finds every result (issue 17, item 1).

Each notebook runs twice in fresh kernels on one cache (this test's ``NDUSTRIA_CACHE_DIR``, set from
outside as scripts/test.sh does for nbval): the first run computes, the second computes nothing. The
parallel tutorial (a cluster per run) is left to scripts/test.sh's cold and warm nbval runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(name: str) -> list[str]:
    """The text each code cell printed, running notebook ``name`` in a fresh kernel."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    out = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            out.append("".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in cell.outputs))
    return out


def test_no_tutorial_notebook_chooses_its_cache():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert not [src for src in code if "NDUSTRIA_CACHE_DIR" in src or "cache_dir" in src], path.name


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_task_cells.ipynb", "04_profiling.ipynb"])
def test_a_second_run_of_a_tutorial_finds_every_result(name, cache_dir):
    cold = "\n".join(execute(name))
    # the first run computes: tasks are added (their "Saved result" lines may sit in the console log widget)
    assert "[Added Task]" in cold or "Saved result of" in cold or "%%task squares: cached values" in cold
    warm_cells = execute(name)
    warm = "\n".join(warm_cells)
    assert "Saved result of" not in warm
    failed_before = set(re.findall(r"\[Failed\] (.+?): ", cold))  # console lines, or the run's failure table:
    failed_before |= set(re.findall(r"^  (\w+\(.*?\)): \w+(?:Error|Exception)", cold, re.M))
    assert set(re.findall(r"\[Added Task\] (.+)", warm)) == failed_before  # failures are not cached
    for text in warm_cells:
        if "[ndustria] %%task" in text and "was not cached" not in text:
            assert "restored" in text and "cached values" not in text, text
