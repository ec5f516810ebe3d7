"""``%%ndustria`` in a real kernel: the kernel cluster, widgets and views, failures, and no orphans at exit.

One kernel serves the whole file (its cluster is started once); the last test shuts it down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.manager import KernelManager
from nb_helpers import setup_cell

pytestmark = pytest.mark.slow

WIDGET = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"


class Kernel:
    """A kernel and a way to run code in it, collecting its outputs."""

    def __init__(self, cwd: Path) -> None:
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env={**os.environ})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                outputs.append({"type": msg["msg_type"], **msg["content"]})

        self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        return outputs

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def text(outputs: list[dict[str, Any]]) -> str:
    return "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)


def mimes(outputs: list[dict[str, Any]]) -> set[str]:
    return {m for o in outputs for m in o.get("data", {})}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    tmp = tmp_path_factory.mktemp("nbpar")
    k = Kernel(tmp)
    assert not [o for o in k.run(setup_cell(tmp / "cache")) if o["type"] == "error"]
    k.run("from ndustria import task\nimport time\n@task\ndef square(x):\n    return x * x\n"
          "@task\ndef total(xs):\n    return sum(xs)\n@task\ndef broken(x):\n    raise ValueError(f'bad {x}')\n")
    yield k
    if k.km.is_alive():
        k.shutdown()


def test_ndustria_cell_runs_in_parallel_with_widgets_and_caches(kernel: Kernel) -> None:
    cell = "%%ndustria --parallel --engines 2 --timeit --memcheck\nparts = [square(i) for i in range(4)]\nt = total(parts)"
    out = kernel.run(cell, timeout=180)
    assert not [o for o in out if o["type"] == "error"], out
    assert WIDGET in mimes(out) and PLOTLY in mimes(out) and "text/html" in mimes(out)
    assert text(kernel.run("print(t.result(), t.status)")).strip() == "14 done"
    assert "2 local engines" in text(kernel.run("%ndustria cluster"))

    again = kernel.run(cell, timeout=120)  # same cluster, everything cached
    assert text(kernel.run("print(t.result(), t.status)")).strip() == "14 cached"
    assert WIDGET in mimes(again)
    assert PLOTLY in mimes(kernel.run("%ndustria timeline"))


def test_failures_show_a_table_with_tracebacks(kernel: Kernel) -> None:
    out = kernel.run("%%ndustria\nok = square(10)\nbad = broken(3)")
    assert not [o for o in out if o["type"] == "error"], out
    html = "".join(o["data"].get("text/html", "") for o in out if o["type"] == "display_data")
    assert "<details>" in html and "bad 3" in html and "broken(3)" in html
    assert text(kernel.run("print(ok.result())")).strip() == "100"


def _cluster_processes(cluster_id: str, pids: set[int]) -> list[psutil.Process]:
    alive = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
        if proc.info["pid"] in pids or (cluster_id and cluster_id in cmd):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.Error:
                continue
    return alive


def test_no_orphan_engines_or_controller_after_kernel_shutdown(kernel: Kernel) -> None:
    probe = ("from ndustria_nb.kernel import get_state\nc = get_state(get_ipython()).cluster\n"
             "import os\nprint(c.cluster.cluster_id)\n"
             "print(*c.client[:].apply_sync(os.getpid), c.cluster.controller.process.pid)")
    lines = text(kernel.run(probe)).split("\n")
    cluster_id, pids = lines[0].strip(), {int(p) for p in lines[1].split()}
    assert len(pids) == 3 and _cluster_processes(cluster_id, pids)
    kernel.shutdown()
    deadline = time.monotonic() + 40
    while _cluster_processes(cluster_id, pids) and time.monotonic() < deadline:
        time.sleep(1)
    assert not _cluster_processes(cluster_id, pids)
