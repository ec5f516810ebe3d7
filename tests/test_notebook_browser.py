"""Notebooks in a real JupyterLab, driven by headless Debian chromium (issue 17, item 5).

- a tutorial notebook, run, then restarted and run again: every %%task cell is restored from the cache;
- the sidebar lists a run of a kernel that uses another cache than the server's, and draws its graph;
- cells marked cached and stale as the notebook is edited; "ndustria: run stale cells" runs exactly
  the stale ones and the ones that depend on them.

Screenshots for the README (docs/cells.png, docs/sidebar.png, docs/graph.png) are written when
missing or with NDUSTRIA_UPDATE_SCREENSHOT=1, so that running the tests does not change committed files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from lab_helpers import (
    LONG,
    browser,
    cells,
    command,
    jupyter_lab,
    lab_env,
    marker,
    open_notebook,
    output_text,
    prompt,
    run_all,
    wait_all_ran,
    wait_states,
    widen_sidebar,
    write_notebook,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("nblab")
    (tmp / "root").mkdir()
    env = lab_env(tmp)
    with jupyter_lab(tmp / "root", env, tmp / "lab.log") as url:
        yield {"url": url, "tmp": tmp, "root": tmp / "root", "env": env}


@pytest.fixture(scope="module")
def page(lab: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with browser(tmp_path_factory.mktemp("chromium")) as page:
        yield page


def keep_screenshot(page: Any, clip: dict, name: str, tmp_path: Path) -> None:
    png = page.screenshot(path=str(tmp_path / name), clip=clip)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    target = DOCS / name
    if not target.exists() or os.environ.get("NDUSTRIA_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / name, target)


def task_cell_indices(path: Path) -> list[int]:
    """Indices among the code cells of ``path`` of its ``%%task squares`` cells."""
    code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return [i for i, source in enumerate(code) if source.startswith("%%task squares")]


def test_a_tutorial_finds_its_results_after_a_kernel_restart(lab, page):
    shutil.copyfile(ROOT / "notebooks" / "02_task_cells.ipynb", lab["root"] / "tutorial.ipynb")
    panel = open_notebook(page, lab["url"], "tutorial.ipynb")
    run_all(page)
    squares = task_cell_indices(lab["root"] / "tutorial.ipynb")
    assert len(squares) == 5
    assert "squares: cached values" in output_text(panel, squares[0])  # a fresh cache: computed
    wait_states(page, panel, dict.fromkeys(squares, "cached"))

    command(page, "Clear Outputs of All Cells")  # so that what follows shows only the second run
    page.locator(".jp-CodeCell .jp-InputPrompt", has_text="[1]:").wait_for(state="detached")
    command(page, "Restart Kernel and Run All Cells")
    page.locator(".jp-Dialog-button.jp-mod-accept").click()  # "Restart"
    wait_all_ran(page)
    for i in squares:
        out = output_text(panel, i)
        assert "squares: restored values from the cache" in out and "cached values" not in out, out
    wait_states(page, panel, dict.fromkeys(squares, "cached"))


PIPELINE = """from ndustria import task
import time


@task
def simulate(n):
    time.sleep(0.05)
    return list(range(n))


@task
def summarize(data):
    return {"n": len(data), "total": sum(data)}


@task
def calibrate(data):
    raise ValueError("calibration file missing")


@task
def report(summaries, calibration):
    return summaries, calibration
