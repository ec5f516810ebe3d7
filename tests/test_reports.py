"""Report functions: rows from the catalog, text tables (human units, sorted, totals), plotly figures."""

from __future__ import annotations

import subprocess
import sys

from ndustria import Pipeline, units
from ndustria.show import figures, reports


def helper(n):
    return sum(i for i in range(n))


def run_pipeline(name: str = "rep", **flags) -> Pipeline:
    pipe = Pipeline(name=name, verbose=False, **flags)

    @pipe.AddFunction()
    def load(i):
        return list(range(1000 * (i + 1)))

    @pipe.AddFunction()
    def reduce(values):
        return helper(len(values))

    for i in range(3):
        reduce(load(i))
    pipe.run()
    return pipe


def test_rows_tables_and_totals(cache_dir):
    pipe = run_pipeline(timeit=True, memcheck=True, profiling=True)
    keys = pipe.catalog.pipeline_keys("rep")
    assert len(keys) == 6

    timing = reports.timing_rows(pipe.catalog, keys)
    assert [r["task"] for r in timing][:2] == ["load(0)", "reduce(load(0))"]
    table = reports.timing_table(timing)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["TASK", "FUNCTION", "ENGINE"]
    assert "total: 6 tasks" in table and "SHARE" in table
    walls = sorted((r["wall_s"] for r in timing), reverse=True)
    assert lines[1].startswith(next(r["task"] for r in timing if r["wall_s"] == walls[0]))  # longest first
    assert any(unit in table for unit in ("µs", "ms"))

    totals = reports.function_totals(timing)
    assert {t["function"] for t in totals} == {"load", "reduce"}
    assert sum(t["tasks"] for t in totals) == 6 and abs(sum(t["share"] for t in totals) - 1) < 1e-9

    memory = reports.memory_rows(pipe.catalog, keys)
    assert len(memory) == 6 and all(r["peak_bytes"] is not None for r in memory)
    mtable = reports.memory_table(memory)
    assert "max of 6 tasks" in mtable and ("KiB" in mtable or "MiB" in mtable)

    profile = reports.profile_rows(pipe.catalog, keys)
    text = reports.profile_text(profile)
    assert text.count("Task: ") == 6 and text.count("helper at line") == 3
    assert "Line #" in text and "% Time" in text


def test_human_units():
    assert units.human_bytes(512) == "512 B"
    assert units.human_bytes(80_000_000) == "76.3 MiB"
    assert units.human_bytes(None) == "-"
    assert units.human_seconds(0.0000042) == "4 µs"
    assert units.human_seconds(0.05) == "50.0 ms"
    assert units.human_seconds(3.5) == "3.50 s"
    assert units.human_seconds(600) == "10.0 min"


def test_runs_rows(cache_dir):
    run_pipeline()
    run_pipeline()  # all cached
    rows = reports.runs_rows(Pipeline(name="x", verbose=False).catalog, "rep")
    assert [r["run"] for r in rows] == [0, 6]  # newest first
    assert rows[0]["cached"] == 6 and rows[0]["failed"] == 0 and rows[1]["backend"] == "serial"
    assert "PIPELINE" in reports.runs_table(rows) and "rep" in reports.runs_table(rows)


def test_figures(cache_dir, tmp_path):
    import plotly  # noqa: F401
    pipe = run_pipeline(timeit=True, memcheck=True, profiling=True)
    keys = pipe.catalog.pipeline_keys("rep")
    timing = reports.timing_rows(pipe.catalog, keys)

    gantt = figures.timeline_figure(timing)
    assert {t.name for t in gantt.data} == {"load", "reduce"}  # coloured by function
    assert all(t.orientation == "h" for t in gantt.data)
    assert {y for t in gantt.data for y in t.y} == {r["engine"] for r in timing}  # one row per engine

    per_fn = figures.function_time_figure(reports.function_totals(timing))
    assert set(per_fn.data[0].y) == {"load", "reduce"}

    memory = figures.memory_figure(reports.memory_rows(pipe.catalog, keys))
    # tracemalloc starts with each task: the heap's initial size is always 0, so it is not a series
    assert [t.name for t in memory.data] == ["peak", "final"] and memory.layout.barmode == "group"
    rss = figures.memory_figure(reports.memory_rows(pipe.catalog, keys), rss=True)
    assert [t.name for t in rss.data] == ["initial", "peak", "final"]
    assert all(b > 0 for t in rss.data for b in t.y)
    # small values stay visible: a log axis, and every bar labelled outside with its size
    assert memory.layout.yaxis.type == "log" and all(t.textposition == "outside" for t in memory.data)
    assert all(len(t.text) == 6 and all(x.endswith("B") for x in t.text) for t in memory.data)

    profile = reports.profile_rows(pipe.catalog, keys)
    heat = figures.profile_figure(profile)
    assert heat.data[0].type == "heatmap" and len(heat.data[0].x) == 6
    assert any("helper" in label for label in heat.data[0].y)
    # every profiled source line has its own tick label (plotly would thin a crowded axis), and the
    # figure grows with its lines
    lines = {(r["file"], r["func_name"], r["lineno"]) for r in profile}
    assert list(heat.layout.yaxis.tickvals) == list(heat.layout.yaxis.ticktext) == list(heat.data[0].y)
    assert len(heat.data[0].y) == len(lines)
    assert heat.layout.height >= figures.LINE_HEIGHT * len(lines)
    assert all(t.textposition == "outside" for t in per_fn.data)  # a function that took little is still read

    out = figures.write_html([gantt, memory], tmp_path / "r.html")
    html = out.read_text()
    assert html.count("Plotly.newPlot") == 2 and "plotly.js" in html


def test_scripts_do_not_import_plotly(cache_dir):
    code = (
        "import sys\n"
        "from ndustria import Pipeline\n"
        "pipe = Pipeline(name='np', timeit=True, memcheck=True, profiling=True, verbose=False)\n"
        "@pipe.AddFunction()\n"
        "def f(x):\n"
        "    return x\n"
        "f(1)\n"
        "pipe.run()\n"
        "assert 'plotly' not in sys.modules, 'plotly imported by a script run'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
