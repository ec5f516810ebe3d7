"""The server extension's JSON API, served by a real jupyter_server (pytest-jupyter's jp_fetch).

pytest-jupyter's fixtures are imported into this module, not registered as a plugin: its autouse
event-loop fixtures then stay out of every other test (the browser tests' Playwright among them).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from jupyter_core.paths import jupyter_config_path
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures for this module only (see above)
from tornado.httpclient import HTTPClientError

import ndustria
from ndustria import Pipeline, TaskError
from ndustria.record.catalog import Catalog
from ndustria.store.entries import Store
from ndustria_nb.server import core


@pytest.fixture
def jp_server_config(cache_dir: Path) -> dict:
    return {"ServerApp": {"jpserver_extensions": {"ndustria_nb": True}}, "NdustriaServer": {"cache_dir": str(cache_dir)}}


def populate(cache_dir: Path) -> Pipeline:
    """A finished run: two tasks done, one failed, one skipped behind it."""
    pipe = Pipeline(name="srvtest", cache_dir=cache_dir, memcheck=True, verbose=False)

    @pipe.AddFunction()
    def load(n):
        return list(range(n))

    @pipe.AddFunction()
    def broken(data):
        raise ValueError("bad data")

    @pipe.AddFunction()
    def after(x):
        return x

    load(10)
    load(20)
    after(broken(load(10)))
    with pytest.raises(TaskError):
        pipe.run()
    return pipe


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    """``api("runs", method=...)``: one request to ``/ndustria/api/...`` with the server's token."""
    return lambda *parts, **kwargs: jp_asyncio_loop.run_until_complete(jp_fetch("ndustria", "api", *parts, **kwargs))


def get(api, *parts: str) -> dict:
    response = api(*parts)
    assert response.code == 200
    return json.loads(response.body)


def error(api, *parts: str, **kwargs) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        api(*parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)


def test_runs_and_tasks(api, cache_dir):
    populate(cache_dir)
    (run,) = (get(api, "runs"))["runs"]
    assert run["pipeline"] == "srvtest" and run["state"] == "failed" and run["backend"]
    assert run["counts"]["done"] == 2 and run["counts"]["failed"] == 1 and run["counts"]["skipped"] == 1
    assert run["start"] <= run["end"]
    data = get(api, "runs", str(run["run_id"]), "tasks")
    by_status = {t["status"]: t for t in data["tasks"]}
    assert set(by_status) == {"done", "failed", "skipped"}
    assert "bad data" in by_status["failed"]["error"]
    done = by_status["done"]
    assert done["duration"] >= 0 and done["engine"] and done["peak_memory"] > 0
    assert "broken" in by_status["skipped"]["error"]


def test_cached_tasks_in_a_second_run(api, cache_dir):
    for _ in range(2):
        pipe = Pipeline(name="again", cache_dir=cache_dir, verbose=False)
        pipe.AddFunction()(lambda x: x + 1)(1)
        pipe.run()
    runs = (get(api, "runs"))["runs"]
    assert runs[0]["counts"]["cached"] == 1 and runs[0]["counts"]["total"] == 1
    tasks = (get(api, "runs", str(runs[0]["run_id"]), "tasks"))["tasks"]
    assert [t["status"] for t in tasks] == ["cached"]


def test_cache_list_and_delete(api, cache_dir):
    populate(cache_dir)
    entries = (get(api, "cache"))["entries"]
    assert len(entries) == 2 and all(e["size"] > 0 and e["age"] >= 0 for e in entries)
    key = entries[0]["key"]
    response = api("cache", key, method="DELETE")
    assert json.loads(response.body)["removed"] is True
    assert key not in set(Store(cache_dir).keys())
    assert Catalog(cache_dir, readonly=True).entry(key) is None
    assert [e["key"] for e in (get(api, "cache"))["entries"]] == [entries[1]["key"]]
    code, body = error(api, "cache", key, method="DELETE")
    assert code == 404 and body["code"] == 404 and "ndustria cache ls" in body["message"]


def test_errors_are_json_and_say_what_to_run(api, cache_dir):
    code, body = error(api, "runs")
    assert code == 404 and "run a pipeline first" in body["message"] and str(cache_dir) in body["message"]
    populate(cache_dir)
    code, body = error(api, "runs", "999", "tasks")
    assert code == 404 and "ndustria runs" in body["message"]
    code, body = error(api, "cache", "not a key!", method="DELETE")
    assert code == 400 and "invalid store key" in body["message"]


