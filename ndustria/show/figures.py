"""Plotly figures of the report rows (:mod:`ndustria.show.reports`): timeline, time per function,
memory, line-profile heat view; for ``ndustria -t/-m/-p NAME --html`` and the notebook's views.

plotly is imported inside each figure function only: a script (or a CLI report printed as text)
never pays for it. Every figure keeps small values readable: a bar too short to see gets its value
as a label outside it (or a minimum width, with the true one on hover), amounts spanning orders of
magnitude get a log axis, and every profiled source line gets its own label.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ndustria.atomic import publish_whole
from ndustria.install import require
from ndustria.show.reports import group_profile
from ndustria.units import human_bytes, human_seconds

LINE_HEIGHT = 22  # pixels per source line of the heat view: every line keeps its label
MIN_BAR = 0.004  # the shortest bar drawn in a timeline, as a share of its span (the hover has the true length)


def _go() -> Any:
    require("plotly", "figures (--html, notebook views)")
    import plotly.graph_objects as go

    return go


def timeline_figure(rows: Sequence[dict[str, Any]], title: str = "Timeline") -> Any:
    """Gantt chart: one row per engine, one bar per task (start to end), coloured by function.

    Rows of one run (with ``origin``) show the tasks that run computed; when it computed none (every
    task a cache hit), the hits as their own runs computed them, one row per run and engine."""
    go = _go()
    from plotly.colors import qualitative

    rows = [r for r in rows if r.get("start") and r.get("end")]
    mine = [r for r in rows if r.get("origin", "this run") == "this run"]
    earlier = not mine and bool(rows)
    rows = rows if earlier else mine
    starts: dict[Any, float] = {}
    for r in rows:
        run = r.get("run_id") if earlier else None
        starts[run] = min(starts.get(run, r["start"]), r["start"])
    span = max((r["end"] - starts[r.get("run_id") if earlier else None] for r in rows), default=0.0)

    def lane(r: dict[str, Any]) -> str:
        return f"run {r.get('run_id')}: {r['engine']}" if earlier else str(r["engine"])

    fig = go.Figure()
    palette = list(qualitative.Plotly)
    for i, fn in enumerate(dict.fromkeys(r["function"] for r in rows)):
        ours = [r for r in rows if r["function"] == fn]
        fig.add_trace(go.Bar(
            name=fn, orientation="h", y=[lane(r) for r in ours],
            base=[r["start"] - starts[r.get("run_id") if earlier else None] for r in ours],
            x=[max(r["end"] - r["start"], MIN_BAR * span, 1e-6) for r in ours], marker_color=palette[i % len(palette)],
            customdata=[[r["task"], human_seconds(r["wall_s"]), human_seconds(r["cpu_s"]), r.get("origin", "")]
                        for r in ours],
            hovertemplate="%{customdata[0]}<br>wall %{customdata[1]}, cpu %{customdata[2]}<br>%{customdata[3]}"
                          "<extra>" + fn + "</extra>",
        ))
    if earlier:
        title += " (every task was a cache hit: as the runs that computed them ran)"
    fig.update_layout(title=title, barmode="overlay", legend_title="function", yaxis_title="engine",
                      xaxis_title="seconds since the run's first task started")
    fig.update_yaxes(type="category", categoryorder="category ascending")
    return fig


def function_time_figure(totals: Sequence[dict[str, Any]], title: str = "Time per function") -> Any:
    """Horizontal bars: total wall time per function (rows of :func:`reports.function_totals`), each
    labelled with its time outside the bar, so a function that took little is still read."""
    go = _go()
    totals = sorted(totals, key=lambda r: r["total_s"])
    fig = go.Figure(go.Bar(
        orientation="h", y=[r["function"] for r in totals], x=[r["total_s"] for r in totals],
        text=[f"{human_seconds(r['total_s'])} ({r['tasks']} task{'s' if r['tasks'] != 1 else ''})" for r in totals],
        textposition="outside",
        cliponaxis=False, customdata=[human_seconds(r["mean_s"]) for r in totals],
        hovertemplate="%{y}: %{text}<br>mean %{customdata}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title="wall seconds (sum over tasks)", yaxis_title="function",
                      height=max(300, 140 + 40 * len(totals)), margin={"r": 120})
    return fig


def memory_figure(rows: Sequence[dict[str, Any]], title: str = "Memory per task", rss: bool = False) -> Any:
    """Grouped bars per task on a log axis, each labelled with its size: heap peak and final
    (tracemalloc starts with each task, so its initial size is always 0 and not drawn), or, with
    ``rss=True``, the process's RSS at start, peak and end."""
    go = _go()
    prefix, stages = ("rss_", ("initial", "peak", "final")) if rss else ("", ("peak", "final"))
    rows = [r for r in rows if r.get(f"{prefix}peak_bytes") is not None]
    fig = go.Figure()
    for stage in stages:
        values = [r.get(f"{prefix}{stage}_bytes") for r in rows]
        fig.add_trace(go.Bar(name=stage, x=[r["task"] for r in rows], y=[v if v else None for v in values],
                             text=[human_bytes(v) for v in values], textposition="outside", cliponaxis=False,
                             hovertemplate="%{x}<br>" + stage + " %{text}<extra></extra>"))
    kind = "process RSS" if rss else "Python heap (tracemalloc)"
    longest = max((len(r["task"]) for r in rows), default=0)  # the task names under the axis, turned
    fig.update_layout(title=f"{title}: {kind}", barmode="group", xaxis_title="task", yaxis_title="bytes (log scale)",
                      height=360 + min(250, 6 * longest))
    fig.update_yaxes(type="log")
    return fig


