"""The server extension sees every cache its kernels use, and draws a run's graph (issue 17, items 2 and 4).

A real jupyter_server through pytest-jupyter's ``jp_fetch`` (imported into this module only: see
tests/test_server_extension.py); its runtime folder is ``jp_runtime_dir``, where kernels register caches.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403 - fixtures for this module only
from tornado.httpclient import HTTPClientError

from ndustria import Pipeline, TaskError
from ndustria_nb import registry


@pytest.fixture
def jp_server_config(cache_dir: Path) -> dict:
    return {"ServerApp": {"jpserver_extensions": {"ndustria_nb": True}}, "NdustriaServer": {"cache_dir": str(cache_dir)}}


@pytest.fixture
def api(jp_fetch, jp_asyncio_loop):
    return lambda *parts, **kwargs: jp_asyncio_loop.run_until_complete(jp_fetch("ndustria", "api", *parts, **kwargs))


def get(api, *parts: str, **params: str) -> dict:
    response = api(*parts, params=params)
    assert response.code == 200
    return json.loads(response.body)


def error(api, *parts: str, **kwargs) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        api(*parts, **kwargs)
    return info.value.code, json.loads(info.value.response.body)


def kernel_run(cache: Path, name: str = "elsewhere") -> None:
    """What a notebook kernel using another cache leaves: a run with a failure, a second run with hits."""
    for _ in range(2):
        pipe = Pipeline(name=name, cache_dir=cache, verbose=False)

        @pipe.AddFunction()
        def load(n):
            return list(range(n))

        @pipe.AddFunction()
        def total(data):
            return sum(data)

        @pipe.AddFunction()
        def broken(data):
            raise ValueError("bad data")

        total(load(10))
        broken(load(10))
        with pytest.raises(TaskError):
            pipe.run()
        pipe.close()


def test_the_sidebar_sees_a_kernels_cache(api, cache_dir, tmp_path, jp_runtime_dir):
    other = tmp_path / "kernel-cache"
    kernel_run(other)
    registry.update(Path(jp_runtime_dir) / registry.FILENAME, [other], "elsewhere.ipynb")
    listing = get(api, "caches")
    assert listing["default"] == str(cache_dir)
    first, second = listing["caches"]
    assert first["path"] == str(cache_dir) and first["default"] and not first["has_runs"]
    assert second["path"] == str(other) and second["has_runs"] and not second["default"]
    assert [k["notebook"] for k in second["kernels"]] == ["elsewhere.ipynb"]

    runs = get(api, "runs", cache=str(other))
    assert runs["cache_dir"] == str(other) and [r["pipeline"] for r in runs["runs"]] == ["elsewhere"] * 2
    tasks = get(api, "runs", "1", "tasks", cache=str(other))["tasks"]
    assert sorted(t["status"] for t in tasks) == ["done", "done", "failed"]
    assert len(get(api, "cache", cache=str(other))["entries"]) == 2
    code, body = error(api, "runs")  # the server's own cache is still the default, and has no runs
    assert code == 404 and str(cache_dir) in body["message"]


def test_only_registered_caches_of_the_servers_user_are_read(api, cache_dir, tmp_path, jp_runtime_dir, monkeypatch):
    stranger = tmp_path / "not-registered"
    kernel_run(stranger)
    code, body = error(api, "runs", params={"cache": str(stranger)})
    assert code == 403 and "not a cache this server shows" in body["message"]
    code, _ = error(api, "cache", "abcdef", method="DELETE", params={"cache": str(stranger)})
    assert code == 403
    registry.update(Path(jp_runtime_dir) / registry.FILENAME, [stranger], "nb.ipynb")
    assert get(api, "runs", cache=str(stranger))["runs"]
    if hasattr(os, "getuid"):
        uid = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: uid + 1)  # the folders now belong to someone else
        assert [c["path"] for c in get(api, "caches")["caches"]] == [str(cache_dir)]
        code, body = error(api, "runs", params={"cache": str(stranger)})
        assert code == 403


def test_caches_and_graph_need_the_token(api, cache_dir):
    kernel_run(cache_dir)
    for parts in (("caches",), ("runs", "1", "graph")):
        code, body = error(api, *parts, headers={"Authorization": ""})
        assert code == 403 and body["code"] == 403


def test_the_graph_of_a_run_has_states_durations_and_edges(api, cache_dir):
    kernel_run(cache_dir)
    first, second = (get(api, "runs", run_id, "graph") for run_id in ("1", "2"))
    by_task = {n["task"]: n for n in first["nodes"]}
    assert set(by_task) == {"load(10)", "total(load(10))", "broken(load(10))"}
    assert {n["status"] for n in first["nodes"]} == {"done", "failed"}
    assert all(n["duration"] is not None and n["duration"] >= 0 for n in first["nodes"])
    keys = {task: n["key"] for task, n in by_task.items()}
    assert sorted(map(tuple, first["edges"])) == sorted([(keys["load(10)"], keys["total(load(10))"]),
                                                        (keys["load(10)"], keys["broken(load(10))"])])
    again = {n["task"]: n for n in second["nodes"]}
    assert again["load(10)"]["status"] == "cached" and again["load(10)"]["computed_in"] == 1
    assert again["load(10)"]["duration"] == by_task["load(10)"]["duration"]  # what the hit saved
    assert again["broken(load(10))"]["status"] == "failed" and "bad data" in again["broken(load(10))"]["error"]
    code, body = error(api, "runs", "99", "graph")
    assert code == 404 and "ndustria runs" in body["message"]


def test_a_run_recorded_before_edges_were_kept_has_nodes_only(api, cache_dir):
    kernel_run(cache_dir)
    with sqlite3.connect(cache_dir / "catalog.sqlite") as db:
        db.execute("UPDATE run_members SET deps = NULL WHERE run_id = 1")
    graph = get(api, "runs", "1", "graph")
    assert graph["edges"] is None and len(graph["nodes"]) == 3


def test_a_cache_path_is_compared_as_an_absolute_path(api, cache_dir, tmp_path, jp_runtime_dir, monkeypatch):
    other = tmp_path / "kernel-cache"
    kernel_run(other)
    registry.update(Path(jp_runtime_dir) / registry.FILENAME, [other], "nb.ipynb")
    monkeypatch.chdir(tmp_path)
    assert get(api, "runs", cache="kernel-cache/../kernel-cache")["cache_dir"] == str(other)
