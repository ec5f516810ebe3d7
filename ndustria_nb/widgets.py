"""What ``%%ndustria`` shows: a live progress widget, run views and a failure table.

The progress widget (ipywidgets) is refreshed by a thread that polls the handles' states
and the catalog while the pipeline runs in the kernel's main thread. Views are plotly
figures from :mod:`ndustria.show.reports` published as mime bundles (plotly JSON, HTML and a
text table), so they render in JupyterLab/Notebook 7, survive export, and still say
something in terminal IPython. Failures are an HTML table with expandable tracebacks.
"""

from __future__ import annotations

import html
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ndustria.errors import TaskFailure
from ndustria.record.catalog import Catalog
from ndustria.show import reports
from ndustria.task import TaskHandle
from ndustria.units import human_seconds

STATES = ("cached", "queued", "running", "done", "failed", "skipped")
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def widgets_available(shell: Any) -> bool:
    """True in a Jupyter kernel with ipywidgets installed (not terminal IPython)."""
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _counts_html(counts: Counter, engines: Counter, elapsed: float, title: str) -> str:
    cells = "".join(f"<td style='padding:0 8px'><b>{counts.get(s, 0)}</b> {s}</td>" for s in STATES)
    busy = ", ".join(f"{e}: {n}" for e, n in sorted(engines.items())) or "-"
    return (f"<div><b>{html.escape(title)}</b> &middot; {human_seconds(elapsed)}"
            f"<table><tr>{cells}</tr></table><small>tasks finished per engine: {html.escape(busy)}</small></div>")


class Progress:
    """A live progress view of one run, polled from a thread (use as a context manager)."""

    def __init__(self, handles: Sequence[TaskHandle], catalog: Catalog, pipeline: str, live: bool,
                 interval: float = 0.25) -> None:
        self.handles, self.catalog, self.pipeline = list(handles), catalog, pipeline
        self.live, self.interval = live, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self._run_before = self._last_run_id()
        self.bar: Any = None
        self.label: Any = None
        self.box: Any = None
        self.display: Any = None
        self.summary = ""

    def _last_run_id(self) -> int:
        runs = self.catalog.runs(self.pipeline, 1)
        return runs[0]["run_id"] if runs else 0

    def __enter__(self) -> Progress:
        if self.live:
            import ipywidgets as w
            from IPython.display import display

            self.bar = w.IntProgress(value=0, min=0, max=max(len(self.handles), 1), description="ndustria")
            self.label = w.HTML()
            self.box = w.VBox([self.bar, self.label])
            self.refresh()
            self.display = display(self._bundle(), raw=True, display_id=True)
            self._thread = threading.Thread(target=self._poll, name="ndustria-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.live:
            self.refresh(final=True)
            self.display.update(self._bundle(), raw=True)  # the final counts as text, for exports

    def _bundle(self) -> dict[str, Any]:
        """The widget's view, with a text summary instead of its repr as the static fallback."""
        data = dict(self.box._repr_mimebundle_() or {})
        data["text/plain"] = self.summary
        return data

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.refresh()
            except Exception:  # the view must never break the run
                return

    def _engines(self) -> Counter:
        run_id = self._last_run_id()
        if run_id <= self._run_before:
            return Counter()
        return Counter(r["engine"] for r in self.catalog.tasks(run_id) if r["engine"])

    def refresh(self, final: bool = False) -> None:
        counts = Counter(h.status for h in self.handles)
        finished = sum(counts.get(s, 0) for s in ("cached", "done", "failed", "skipped"))
        elapsed = time.perf_counter() - self._t0
        self.bar.value = finished
        self.bar.bar_style = "danger" if counts.get("failed") else ("success" if final else "")
        self.label.value = _counts_html(counts, self._engines(), elapsed, "finished" if final else "running")
        self.summary = (f"ndustria run {'finished' if final else 'running'} in {human_seconds(elapsed)}: "
                        + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES))


# -- views ------------------------------------------------------------------------------
def show_figure(fig: Any, text: str) -> None:
    """Publish a plotly figure as a static mime bundle (plotly JSON, HTML) with a text fallback."""
    import json

    from IPython.display import publish_display_data

    data = {PLOTLY_MIME: json.loads(fig.to_json()), "text/plain": text,
            "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn")}
    publish_display_data(data)


def show_views(catalog: Catalog, keys: Sequence[str], pipeline: str, *, timeit: bool, memcheck: bool,
               profiling: bool) -> None:
    """The views a run asked for: timeline + time per function, memory bars, line-profile heat view."""
    if timeit:
        rows = reports.timing_rows(catalog, keys)
        if rows:
            show_figure(reports.timeline_figure(rows, f"Timeline of {pipeline}"), reports.timing_table(rows))
            totals = reports.function_totals(rows)
            text = "\n".join(f"{t['function']}: {t['tasks']} tasks, {human_seconds(t['total_s'])}"
                             for t in totals)
            show_figure(reports.function_time_figure(totals), text)
        else:
            print(reports.no_data_message(pipeline, "timing", "timeit"))
    if memcheck:
        rows = reports.memory_rows(catalog, keys)
        if rows:
            show_figure(reports.memory_figure(rows), reports.memory_table(rows))
        else:
            print(reports.no_data_message(pipeline, "memory", "memcheck"))
    if profiling:
        rows = reports.profile_rows(catalog, keys)
        if rows:
            show_figure(reports.profile_figure(rows), reports.profile_text(rows))
        else:
            print(reports.no_data_message(pipeline, "line-profile", "profiling"))


def show_failures(failures: Sequence[TaskFailure]) -> None:
    """A table of failed tasks: the error, and the task's traceback behind a <details> toggle."""
    from IPython.display import publish_display_data

    rows, text = [], [f"{len(failures)} task(s) failed:"]
    for f in failures:
        error = f"{type(f.exception).__name__}: {f.exception}" if f.exception else "error"
        lines = f.traceback.rstrip().splitlines()
        error = lines[-1] if lines and not f.exception else error
        skipped = f"<br><small>skipped: {html.escape(', '.join(f.skipped))}</small>" if f.skipped else ""
        rows.append(f"<tr><td><code>{html.escape(f.task)}</code>{skipped}</td><td>{html.escape(error)}"
                    f"<details><summary>traceback</summary><pre>{html.escape(f.traceback)}</pre></details>"
                    "</td></tr>")
        text.append(f"  {f.task}: {error}")
    table = ("<table><thead><tr><th style='text-align:left'>task</th><th style='text-align:left'>error</th>"
             f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")
    publish_display_data({"text/html": table, "text/plain": "\n".join(text)})
