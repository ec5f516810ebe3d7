"""The JupyterLab sidebar in a real JupyterLab, driven by headless Chromium (Debian's, via Playwright)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "panel.png"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def widen_sidebar(page, by: int) -> None:
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + by, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()


def save_screenshot(page, panel, path: Path) -> None:
    """The panel down to the end of its content (docs/panel.png, shown in the README).

    docs/panel.png is written when missing or with NDUSTRIA_UPDATE_SCREENSHOT=1, so that
    running the tests does not change a committed file.
    """
    top, body = panel.bounding_box(), panel.locator(".jp-ndustria-body").bounding_box()
    clip = {"x": top["x"], "y": top["y"], "width": top["width"], "height": body["y"] + body["height"] - top["y"] + 8}
    png = page.screenshot(path=str(path), clip=clip)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if not SCREENSHOT.exists() or os.environ.get("NDUSTRIA_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, SCREENSHOT)


def test_panel_shows_the_runs_and_their_tasks(page, tmp_path):
    open_panel(page)
    tab = page.locator(".jp-SideBar .lm-TabBar-tab[data-id='ndustria-panel']")
    assert "ndustria" in (tab.get_attribute("title") or "") + tab.inner_text()
    panel = page.locator("#ndustria-panel")
    runs = panel.locator(".jp-ndustria-run")
    runs.nth(1).wait_for()
    assert runs.count() == 2 and all("demo" in r.inner_text() and "failed" in r.inner_text() for r in runs.all())
    panel.locator(".jp-ndustria-section h3", has_text="Run #2").wait_for()  # the latest run is selected
    assert sorted(s for s, _ in statuses(panel)) == ["cached"] * 6 + ["failed", "skipped"]
    runs.nth(1).click()
    panel.locator(".jp-ndustria-section h3", has_text="Run #1").wait_for()
    rows = statuses(panel)
    assert sorted(s for s, _ in rows) == ["done"] * 6 + ["failed", "skipped"]
    text = {s: t for s, t in rows if s != "done"}
    assert "calibrate" in text["failed"] and "report" in text["skipped"]
    assert any("simulate(400)" in t and "MiB" in t for s, t in rows if s == "done")  # peak memory (memcheck)
    assert "calibration file missing" in panel.locator(".jp-ndustria-error").inner_text()
    widen_sidebar(page, 230)
    save_screenshot(page, panel, tmp_path / "panel.png")


def test_delete_a_cache_entry_from_the_panel(page, lab):
    open_panel(page)
    panel = page.locator("#ndustria-panel")
    panel.locator(".jp-ndustria-tab >> text=Cache").click()
    row = panel.locator(".jp-ndustria-entry", has_text="summarize(simulate(400))")
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


def test_the_panel_follows_a_run_in_progress(page, lab):
    open_panel(page)
    panel = page.locator("#ndustria-panel")
    panel.locator(".jp-ndustria-tab >> text=Runs").click()
    script, flag = lab["tmp"] / "live.py", lab["tmp"] / "go"
    script.write_text(LIVE)
    proc = subprocess.Popen([sys.executable, str(script), str(flag)], env=lab["env"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        live = panel.locator(".jp-ndustria-run", has_text="live")
        for _ in range(100):  # the idle refresh is slow: ask for one once the run has started
            panel.locator(".jp-ndustria-refresh").click()
            if live.count():
                break
            time.sleep(0.2)
        live.click()
        panel.locator(".jp-ndustria-task[data-status='running']").wait_for()
        assert live.locator(".jp-ndustria-badge").inner_text() == "running"
        flag.touch()
        assert proc.wait(60) == 0
        # no click: the panel polls while a run is active
        panel.locator(".jp-ndustria-task[data-status='done']").wait_for(timeout=10000)
        live.locator(".jp-ndustria-badge", has_text="done").wait_for(timeout=10000)
    finally:
        flag.touch()
        proc.kill()
        proc.wait()
