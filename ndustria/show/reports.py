"""Reports over the catalog, shared by the run files, the CLI and the notebook widgets.

Rows are plain dicts (one per task, or per profiled line) read through
:class:`~ndustria.record.catalog.Catalog`; tables are text with human units, sorted,
with totals. A report of one run (:func:`run_rows`) shows every task of that run; a task that
was a cache hit carries the numbers recorded when it was computed, labelled with that run
(``origin``: run, pipeline, date). Figures of the same rows are in :mod:`ndustria.show.figures`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from ndustria.record.catalog import Catalog
from ndustria.units import human_bytes, human_seconds

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


def run_rows(catalog: Catalog, run_id: int, metric: str | None = None) -> list[dict[str, Any]]:
    """One row per task of run ``run_id``, in declaration order: its ``status`` in that run, and the
    timing and memory of the execution that computed its result (a cache hit: the run that computed
    it, named by ``origin``; with ``metric="memory"``, the latest run that measured it)."""
    out = []
    for t in catalog.run_executions(run_id, metric):
        o = t["origin"] or {}
        row = {c: o.get(c) for c in TIMING_COLUMNS}
        row.update(task=t["task"], function=t["function"], key=t["key"], status=t["status"], run_id=o.get("run_id"),
                   origin=origin_label(o, run_id), origin_pipeline=o.get("run_pipeline"))
        memory = (o.get("metrics") or {}).get("memory") or {}
        row.update({f: memory.get(f) for f in MEMORY_FIELDS})
        out.append(row)
    return out


def run_profile_rows(catalog: Catalog, run_id: int) -> list[dict[str, Any]]:
    """Per-line profile rows of each task of run ``run_id``: of this run for the tasks it ran, of the
    latest run up to it that profiled the task for cache hits; each line carries ``origin``."""
    out: list[dict[str, Any]] = []
    for t in catalog.run_executions(run_id):
        if t["status"] == "skipped":
            continue
        own = t["status"] in ("done", "failed")
        profiled = run_id if own else catalog.profiled_run(t["key"], up_to=run_id)
        lines = catalog.profile_lines(profiled, t["key"]) if profiled is not None else []
        if not lines:
            continue
        run = catalog.run(profiled) or {}
        label = origin_label({"run_id": profiled, "run_pipeline": run.get("pipeline"),
                              "run_started": run.get("started")}, run_id)
        out += [{**line, "origin": label} for line in lines]
    return out


def origin_label(origin: dict[str, Any], run_id: int) -> str:
    """Which run computed a task's numbers: "this run", or "run 3 (simple_example, 2026-12-01 10:00:05)"."""
    if not origin or origin.get("run_id") is None:
        return "-"
    if origin["run_id"] == run_id:
        return "this run"
    return f"run {origin['run_id']} ({origin.get('run_pipeline')}, {_clock(origin.get('run_started'))})"


def has_memory(row: dict[str, Any]) -> bool:
    return row.get("peak_bytes") is not None or row.get("rss_peak_bytes") is not None