"""


def test_the_sidebar_lists_a_kernels_run_in_its_own_cache_and_draws_the_graph(lab, page, tmp_path):
    kernel_cache = lab["tmp"] / "kernel-cache"
    write_notebook(lab["root"] / "elsewhere.ipynb", [
        f"import os\nos.environ['NDUSTRIA_CACHE_DIR'] = {str(kernel_cache)!r}  # not the server's cache\n"
        "%load_ext ndustria",
        PIPELINE,
        "%%ndustria\nsims = [simulate(n) for n in (100, 200, 400)]",
        "%%ndustria --timeit\nsummaries = [summarize(s) for s in sims]\nfinal = report(summaries, calibrate(sims[0]))",
    ])
    open_notebook(page, lab["url"], "elsewhere.ipynb")
    run_all(page)
    command(page, "ndustria: Open pipeline panel")
    side = page.locator("#ndustria-panel")
    option = side.locator(f".jp-ndustria-cache-select option[data-path='{kernel_cache}']")
    option.wait_for(state="attached", timeout=LONG)
    assert "elsewhere.ipynb" in option.inner_text()  # which kernel uses it
    default = side.locator(".jp-ndustria-cache-select option").first
    assert "server default" in default.inner_text() and str(lab["tmp"] / "server-cache") in default.inner_text()
    side.locator(".jp-ndustria-cache-select").select_option(value=str(kernel_cache))
    runs = side.locator(".jp-ndustria-run", has_text="elsewhere")
    runs.nth(1).wait_for(timeout=LONG)
    assert runs.count() == 2 and "failed" in runs.first.inner_text()
    side.locator(".jp-ndustria-section h3", has_text="Run #2").wait_for()

    graph = side.locator(".jp-ndustria-graph")
    nodes = graph.locator(".jp-ndustria-node")
    nodes.nth(7).wait_for(timeout=LONG)
    states = sorted(n.get_attribute("data-status") for n in nodes.all())
    assert states == ["cached"] * 3 + ["done"] * 3 + ["failed", "skipped"]
    assert graph.locator(".jp-ndustria-edge").count() == 3 + 3 + 1 + 1  # sims -> summaries, calibrate, report
    cached = graph.locator(".jp-ndustria-node[data-status='cached']").first.text_content()  # SVG: no innerText
    assert "simulate" in cached and "cached · " in cached and "ms" in cached  # with the time the hit saved
    failed = graph.locator(".jp-ndustria-node[data-status='failed']").text_content()
    assert "calibrate" in failed and "calibration file missing" in failed  # its tooltip (<title>) says why
    assert "3 cached" in graph.inner_text() and "3 ran" in graph.inner_text()

    widen_sidebar(page, 300)
    page.wait_for_timeout(500)  # the drawing follows the new width
    top, end = side.bounding_box(), graph.bounding_box()
    keep_screenshot(page, {"x": top["x"], "y": top["y"], "width": top["width"],
                           "height": end["y"] + end["height"] - top["y"] + 4}, "sidebar.png", tmp_path)
    keep_screenshot(page, end, "graph.png", tmp_path)


STALE = ["%load_ext ndustria",
         "n = 3",
         "%%task make\ndata = list(range(n))\nprint('made', len(data))",
         "%%task use\ntotal = sum(data)\nprint('total', total)",
         "%%task other\nz = 7\nprint('other', z)",
         "from ndustria import task\n\n\n@task\ndef double(x):\n    return 2 * x",
         "%%ndustria\nd = double(n)"]


def test_stale_cells_are_marked_and_run_stale_cells_runs_exactly_them(lab, page, tmp_path):
    write_notebook(lab["root"] / "stale.ipynb", STALE)
    panel = open_notebook(page, lab["url"], "stale.ipynb")
    for i in (2, 3, 4, 6):
        assert marker(panel, i).count() == 0 or marker(panel, i).get_attribute("data-state") != "cached"
    run_all(page)
    wait_states(page, panel, {2: "cached", 3: "cached", 4: "cached", 6: "cached"})
    assert marker(panel, 1).count() == 0 and marker(panel, 5).count() == 0  # plain cells: no marker
    before = [prompt(panel, i) for i in range(7)]

    cells(panel).nth(2).locator(".cm-content").click()  # edit %%task make; %%task use reads its output
    page.keyboard.press("Control+End")
    page.keyboard.type("\ndata.append(n)")
    page.keyboard.press("Escape")
    wait_states(page, panel, {2: "stale", 3: "stale"})
    wait_states(page, panel, {4: "cached", 6: "cached"})
    assert "its code changed" in marker(panel, 2).get_attribute("title")
    assert "input data comes from %%task make" in marker(panel, 3).get_attribute("title")
    box = panel.bounding_box()
    last = cells(panel).nth(4).bounding_box()
    keep_screenshot(page, {"x": box["x"], "y": box["y"], "width": box["width"],
                           "height": last["y"] + last["height"] - box["y"] + 6}, "cells.png", tmp_path)

    command(page, "ndustria: run stale cells")
    page.locator(".jp-InputPrompt", has_text="[9]:").wait_for(timeout=LONG)  # the second of two cells ran
    wait_all_ran(page)
    after = [prompt(panel, i) for i in range(7)]
    assert [i for i in range(7) if after[i] != before[i]] == [2, 3], (before, after)
    assert "total 6" in output_text(panel, 3)  # it ran on the new data
    wait_states(page, panel, {2: "cached", 3: "cached", 4: "cached", 6: "cached"})
