"""The JupyterLab sidebar in a real JupyterLab, driven by headless Chromium (Debian's, via Playwright)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import CHROMIUM_ARGS, free_port, write_notebook

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PIPELINE = """
import time
import numpy as np
from ndustria import Pipeline

pipe = Pipeline(name="demo", memcheck=True)

@pipe.AddFunction()
def simulate(n):
    time.sleep(0.05)
    return np.random.default_rng(n).random(n * 1000)

@pipe.AddFunction()
def summarize(data):
    return {"mean": float(data.mean()), "max": float(data.max())}

@pipe.AddFunction()
def calibrate(data):
    raise ValueError("calibration file missing")

@pipe.AddFunction()
def report(calibration):
    return calibration

for n in (100, 200, 400):
    summarize(simulate(n))
report(calibrate(simulate(100)))
pipe.run()
"""


def wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "api/status", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("jupyter lab did not answer in time")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A finished pipeline run (one failed task) and a token-less JupyterLab showing its cache."""
    tmp = tmp_path_factory.mktemp("lab")
    env = {**os.environ, "NDUSTRIA_CACHE_DIR": str(tmp / "cache"), "HOME": str(tmp / "home"),
           "NDUSTRIA_CONFIG_FILE": str(tmp / "config.toml"), "JUPYTER_CONFIG_DIR": str(tmp / "jupyter"),
           "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "ws")}
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"checkForUpdates": False, "fetchNews": "false"}))
    (tmp / "root").mkdir()
    script = tmp / "demo.py"
    script.write_text(PIPELINE)
    for _ in range(2):  # the second run finds all but the failed task cached
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "calibration file missing" in done.stderr + done.stdout
    port = free_port()
    with open(tmp / "lab.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
             "--ServerApp.token=", "--ServerApp.password=", "--allow-root", f"--ServerApp.root_dir={tmp / 'root'}"],
            env=env, stdout=subprocess.DEVNULL, stderr=log)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_for_server(url, proc)
            yield {"url": url, "env": env, "tmp": tmp}
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def page(lab: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: run scripts/test.sh (as root it runs `apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium")), executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(30000)
        page.goto(lab["url"] + "lab?reset")
        page.wait_for_selector(".jp-Launcher", timeout=60000)  # the app is up and the layout restored
        yield page
        context.close()


def open_panel(page) -> None:
    """Open the sidebar with the command palette, as a user would."""
    page.keyboard.press("Control+Shift+c")
    page.fill(".lm-CommandPalette-input", "ndustria: Open pipeline panel")
    page.click(".lm-CommandPalette-item >> text=ndustria: Open pipeline panel")
    page.wait_for_selector("#ndustria-panel", state="visible")


def statuses(panel) -> list[tuple[str, str]]:
    """(status, row text) of each task row shown."""
    return [(row.get_attribute("data-status"), row.inner_text()) for row in panel.locator(".jp-ndustria-task").all()]


def keep(png: Path, name: str) -> None:
    """Copy a screenshot into docs/ (shown in the README) when it is missing there, or with
    NDUSTRIA_UPDATE_SCREENSHOT=1: running the tests never changes a committed file otherwise."""
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = DOCS / name
    if not target.exists() or os.environ.get("NDUSTRIA_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(png, target)


def save_screenshot(page, panel, path: Path, name: str = "panel.png") -> None:
    """The panel, at the width it has, down to the end of its content."""
    top, body = panel.bounding_box(), panel.locator(".jp-ndustria-body").bounding_box()
    clip = {"x": top["x"], "y": top["y"], "width": top["width"], "height": body["y"] + body["height"] - top["y"] + 8}
    page.screenshot(path=str(path), clip=clip)
    keep(path, name)


CLIPPED = """panel => {
    const edge = panel.getBoundingClientRect().right;
    return [...panel.querySelectorAll('.jp-ndustria-num, .jp-ndustria-badge, .jp-ndustria-delete, .jp-ndustria-tail')]
        .filter(node => node.offsetParent !== null)
        .filter(node => node.scrollWidth > node.clientWidth || node.getBoundingClientRect().right > edge + 0.5)
        .map(node => `${node.className} ${JSON.stringify(node.textContent)}: scrollWidth ${node.scrollWidth}`
                     + ` > clientWidth ${node.clientWidth} or right ${node.getBoundingClientRect().right} > ${edge}`);
}"""

NAMES = """panel => [...panel.querySelectorAll('.jp-ndustria-task-name')].map(cell => ({
    text: cell.textContent, title: cell.title.split('\\n')[0],
    cut: cell.querySelector('.jp-ndustria-head').scrollWidth > cell.querySelector('.jp-ndustria-head').clientWidth,
    tail: cell.querySelector('.jp-ndustria-tail').textContent,
    visible: cell.querySelector('.jp-ndustria-tail').getBoundingClientRect().right
             <= cell.getBoundingClientRect().right + 0.5,
}))"""


def assert_nothing_clipped(panel) -> None:
    """Numbers, states and buttons whole and inside the panel; names cut in the middle only, whole on hover."""
    assert panel.evaluate(CLIPPED) == []
    names = panel.evaluate(NAMES)
    assert names and all(n["text"] == n["title"] and n["visible"] for n in names), names
    return names


def test_panel_shows_the_runs_and_their_tasks(page, tmp_path):
    open_panel(page)
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='ndustria-panel']")
    assert "ndustria" in (tab.get_attribute("title") or "") + tab.inner_text()
    panel = page.locator("#ndustria-panel")
    runs = panel.locator(".jp-ndustria-run")
    runs.nth(1).wait_for()
    texts = [r.inner_text() for r in runs.all()]
    assert len(texts) == 2 and all("demo" in t and "failed" in t for t in texts), texts
    panel.locator(".jp-ndustria-section h3", has_text="Run #2").wait_for()  # the latest run is selected
    assert sorted(s for s, _ in statuses(panel)) == ["cached"] * 6 + ["failed", "skipped"]
    # a cache hit shows the time and memory recorded when run 1 computed it
    hit = panel.locator(".jp-ndustria-task[data-status='cached']",
                        has=page.locator(".jp-ndustria-task-name[title^='simulate(400)']"))
    assert "MiB" in hit.locator(".jp-ndustria-mem").inner_text() and " ms" in hit.locator(".jp-ndustria-time").inner_text()
    assert "numbers of run 1 (demo" in hit.locator(".jp-ndustria-mem").get_attribute("title")
    runs.nth(1).click()
    panel.locator(".jp-ndustria-section h3", has_text="Run #1").wait_for()
    rows = statuses(panel)
    assert sorted(s for s, _ in rows) == ["done"] * 6 + ["failed", "skipped"]
    text = {s: t for s, t in rows if s != "done"}
    assert "calibrate" in text["failed"] and "report" in text["skipped"]
    assert any("simulate(400)" in t and "MiB" in t for s, t in rows if s == "done")  # peak memory (memcheck)
    assert "calibration file missing" in panel.locator(".jp-ndustria-error").inner_text()
    # at the sidebar's default width every row shows its state, time, memory and engine, whole
    for row in panel.locator(".jp-ndustria-task").all():
        for part in (".jp-ndustria-badge", ".jp-ndustria-time", ".jp-ndustria-mem", ".jp-ndustria-engine"):
            assert row.locator(part).is_visible(), (part, row.inner_text())
    done = [r for r in panel.locator(".jp-ndustria-task[data-status='done']").all()]
    assert all(re.search(r"\d", r.locator(".jp-ndustria-time").inner_text()) for r in done)
    assert_nothing_clipped(panel)
    save_screenshot(page, panel, tmp_path / "panel.png")


def test_the_cache_view_at_the_default_width(page, tmp_path):
    open_panel(page)
    panel = page.locator("#ndustria-panel")
    panel.locator(".jp-ndustria-tab >> text=Cache").click()
    panel.locator(".jp-ndustria-entry").first.wait_for()
    for row in panel.locator(".jp-ndustria-entry").all():
        for part in (".jp-ndustria-size", ".jp-ndustria-age", ".jp-ndustria-used", ".jp-ndustria-delete"):
            assert row.locator(part).is_visible(), (part, row.inner_text())
        assert re.fullmatch(r"\d+(\.\d)? (B|KiB|MiB)", row.locator(".jp-ndustria-size").inner_text())
    names = assert_nothing_clipped(panel)
    # long calls are cut in the middle: their head shrinks, the argument at their end stays
    long = [n for n in names if n["text"].startswith("summarize(simulate(")]
    assert long and all(n["tail"].endswith("))") for n in long)
    assert "most recently used first" in panel.locator(".jp-ndustria-body > .jp-ndustria-meta").inner_text()
    save_screenshot(page, panel, tmp_path / "cache.png", "panel-cache.png")


def test_delete_a_cache_entry_from_the_panel(page, lab):
    open_panel(page)
    panel = page.locator("#ndustria-panel")
    panel.locator(".jp-ndustria-tab >> text=Cache").click()
    row = panel.locator(".jp-ndustria-entry", has_text="summarize(simulate(400))")
    row.wait_for()
    key = row.get_attribute("data-key")
    assert panel.locator(".jp-ndustria-entry").count() == 6
    row.locator(".jp-ndustria-delete").click()
    page.click(".jp-Dialog-button >> text=Delete")
    panel.locator(f".jp-ndustria-entry[data-key='{key}']").wait_for(state="detached")
    assert panel.locator(".jp-ndustria-entry").count() == 5
    listing = subprocess.run([sys.executable, "-m", "ndustria", "cache", "ls"], env=lab["env"],
                             capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "summarize(simulate(400))" not in listing.stdout and "summarize(simulate(200))" in listing.stdout
    assert "5 entries" in listing.stdout


LIVE = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from ndustria import Pipeline

pipe = Pipeline(name="live", executor=ThreadPoolExecutor(1))

@pipe.AddFunction()
def wait_for(flag):
    deadline = time.time() + 60
    while not Path(flag).exists() and time.time() < deadline:
        time.sleep(0.05)
    return 1

wait_for(sys.argv[1])
pipe.run()
"""


def start_live(lab: dict, flag: Path) -> subprocess.Popen:
    script = lab["tmp"] / "live.py"
    script.write_text(LIVE)
    return subprocess.Popen([sys.executable, str(script), str(flag)], env=lab["env"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def test_the_panel_follows_a_run_that_starts_while_it_is_open(page, lab):
    open_panel(page)
    panel = page.locator("#ndustria-panel")
    panel.locator(".jp-ndustria-tab >> text=Runs").click()
    heading = panel.locator(".jp-ndustria-section h3")
    heading.wait_for()
    if panel.locator(".jp-ndustria-follow").count():  # an earlier test picked an older run
        panel.locator(".jp-ndustria-follow").click()
    heading.filter(has_text="Run #2:").wait_for()
    flag = lab["tmp"] / "go"
    proc = start_live(lab, flag)
    try:  # no click: the panel notices the new run, shows it, and polls it while it runs
        heading.filter(has_text="live").wait_for(timeout=60000)
        panel.locator(".jp-ndustria-task[data-status='running']").wait_for()
        live = panel.locator(".jp-ndustria-run", has_text="live")
        assert live.locator(".jp-ndustria-badge").inner_text() == "running"
        flag.touch()
        assert proc.wait(60) == 0
        panel.locator(".jp-ndustria-task[data-status='done']").wait_for(timeout=30000)
        live.locator(".jp-ndustria-badge", has_text="done").wait_for(timeout=30000)
    finally:
        flag.touch()
        proc.kill()
        proc.wait()


def test_a_run_the_user_picked_stays_shown_when_another_starts(page, lab):
    open_panel(page)
    panel = page.locator("#ndustria-panel")
    panel.locator(".jp-ndustria-tab >> text=Runs").click()
    heading = panel.locator(".jp-ndustria-section h3")
    panel.locator(".jp-ndustria-run", has_text="demo").last.click()  # an older run than the newest
    heading.filter(has_text="demo").wait_for()
    before = panel.locator(".jp-ndustria-run").count()
    flag = lab["tmp"] / "go-again"
    proc = start_live(lab, flag)
    try:
        page.wait_for_function(f"document.querySelectorAll('#ndustria-panel .jp-ndustria-run').length > {before}",
                               timeout=60000)
        newest = panel.locator(".jp-ndustria-run").first
        assert "live" in newest.inner_text()
        panel.locator(".jp-ndustria-refresh").click()  # and another refresh: still the run picked
        assert "demo" in heading.inner_text()
        panel.locator(".jp-ndustria-follow").click()  # back to following
        heading.filter(has_text=f"Run #{newest.get_attribute('data-run-id')}:").wait_for()
        assert panel.locator(".jp-ndustria-follow").count() == 0
    finally:
        flag.touch()
        proc.kill()
        proc.wait()


VIEWS_CELLS = [
    "%load_ext ndustria\nimport numpy as np\nfrom ndustria import task",
    "@task\ndef matrix_multiplication(N):\n    rng = np.random.default_rng(N)\n    a = rng.random((N, N))\n"
    "    b = rng.random((N, N))\n    return a @ b\n\n\n@task\ndef trace(matrix):\n    total = 0.0\n"
    "    for i in range(len(matrix)):\n        total += matrix[i, i]\n    return total\n\n\n"
    "@task\ndef calibrate(matrix):\n    if matrix.shape[0] > 100:\n        raise ValueError('calibration file missing')\n"
    "    return 1.0",
    "%%ndustria --timeit --memcheck --profiling --name views\nfor N in (50, 200, 400):\n"
    "    trace(matrix_multiplication(N))\ncheck = calibrate(matrix_multiplication(400))",
]





def shoot(node, tmp_path: Path, name: str) -> None:
    node.evaluate("node => node.scrollIntoView({block: 'center'})")  # clear of the notebook's toolbar
    node.screenshot(path=str(tmp_path / name))
    keep(tmp_path / name, name)


def plot(page, title: str):
    """The rendered plotly figure whose title holds ``title``."""
    return page.locator(".jp-OutputArea-output.js-plotly-plot", has=page.locator(".gtitle", has_text=title))


def test_the_notebook_views_a_person_can_read(page, lab, tmp_path):
    write_notebook(lab["tmp"] / "root" / "views.ipynb", VIEWS_CELLS)
    page.set_viewport_size({"width": 1280, "height": 1400})  # room for the tallest view in the screenshots
    page.goto(lab["url"] + "lab/tree/views.ipynb")
    page.locator(".jp-Notebook").wait_for(timeout=60000)
    page.locator("#jp-main-statusbar", has_text="Idle").wait_for(timeout=120000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    heat = plot(page, "Line profile of views")
    heat.wait_for(timeout=180000)

    # the progress widget; the console log (a line per task) sits collapsed under it
    progress = page.locator(".jp-OutputArea-output", has=page.locator(".ndustria-console-log")).first
    assert "finished" in progress.inner_text() and "failed" in progress.inner_text()
    assert not page.get_by_text("Saved result of").first.is_visible()
    toggle = progress.locator(".ndustria-console-log .lm-AccordionPanel-title, .ndustria-console-log .p-Accordion-title,"
                              " .ndustria-console-log .jupyter-widget-Collapse-header").first
    assert re.fullmatch(r"Console log \(\d+ lines\)", toggle.inner_text().strip()), toggle.inner_text()
    toggle.click()
    page.get_by_text("Saved result of").first.wait_for()
    shoot(progress, tmp_path, "views-progress.png")

    # failures: the traceback keeps its indentation, left-aligned, monospace
    failures = page.locator(".jp-OutputArea-output", has=page.locator("table.ndustria-failures"))
    failures.locator("summary", has_text="traceback").click()
    trace = failures.locator("pre.ndustria-traceback")
    style = trace.evaluate("pre => [getComputedStyle(pre).textAlign, getComputedStyle(pre).fontFamily,"
                           " getComputedStyle(pre.parentElement.parentElement).textAlign]")
    assert style[0] == "left" and style[2] == "left" and "mono" in style[1].lower(), style
    assert "\n  File " in trace.inner_text() and "calibration file missing" in trace.inner_text()
    shoot(failures, tmp_path, "views-failures.png")

    # the line profile labels every source line of every profiled function, the hottest ones too
    labels = [t.text_content() for t in heat.locator(".yaxislayer-above .ytick text").all()]
    expected = {"matrix_multiplication": 6, "trace": 6, "calibrate": 5}  # lines of each function, @task included
    assert len(labels) == sum(expected.values()) == len(set(labels)), labels
    assert any("return a @ b" in label for label in labels) and any("total += matrix[i, i]" in label for label in labels)
    shoot(heat, tmp_path, "views-profile.png")

    # timeline, time per function (each bar labelled), heap and RSS bars (RSS as the CLI draws it)
    timeline = plot(page, "Timeline of views")
    per_function = plot(page, "Time per function")
    assert per_function.locator(".bartext").count() == 3
    heap, rss = plot(page, "Python heap"), plot(page, "process RSS")
    assert heap.count() == 1 and rss.count() == 1
    assert heap.locator(".bartext").count() >= 8  # every bar of the log axis labelled with its size
    for node, name in ((timeline, "views-timeline.png"), (per_function, "views-functions.png"),
                       (heap, "views-memory.png"), (rss, "views-rss.png")):
        shoot(node, tmp_path, name)