def test_a_request_without_the_token_is_refused(api, cache_dir):
    populate(cache_dir)
    for parts, method in ((("runs",), "GET"), (("runs", "1", "tasks"), "GET"), (("cache",), "GET"),
                          (("cache", "abcdef"), "DELETE")):
        code, body = error(api, *parts, method=method, headers={"Authorization": ""})
        assert code == 403 and body["code"] == 403
    assert len(list(Store(cache_dir).keys())) == 2


LIVE_SCRIPT = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from ndustria import Pipeline

pipe = Pipeline(name="live", executor=ThreadPoolExecutor(1), verbose=False)

@pipe.AddFunction()
def wait_for(flag):
    deadline = time.time() + 60
    while not Path(flag).exists() and time.time() < deadline:
        time.sleep(0.05)
    return 1

@pipe.AddFunction()
def after(x):
    return x + 1

after(wait_for(sys.argv[1]))
pipe.run()
"""


def poll_runs(api, until, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            runs = (get(api, "runs"))["runs"]
        except HTTPClientError:
            runs = []
        if runs and until(runs[0]):
            return runs[0]
        time.sleep(0.1)
    raise AssertionError("the run did not reach the expected state in time")


def test_sees_a_run_in_progress_in_another_process(api, cache_dir, tmp_path):
    script, flag = tmp_path / "live.py", tmp_path / "go"
    script.write_text(LIVE_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(flag)], stderr=subprocess.PIPE, text=True)
    try:
        run = poll_runs(api, lambda r: r["counts"]["running"] == 1)
        assert run["state"] == "running" and run["pipeline"] == "live" and run["end"] is None
        assert run["counts"]["queued"] == 1
        tasks = (get(api, "runs", str(run["run_id"]), "tasks"))["tasks"]
        assert sorted(t["status"] for t in tasks) == ["queued", "running"]
        flag.touch()
        assert proc.wait(60) == 0
        run = poll_runs(api, lambda r: r["state"] != "running")
        assert run["state"] == "done" and run["counts"]["done"] == 2
    finally:
        flag.touch()
        proc.kill()
        print(proc.communicate()[1])


def test_a_run_whose_process_died_shows_as_interrupted(cache_dir):
    script = "import sys; from ndustria.record.catalog import Catalog; Catalog(sys.argv[1]).start_run('gone', 'serial', 1, {})"
    cache_dir.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", script, str(cache_dir)], check=True, timeout=60)
    (run,) = core.list_runs(cache_dir)
    assert run["pipeline"] == "gone" and run["state"] == "interrupted"


def test_peak_memory_reads_the_metrics_json():
    assert core.peak_memory(json.dumps({"memory": {"peak_bytes": 5, "rss_peak_bytes": 9}})) == 5
    assert core.peak_memory(json.dumps({"memory": {"rss_peak_bytes": 9}})) == 9
    assert core.peak_memory(None) is None and core.peak_memory("not json") is None


def jupyter(*args: str) -> str:
    exe = Path(sys.executable).with_name("jupyter")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


def test_installed_extensions_are_enabled():
    """After `pip install`, JupyterLab lists both halves as enabled, with no extra step."""
    lab = next(line for line in jupyter("labextension", "list").splitlines() if "ndustria-labextension" in line)
    assert "enabled" in lab and "OK" in lab
    configs = [Path(d) / "jupyter_server_config.d" / "ndustria_nb.json" for d in jupyter_config_path()]
    (config,) = [json.loads(p.read_text()) for p in configs if p.is_file()]
    assert config["ServerApp"]["jpserver_extensions"]["ndustria_nb"] is True


def test_the_wheel_ships_the_built_extension(tmp_path):
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(root)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("ndustria-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = f"ndustria-{ndustria.__version__}.data/data/"
    share = data + "share/jupyter/labextensions/ndustria-labextension/"
    assert {share + "package.json", share + "install.json"} <= set(names)
    assert any(n.startswith(share + "static/remoteEntry.") for n in names)
    assert data + "etc/jupyter/jupyter_server_config.d/ndustria_nb.json" in names