def run_heading(run: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    """One line naming a run: pipeline, id, start, backend, duration, what its tasks did."""
    counts = Counter(r["status"] for r in rows)
    took = f", {human_seconds(run['ended'] - run['started'])}" if run.get("ended") else ", still running"
    workers = f" x{run['workers']}" if run.get("workers") else ""
    parts = [f"{counts[s]} {'computed' if s == 'done' else 'cache hits' if s == 'cached' else s}"
             for s in ("done", "cached", "failed", "skipped", "queued", "running") if counts[s]]
    return (f"Pipeline {run['pipeline']!r}, run {run['run_id']} ({_clock(run['started'])}, "
            f"{run['backend']}{workers}{took}): {len(rows)} tasks, {', '.join(parts) or 'none'}.")


def no_data_message(pipeline: str, what: str, flag: str, run: dict[str, Any] | None = None,
                    rows: Sequence[dict[str, Any]] = ()) -> str:
    """The error a report gives when a run has no data of that kind: why, truthfully, and what to do."""
    asked = run is not None and flag in run_instruments(run)
    if not asked:
        return f"no {what} data for pipeline {pipeline!r}: run it with Pipeline(..., {FLAGS[flag]})"
    hits = [r for r in rows if r["status"] == "cached"]
    if not hits:
        return f"run {run['run_id']} of pipeline {pipeline!r} recorded no {what} data"
    by = sorted({r["origin"] for r in hits if r["origin"] != "-"})
    functions = sorted({r["function"] for r in hits if r["function"]}) or ["FUNCTION"]
    remove = ", ".join(f"`ndustria cache rm {f}`" for f in functions)
    return (f"run {run['run_id']} of pipeline {pipeline!r} had {FLAGS[flag]}, but its {len(hits)} tasks were cache "
            f"hits, computed by {', '.join(by) or 'runs the catalog no longer holds'} without {FLAGS[flag]}: "
            f"there is no {what} data to show. To measure them, compute them again: {remove}, or "
            f"@pipe.AddFunction(rerun=True), then run the pipeline again")


def run_instruments(run: dict[str, Any]) -> list[str]:
    """The instruments a run had on ("timeit", "memcheck", "profiling")."""
    try:
        return list(json.loads(run.get("options") or "{}").get("instruments", []))
    except (ValueError, AttributeError):
        return []


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


# -- times -----------------------------------------------------------------------------
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


def timing_table(rows: Sequence[dict[str, Any]], run: dict[str, Any] | None = None) -> str:
    """Tasks by wall time, longest first, then time per function; totals under each. With ``run``
    (rows of :func:`run_rows`): a COMPUTED BY column, and the elapsed time of that run alone."""
    rows = sorted(rows, key=lambda r: -(r["wall_s"] or 0.0))
    wall = sum(r["wall_s"] or 0.0 for r in rows)
    cpu = sum(r["cpu_s"] or 0.0 for r in rows)
    columns: list[Column] = [
        ("TASK", _get("task"), "<"), ("FUNCTION", _get("function"), "<"), ("ENGINE", _get("engine"), "<"),
        ("START", _get("start", _clock), "<"), ("WALL", _get("wall_s", human_seconds), ">"),
        ("CPU", _get("cpu_s", human_seconds), ">"), ("STATUS", _get("status"), "<"),
    ]
    if run is not None and _elsewhere(rows):
        columns.append(("COMPUTED BY", _get("origin"), "<"))
    tasks = format_table(rows, columns, total={"task": f"total: {len(rows)} tasks", "wall_s": wall, "cpu_s": cpu,
                                              "function": "", "engine": "", "status": "", "origin": ""})
    per_fn = format_table(function_totals(rows), [
        ("FUNCTION", _get("function"), "<"), ("TASKS", _get("tasks"), ">"),
        ("TOTAL", _get("total_s", human_seconds), ">"), ("MEAN", _get("mean_s", human_seconds), ">"),
        ("MAX", _get("max_s", human_seconds), ">"), ("SHARE", _get("share", lambda x: f"{x:.0%}"), ">"),
    ])
    if run is None:
        span = _span(rows)
        head = f"Elapsed (first start to last end): {human_seconds(span)}" if span is not None else ""
    else:
        took = human_seconds(run["ended"] - run["started"]) if run.get("ended") else "still running"
        head = f"Elapsed (run {run['run_id']}, start to end): {took}"
        hits = sum(r["status"] == "cached" for r in rows)
        if hits:
            head += (f"\n{hits} of {len(rows)} tasks were cache hits: their times are those recorded when they were "
                     "computed (COMPUTED BY), not part of this run's elapsed time.")
    return "\n\n".join(x for x in (tasks, per_fn, head) if x)


def _elsewhere(rows: Sequence[dict[str, Any]]) -> bool:
    """Whether some row's numbers come from another run than the one reported (a cache hit)."""
    return any(r.get("origin", "this run") != "this run" for r in rows)


def _span(rows: Sequence[dict[str, Any]]) -> float | None:
    starts = [r["start"] for r in rows if r.get("start")]
    ends = [r["end"] for r in rows if r.get("end")]
    return (max(ends) - min(starts)) if starts and ends else None


def memory_table(rows: Sequence[dict[str, Any]]) -> str:
    """Tasks by heap peak, largest first; the last row holds the maxima. The heap's initial size is left
    out: tracemalloc starts with each task, so it is 0 (the run's CSV keeps it). Rows of :func:`run_rows`
    get a COMPUTED BY column."""
    rows = sorted(rows, key=lambda r: (-(r["peak_bytes"] or 0), -(r["rss_peak_bytes"] or 0)))
    most = {f: max((r[f] for r in rows if r[f] is not None), default=None) for f in MEMORY_FIELDS}
    columns: list[Column] = [
        ("TASK", _get("task"), "<"), ("ENGINE", _get("engine"), "<"),
        ("HEAP PEAK", _get("peak_bytes", human_bytes), ">"),
        ("HEAP FINAL", _get("final_bytes", human_bytes), ">"),
        ("RSS INITIAL", _get("rss_initial_bytes", human_bytes), ">"),
        ("RSS PEAK", _get("rss_peak_bytes", human_bytes), ">"),
        ("RSS FINAL", _get("rss_final_bytes", human_bytes), ">"),
    ]
    if any("origin" in r for r in rows):
        columns.append(("STATUS", _get("status"), "<"))
    if _elsewhere(rows):
        columns.append(("COMPUTED BY", _get("origin"), "<"))
    return format_table(rows, columns, total={"task": f"max of {len(rows)} tasks", "engine": "", "status": "",
                                              "origin": "", **most})


def runs_table(rows: Sequence[dict[str, Any]]) -> str:
    return format_table(rows, [
        ("RUN", _get("run_id"), ">"), ("PIPELINE", _get("pipeline"), "<"), ("STARTED", _get("started", _clock), "<"),
        ("DURATION", _get("duration_s", human_seconds), ">"), ("STATE", _get("state"), "<"),
        ("RUN", _get("run"), ">"), ("CACHED", _get("cached"), ">"), ("FAILED", _get("failed"), ">"),
        ("SKIPPED", _get("skipped"), ">"), ("BACKEND", _get("backend"), "<"), ("WORKERS", _get("workers"), ">"),
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
        where = f"computed by {first['origin']}" if first.get("origin") not in (None, "this run") else \
            f"run {first['run_id']}"
        parts.append(f"{'=' * 78}\nTask: {task}   ({first['function']}, key {first['key'][:12]}, "
                     f"{where}, {human_seconds(total)} in profiled lines)\n{'=' * 78}")
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
