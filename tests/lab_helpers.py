"""A real JupyterLab and headless Debian chromium (Playwright) for the notebook browser tests.

One server and one browser per test module; each test opens its own notebook (a new name per test:
deleting a notebook keeps its kernel).
"""

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
import pytest

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
LONG = 180_000  # ms: a deadlock guard for waits on kernels (a shared, busy machine), never a measure


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_env(tmp: Path) -> dict[str, str]:
    """The environment of a JupyterLab (and its kernels) isolated in ``tmp``: home, settings, caches."""
    env = {**os.environ, "NDUSTRIA_CACHE_DIR": str(tmp / "server-cache"), "HOME": str(tmp / "home"),
           "NDUSTRIA_CONFIG_FILE": str(tmp / "config.toml"), "JUPYTER_CONFIG_DIR": str(tmp / "jupyter"),
           "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "ws"), "IPYTHONDIR": str(tmp / "ipython"),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    notification = tmp / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True, exist_ok=True)
    notification.write_text(json.dumps({"checkForUpdates": False, "fetchNews": "false"}))
    tracker = tmp / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True, exist_ok=True)
    tracker.write_text(json.dumps({"autoStartDefaultKernel": True}))  # no "Select Kernel" dialog
    (tmp / "home").mkdir(exist_ok=True)
    return env


@contextmanager
def jupyter_lab(root: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """A token-less JupyterLab serving ``root``; yields its URL."""
    port = free_port()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
             "--ServerApp.token=", "--ServerApp.password=", "--allow-root", f"--ServerApp.root_dir={root}"],
            env=env, stdout=subprocess.DEVNULL, stderr=out)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"jupyter lab exited with {proc.returncode}: see {log}")
                try:
                    with urllib.request.urlopen(url + "api/status", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"jupyter lab did not answer: see {log}") from None
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def browser(profile: Path) -> Iterator[Any]:
    """A page of headless Debian chromium (never `playwright install`)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: run scripts/test.sh (as root it runs `apt-get install -y chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=chromium, headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 900})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            context.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def open_notebook(page: Any, url: str, name: str) -> Any:
    """Open ``name`` in a fresh lab page; wait for its kernel to be idle. Returns the notebook panel."""
    page.goto(f"{url}lab/tree/{name}?reset")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").last
    panel.wait_for()
    panel.locator(".jp-Toolbar-kernelName", has_text="Python 3").wait_for(timeout=LONG)
    wait_idle(page)
    return panel


def wait_idle(page: Any) -> None:
    """Until the current notebook's kernel is idle (the toolbar's kernel status)."""
    page.wait_for_function(
        """() => {
            const nb = [...document.querySelectorAll('.jp-NotebookPanel')].find(n => !n.classList.contains('lm-mod-hidden'));
            const status = nb && nb.querySelector('.jp-Notebook-ExecutionIndicator');
            return status && status.getAttribute('data-status') === 'idle';
        }""", timeout=LONG)


def command(page: Any, label: str) -> None:
    """Run a command from the palette, as a user would."""
    page.keyboard.press("Control+Shift+c")
    page.fill(".lm-CommandPalette-input", label)
    page.locator(".lm-CommandPalette-item", has_text=label).first.click()


def wait_all_ran(page: Any) -> None:
    """Until every code cell of the current notebook shows an execution count (none queued or running)."""
    page.wait_for_function(
        """() => {
            const nb = [...document.querySelectorAll('.jp-NotebookPanel')].find(n => !n.classList.contains('lm-mod-hidden'));
            const prompts = nb ? [...nb.querySelectorAll('.jp-CodeCell .jp-InputPrompt')] : [];
            return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p.textContent.trim()));
        }""", timeout=LONG)
    wait_idle(page)


def run_all(page: Any) -> None:
    """Run every cell of a notebook that has not run yet; wait until all ran."""
    command(page, "Run All Cells")
    wait_all_ran(page)


def cells(panel: Any) -> Any:
    return panel.locator(".jp-Cell.jp-CodeCell")


def output_text(panel: Any, index: int) -> str:
    """(textContent: cells scrolled out of view are not rendered, but their text is there)"""
    return cells(panel).nth(index).locator(".jp-OutputArea").text_content() or ""


def prompt(panel: Any, index: int) -> str:
    return (cells(panel).nth(index).locator(".jp-InputPrompt").text_content() or "").strip()


def marker(panel: Any, index: int) -> Any:
    return cells(panel).nth(index).locator(".jp-ndustria-cellstate")


def wait_states(page: Any, panel: Any, expected: dict[int, str]) -> None:
    """Until the cells at these indices show these states."""
    for index, state in expected.items():
        marker(panel, index).and_(page.locator(f"[data-state='{state}']")).wait_for(timeout=LONG)


def widen_sidebar(page: Any, by: int) -> None:
    """Drag the left sidebar's edge ``by`` pixels to the right."""
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + by, box["y"] + box["height"] / 2, steps=5)
    page.mouse.up()
