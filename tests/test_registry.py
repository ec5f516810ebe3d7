"""The registry of the caches kernels use (issue 17, item 2): written whole by many writers, read safely."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from nb_helpers import run_notebook

from ndustria_nb import registry


def register_one(path: str, cache: str) -> None:
    for _ in range(20):  # many read-modify-writes racing with the other processes'
        registry.update(Path(path), [cache], "racer.ipynb")


def test_writers_racing_lose_nothing_and_readers_see_whole_files(tmp_path):
    path = tmp_path / "runtime" / registry.FILENAME
    caches = [tmp_path / f"cache{i}" for i in range(6)]
    for c in caches:
        c.mkdir()
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=register_one, args=(str(path), str(c))) for c in caches]
    for p in procs:
        p.start()
    seen = 0
    while any(p.is_alive() for p in procs):  # a reader meanwhile: never half a file
        if path.exists():
            json.loads(path.read_text())
            seen += 1
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert {u.path for u in registry.read(path)} == {str(c) for c in caches}
    assert not list(path.parent.glob("*.tmp")), "no temporary file left behind"


def test_dead_kernels_are_dropped_and_their_caches_kept_until_their_folder_goes(tmp_path):
    path, cache, gone = tmp_path / registry.FILENAME, tmp_path / "cache", tmp_path / "gone"
    cache.mkdir()
    gone.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    registry.update(path, [cache, gone], "old.ipynb", pid=int(dead.stdout))
    registry.update(path, [cache], "live.ipynb")
    uses = {u.path: u for u in registry.read(path)}
    assert [k["notebook"] for k in uses[str(cache)].kernels] == ["live.ipynb"]  # the dead one is not shown
    assert uses[str(gone)].kernels == []  # no kernel uses it now; its runs are still worth a look
    gone.rmdir()
    registry.update(path, [], "live.ipynb")  # this kernel stops
    uses = {u.path: u for u in registry.read(path)}
    assert list(uses) == [str(cache)] and uses[str(cache)].kernels == []


def test_only_a_regular_file_of_this_user_is_read(tmp_path, monkeypatch):
    path, cache = tmp_path / registry.FILENAME, tmp_path / "cache"
    cache.mkdir()
    registry.update(path, [cache], "nb.ipynb")
    assert registry.read(path)
    link = tmp_path / "link.json"
    link.symlink_to(path)
    assert registry.read(link) == []
    (tmp_path / "bad.json").write_text("{not json")
    assert registry.read(tmp_path / "bad.json") == []
    if hasattr(os, "getuid"):
        uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: uid + 1)  # as another user would see it
        assert registry.read(path) == []


@pytest.mark.slow
def test_a_kernel_registers_its_caches_and_a_pipeline_it_makes(tmp_path):
    runtime, other = tmp_path / "runtime", tmp_path / "other-cache"
    env_cell = (f"import os\nos.environ['JUPYTER_RUNTIME_DIR'] = {str(runtime)!r}\n"
                f"os.environ['NDUSTRIA_CACHE_DIR'] = {str(tmp_path / 'kernel-cache')!r}\n%load_ext ndustria")
    pid_cell = "import os\nprint(os.getpid())"
    nb = run_notebook([env_cell, pid_cell, f"from ndustria import Pipeline\np = Pipeline(cache_dir={str(other)!r})",
                       "import json\nprint(open(os.path.join(os.environ['JUPYTER_RUNTIME_DIR'], "
                       "'ndustria-caches.json')).read())"], tmp_path)
    data = json.loads(nb.cells[3].outputs[0].text)
    pid = int(nb.cells[1].outputs[0].text)
    mine = {path for path, entry in data["caches"].items() if any(k["pid"] == pid for k in entry["kernels"])}
    assert mine == {str(tmp_path / "kernel-cache"), str(other)}
