"""Reports over the catalog, shared by the run files, the CLI and the notebook widgets.

Rows are plain dicts (one per task, or per profiled line) read through
:class:`~ndustria.catalog.Catalog`; tables are text with human units, sorted,
with totals; figures are plotly figures, with plotly imported inside each
figure function only (a script user never pays for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import publish_whole
from .catalog import Catalog

TIMING_COLUMNS = ("task", "function", "key", "engine", "start", "end", "wall_s", "cpu_s",
                  "status", "host", "pid", "run_id")
MEMORY_COLUMNS = ("task", "function", "key", "engine", "initial_bytes", "peak_bytes", "final_bytes",
                  "rss_initial_bytes", "rss_peak_bytes", "rss_final_bytes", "run_id")
MEMORY_FIELDS = MEMORY_COLUMNS[4:10]
FLAGS = {"timeit": "timeit=True", "memcheck": "memcheck=True", "profiling": "profiling=True"}


# -- rows ------------------------------------------------------------------------------
def timing_rows(catalog: Catalog, keys: Iterable[str]) -> list[dict[str, Any]]:
    """The latest execution of each key (cached tasks keep the run that computed them), in key order."""
    keys = list(dict.fromkeys(keys))
    found = catalog.latest_executions(keys)
    return [{c: found[k].get(c) for c in TIMING_COLUMNS} for k in keys if k in found]


def memory_rows(catalog: Catalog, keys: Iterable[str]) -> list[dict[str, Any]]:
    """The latest memory measurement of each key: heap (tracemalloc) and RSS bytes."""
    keys = list(dict.fromkeys(keys))
    found = catalog.latest_executions(keys, metric="memory")
    rows = []
    for k in keys:
        if k in found:
            row = {c: found[k].get(c) for c in ("task", "function", "key", "engine", "run_id")}
            memory = found[k]["metrics"].get("memory", {})
            row.update({f: memory.get(f) for f in MEMORY_FIELDS})
            rows.append(row)
    return rows


def profile_rows(catalog: Catalog, keys: Iterable[str]) -> list[dict[str, Any]]:
    """Per-line profile rows of the latest profiled execution of each key."""
    return catalog.latest_profiles(keys)


def function_totals(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wall time per function (tasks, total, mean, max, share), the most expensive first."""
    total = sum(r["wall_s"] or 0.0 for r in rows) or 1.0
    by_fn: dict[str, list[float]] = {}
    for r in rows:
        by_fn.setdefault(r["function"] or "?", []).append(r["wall_s"] or 0.0)
    out = [{"function": fn, "tasks": len(ts), "total_s": sum(ts), "mean_s": sum(ts) / len(ts),
            "max_s": max(ts), "share": sum(ts) / total} for fn, ts in by_fn.items()]
    return sorted(out, key=lambda r: -r["total_s"])