def profile_figure(rows: Sequence[dict[str, Any]], title: str = "Line profile") -> Any:
    """Heat view: one row per source line of each profiled function, one column per task, colour and
    label = seconds on that line. The figure grows with its lines, so every line keeps its label."""
    go = _go()
    grouped = group_profile(rows)
    tasks = list(grouped)
    labels: dict[tuple[str, str, int], str] = {}
    for functions in grouped.values():
        for (file, _first, name), lines in functions.items():
            for r in lines:
                short = name.rsplit(".", 1)[-1]
                labels.setdefault((file, name, r["lineno"]), f"{short}:{r['lineno']}  {r['source'].strip()[:60]}")
    index = {k: i for i, k in enumerate(labels)}
    z: list[list[float | None]] = [[None] * len(tasks) for _ in labels]
    text: list[list[str]] = [[""] * len(tasks) for _ in labels]
    for j, task in enumerate(tasks):
        for (file, _first, name), lines in grouped[task].items():
            for r in lines:
                if r["hits"]:
                    i = index[(file, name, r["lineno"])]
                    z[i][j], text[i][j] = r["time_s"], human_seconds(r["time_s"])
    y = list(labels.values())
    fig = go.Figure(go.Heatmap(z=z, x=tasks, y=y, text=text, texttemplate="%{text}", colorscale="YlOrRd",
                               colorbar_title="seconds", xgap=1, ygap=1,
                               hovertemplate="%{x}<br>%{y}<br>%{text}<extra></extra>"))
    longest = max((len(t) for t in tasks), default=0)  # the task names under the axis, turned
    fig.update_layout(title=title, height=160 + LINE_HEIGHT * len(y) + min(250, 6 * longest),
                      xaxis_title="task", margin={"l": 10})
    # every line labelled: plotly would otherwise thin the ticks of a crowded category axis
    fig.update_yaxes(autorange="reversed", type="category", tickmode="array", tickvals=y, ticktext=y,
                     automargin=True, tickfont={"family": "monospace", "size": 12})
    fig.update_xaxes(type="category", automargin=True)
    return fig


def write_html(figures: Sequence[Any], path: str | Path) -> Path:
    """Write figures into one self-contained HTML file (plotly.js inlined once)."""
    path = Path(path)
    divs = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    publish_whole(path, "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>ndustria report</title></head>"
                  "<body>\n" + "\n".join(divs) + "\n</body></html>\n", replace=True, mode=0o644)  # a browser
    return path  # reloading it sees the old report or the new one