def runs_rows(catalog: Catalog, pipeline: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Past runs, newest first: pipeline, start, duration, tasks run/cached/failed, backend, workers."""
    out = []
    for r in catalog.runs(pipeline, limit):
        ended = r["ended"]
        out.append({"run_id": r["run_id"], "pipeline": r["pipeline"], "started": r["started"],
                    "duration_s": (ended - r["started"]) if ended else None, "state": r["state"],
                    "run": r["n_done"], "cached": r["n_cached"], "failed": r["n_failed"],
                    "skipped": r["n_skipped"], "backend": r["backend"], "workers": r["workers"]})
    return out


# -- units -----------------------------------------------------------------------------
def human_bytes(n: float | None) -> str:
    if n is None:
        return "-"
    sign, n = ("-" if n < 0 else ""), abs(float(n))
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.0f} {unit}" if unit == "B" else f"{sign}{n:.1f} {unit}"
        n /= 1024
    return f"{sign}{n:.1f} TiB"  # pragma: no cover


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 120:
        return f"{s:.2f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def iso_time(epoch: float | None) -> str:
    """ISO 8601 (UTC, microseconds) of an epoch time; '' for none."""
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="microseconds")


def _clock(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S") if epoch else "-"


# -- text tables -----------------------------------------------------------------------
Column = tuple[str, Callable[[dict[str, Any]], str], str]  # header, cell, align ("<" or ">")


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column],
                 total: dict[str, Any] | None = None, max_width: int = 60) -> str:
    """A plain text table; ``total`` is a last row under a rule."""
    body = [[_clip(cell(r), max_width) for _, cell, _ in columns] for r in rows]
    foot = [_clip(cell(total), max_width) for _, cell, _ in columns] if total is not None else None
    widths = [max(len(h), *(len(line[i]) for line in body + ([foot] if foot else []))) if body or foot
              else len(h) for i, (h, _, _) in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, w, (_, _, a) in zip(cells, widths, columns)).rstrip()

    out = [line([h for h, _, _ in columns]), *(line(b) for b in body)]
    if foot is not None:
        out += ["-" * len(out[0]), line(foot)]
    return "\n".join(out)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _get(name: str, fmt: Callable[[Any], str] = str) -> Callable[[dict[str, Any]], str]:
    return lambda r: fmt(r.get(name)) if r.get(name) is not None else ("" if name not in r else "-")


def timing_table(rows: Sequence[dict[str, Any]]) -> str:
    """Tasks by wall time, longest first, then time per function; totals under each."""
    rows = sorted(rows, key=lambda r: -(r["wall_s"] or 0.0))
    wall = sum(r["wall_s"] or 0.0 for r in rows)
    cpu = sum(r["cpu_s"] or 0.0 for r in rows)
    span = _span(rows)
    tasks = format_table(rows, [
        ("TASK", _get("task"), "<"), ("FUNCTION", _get("function"), "<"), ("ENGINE", _get("engine"), "<"),
        ("START", _get("start", _clock), "<"), ("WALL", _get("wall_s", human_seconds), ">"),
        ("CPU", _get("cpu_s", human_seconds), ">"), ("STATUS", _get("status"), "<"),
    ], total={"task": f"total: {len(rows)} tasks", "wall_s": wall, "cpu_s": cpu,
              "function": "", "engine": "", "status": ""})
    per_fn = format_table(function_totals(rows), [
        ("FUNCTION", _get("function"), "<"), ("TASKS", _get("tasks"), ">"),
        ("TOTAL", _get("total_s", human_seconds), ">"), ("MEAN", _get("mean_s", human_seconds), ">"),
        ("MAX", _get("max_s", human_seconds), ">"), ("SHARE", _get("share", lambda x: f"{x:.0%}"), ">"),
    ])
    head = f"Elapsed (first start to last end): {human_seconds(span)}" if span is not None else ""
    return "\n\n".join(x for x in (tasks, per_fn, head) if x)


def _span(rows: Sequence[dict[str, Any]]) -> float | None:
    starts = [r["start"] for r in rows if r.get("start")]
    ends = [r["end"] for r in rows if r.get("end")]
    return (max(ends) - min(starts)) if starts and ends else None


def memory_table(rows: Sequence[dict[str, Any]]) -> str:
    """Tasks by heap peak, largest first; the last row holds the maxima."""
    rows = sorted(rows, key=lambda r: -(r["peak_bytes"] or 0))
    most = {f: max((r[f] for r in rows if r[f] is not None), default=None) for f in MEMORY_FIELDS}
    return format_table(rows, [
        ("TASK", _get("task"), "<"), ("ENGINE", _get("engine"), "<"),
        ("HEAP INITIAL", _get("initial_bytes", human_bytes), ">"),
        ("HEAP PEAK", _get("peak_bytes", human_bytes), ">"),
        ("HEAP FINAL", _get("final_bytes", human_bytes), ">"),
        ("RSS INITIAL", _get("rss_initial_bytes", human_bytes), ">"),
        ("RSS PEAK", _get("rss_peak_bytes", human_bytes), ">"),
        ("RSS FINAL", _get("rss_final_bytes", human_bytes), ">"),
    ], total={"task": f"max of {len(rows)} tasks", "engine": "", **most})


def runs_table(rows: Sequence[dict[str, Any]]) -> str:
    return format_table(rows, [
        ("RUN", _get("run_id"), ">"), ("PIPELINE", _get("pipeline"), "<"), ("STARTED", _get("started", _clock), "<"),
        ("DURATION", _get("duration_s", human_seconds), ">"), ("STATE", _get("state"), "<"),
        ("RUN", _get("run"), ">"), ("CACHED", _get("cached"), ">"), ("FAILED", _get("failed"), ">"),
        ("BACKEND", _get("backend"), "<"), ("WORKERS", _get("workers"), ">"),
    ])


# -- profiles --------------------------------------------------------------------------
def group_profile(rows: Iterable[dict[str, Any]]) -> dict[str, dict[tuple[str, int, str], list[dict[str, Any]]]]:
    """Profile rows as {task: {(file, first line, function name): [line rows]}}, in order."""
    out: dict[str, dict[tuple[str, int, str], list[dict[str, Any]]]] = {}
    for r in rows:
        fn = (r["file"], r["func_lineno"], r["func_name"])
        out.setdefault(r["task"], {}).setdefault(fn, []).append(r)
    return out


def profile_text(rows: Iterable[dict[str, Any]]) -> str:
    """line_profiler's per-line tables, under a heading per task (times in microseconds)."""
    parts = []
    for task, functions in group_profile(rows).items():
        first = next(iter(functions.values()))[0]
        total = sum(r["time_s"] for lines in functions.values() for r in lines)
        parts.append(f"{'=' * 78}\nTask: {task}   ({first['function']}, key {first['key'][:12]}, "
                     f"run {first['run_id']}, {human_seconds(total)} in profiled lines)\n{'=' * 78}")
        # the task function first, then its helpers by time
        order = sorted(functions.items(), key=lambda kv: (kv[0][2].rsplit(".", 1)[-1] != first["function"],
                                                          -sum(r["time_s"] for r in kv[1])))
        parts += [_function_text(fn, lines) for fn, lines in order]
    return "\n\n".join(parts) + ("\n" if parts else "")


def _function_text(fn: tuple[str, int, str], lines: list[dict[str, Any]]) -> str:
    file, first, name = fn
    total = sum(r["time_s"] for r in lines) or 0.0
    head = ["Timer unit: 1e-06 s", "", f"Total time: {total:g} s", f"File: {file}",
            f"Function: {name} at line {first}", "",
            f"{'Line #':>6} {'Hits':>9} {'Time':>12} {'Per Hit':>8} {'% Time':>8}  Line Contents",
            "=" * 78]
    body = []
    for r in lines:
        if r["hits"]:
            us = r["time_s"] * 1e6
            share = 100 * r["time_s"] / total if total else 0.0
            body.append(f"{r['lineno']:>6} {r['hits']:>9} {us:>12.1f} {us / r['hits']:>8.1f} {share:>8.1f}  "
                        f"{r['source']}")
        else:
            body.append(f"{r['lineno']:>6} {'':>9} {'':>12} {'':>8} {'':>8}  {r['source']}")
    return "\n".join(head + body)


def no_data_message(pipeline: str, what: str, flag: str) -> str:
    """The error a report gives when the pipeline has no data of that kind."""
    return f"no {what} data for pipeline {pipeline!r}: run it with Pipeline(..., {FLAGS[flag]})"


# -- figures (plotly imported lazily) ----------------------------------------------------
def _go() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError:
        from .errors import NdustriaError

        raise NdustriaError("figures need plotly: pip install 'ndustria[notebook]' (or pip install plotly)") from None
    return go


def timeline_figure(rows: Sequence[dict[str, Any]], title: str = "Timeline") -> Any:
    """Gantt chart: one row per engine, one bar per task (start to end), coloured by function."""
    go = _go()
    from plotly.colors import qualitative

    rows = [r for r in rows if r.get("start") and r.get("end")]
    t0 = min((r["start"] for r in rows), default=0.0)
    fig = go.Figure()
    palette = list(qualitative.Plotly)
    for i, fn in enumerate(dict.fromkeys(r["function"] for r in rows)):
        mine = [r for r in rows if r["function"] == fn]
        fig.add_trace(go.Bar(
            name=fn, orientation="h", y=[r["engine"] for r in mine], base=[r["start"] - t0 for r in mine],
            x=[max(r["end"] - r["start"], 1e-6) for r in mine], marker_color=palette[i % len(palette)],
            customdata=[[r["task"], human_seconds(r["wall_s"]), human_seconds(r["cpu_s"])] for r in mine],
            hovertemplate="%{customdata[0]}<br>wall %{customdata[1]}, cpu %{customdata[2]}<extra>" + fn
                          + "</extra>",
        ))
    fig.update_layout(title=title, barmode="overlay", xaxis_title="seconds since the first task started",
                      yaxis_title="engine", legend_title="function")
    fig.update_yaxes(type="category", categoryorder="category ascending")
    return fig


def function_time_figure(totals: Sequence[dict[str, Any]], title: str = "Time per function") -> Any:
    """Horizontal bars: total wall time per function (rows of :func:`reports.function_totals`)."""
    go = _go()
    totals = sorted(totals, key=lambda r: r["total_s"])
    fig = go.Figure(go.Bar(
        orientation="h", y=[r["function"] for r in totals], x=[r["total_s"] for r in totals],
        text=[f"{r['tasks']} tasks, mean {human_seconds(r['mean_s'])}" for r in totals],
        hovertemplate="%{y}: %{x:.4g} s<br>%{text}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title="wall seconds (sum over tasks)", yaxis_title="function")
    return fig


def memory_figure(rows: Sequence[dict[str, Any]], title: str = "Memory per task", rss: bool = False) -> Any:
    """Grouped bars per task: initial, peak and final bytes (Python heap, or RSS with ``rss=True``)."""
    go = _go()
    prefix = "rss_" if rss else ""
    fig = go.Figure()
    for stage in ("initial", "peak", "final"):
        field = f"{prefix}{stage}_bytes"
        values = [r.get(field) or 0 for r in rows]
        fig.add_trace(go.Bar(name=stage, x=[r["task"] for r in rows], y=values,
                             text=[human_bytes(v) for v in values],
                             hovertemplate="%{x}<br>" + stage + " %{text}<extra></extra>"))
    kind = "process RSS" if rss else "Python heap (tracemalloc)"
    fig.update_layout(title=f"{title}: {kind}", barmode="group", yaxis_title="bytes", xaxis_title="task")
    return fig


def profile_figure(rows: Sequence[dict[str, Any]], title: str = "Line profile") -> Any:
    """Heat view: one row per profiled source line, one column per task, colour = seconds on that line."""
    go = _go()
    grouped = group_profile(rows)
    tasks = list(grouped)
    labels: dict[tuple[str, str, int], str] = {}
    for functions in grouped.values():
        for (file, _first, name), lines in functions.items():
            for r in lines:
                labels.setdefault((file, name, r["lineno"]), f"{name}:{r['lineno']}  {r['source'].strip()[:60]}")
    index = {k: i for i, k in enumerate(labels)}
    z: list[list[float | None]] = [[None] * len(tasks) for _ in labels]
    for j, task in enumerate(tasks):
        for (file, _first, name), lines in grouped[task].items():
            for r in lines:
                if r["hits"]:
                    z[index[(file, name, r["lineno"])]][j] = r["time_s"]
    fig = go.Figure(go.Heatmap(z=z, x=tasks, y=list(labels.values()), colorscale="YlOrRd",
                               colorbar_title="seconds", hovertemplate="%{x}<br>%{y}<br>%{z:.3g} s<extra></extra>"))
    fig.update_layout(title=title, height=max(400, 18 * len(labels) + 150), xaxis_title="task")
    fig.update_yaxes(autorange="reversed", type="category")
    return fig


def write_html(figures: Sequence[Any], path: str | Path) -> Path:
    """Write figures into one self-contained HTML file (plotly.js inlined once)."""
    path = Path(path)
    divs = [fig.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, fig in enumerate(figures)]
    publish_whole(path, "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>ndustria report</title></head>"
                  "<body>\n" + "\n".join(divs) + "\n</body></html>\n", replace=True, mode=0o644)  # a browser
    return path  # reloading it sees the old report or the new one
