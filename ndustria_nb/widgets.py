"""What ``%%ndustria`` shows: a live progress widget, run views and a failure table.

The progress widget (ipywidgets) is refreshed by a thread that polls the handles' states
and the catalog while the pipeline runs in the kernel's main thread. Views are plotly
figures from :mod:`ndustria.show.reports` published as mime bundles (plotly JSON, HTML and a
text table), so they render in JupyterLab/Notebook 7, survive export, and still say
something in terminal IPython. Failures are an HTML table with expandable tracebacks.
"""

from __future__ import annotations

import html
import io
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ndustria.errors import TaskFailure
from ndustria.record.catalog import Catalog
from ndustria.show import figures, reports
from ndustria.task import TaskHandle
from ndustria.units import human_bytes, human_seconds

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


class ConsoleLog(io.TextIOBase):
    """Where the pipeline's console writes during a live run: kept, and shown behind a toggle under the
    progress widget (the widget already says what the lines would), instead of filling the cell."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._parts.append(text)
        return len(text)

    def text(self) -> str:
        with self._lock:
            return "".join(self._parts)


class Progress:
    """A live progress view of one run, polled from a thread (use as a context manager); the console's
    lines go to :attr:`log`, shown collapsed under it."""

    def __init__(self, handles: Sequence[TaskHandle], catalog: Catalog, pipeline: str, live: bool,
                 interval: float = 0.25, log: ConsoleLog | None = None) -> None:
        self.handles, self.catalog, self.pipeline = list(handles), catalog, pipeline
        self.live, self.interval = live, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self._run_before = self._last_run_id()
        self.log = log if log is not None else ConsoleLog()  # may hold the lines of the declaring cell
        self.bar: Any = None
        self.label: Any = None
        self.console: Any = None
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
            self.console = w.Accordion(children=[w.HTML()], selected_index=None)
            self.console.add_class("ndustria-console-log")
            self.box = w.VBox([self.bar, self.label, self.console])
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
        """The widget's view, with a text summary instead of its repr as the static fallback, and the
        console log behind a <details> toggle where widgets do not render."""
        data = dict(self.box._repr_mimebundle_() or {})
        data["text/plain"] = self.summary
        log = self.log.text()
        data["text/html"] = (f"<p>{html.escape(self.summary)}</p>" + (
            f"<details><summary>{_log_title(log)}</summary><pre>{html.escape(log)}</pre></details>" if log else ""))
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
        log = self.log.text()
        self.console.set_title(0, _log_title(log))
        self.console.children[0].value = f"<pre class='ndustria-log' style='{LOG_STYLE}'>{html.escape(log)}</pre>"
        self.summary = (f"ndustria run {'finished' if final else 'running'} in {human_seconds(elapsed)}: "
                        + ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES))


LOG_STYLE = "margin:0; max-height:20em; overflow:auto; font-size:var(--jp-code-font-size, 12px)"


def _log_title(log: str) -> str:
    lines = log.count("\n") + (bool(log) and not log.endswith("\n"))
    return f"Console log ({lines} line{'s' if lines != 1 else ''})"


# -- views ------------------------------------------------------------------------------
def show_figure(fig: Any, text: str) -> None:
    """Publish a plotly figure as a static mime bundle (plotly JSON, HTML) with a text fallback."""
    import json

    from IPython.display import publish_display_data

    data = {PLOTLY_MIME: json.loads(fig.to_json()), "text/plain": text,
            "text/html": fig.to_html(full_html=False, include_plotlyjs="cdn")}
    publish_display_data(data)


def show_views(catalog: Catalog, run_id: int, title: str, *, timeit: bool, memcheck: bool, profiling: bool) -> None:
    """The views of run ``run_id`` asked for: timeline + time per function, heap and RSS bars, line-profile
    heat view. A cache hit shows the numbers of the run that computed it (as ``ndustria -t/-m/-p`` do)."""
    run = catalog.run(run_id) or {}
    if timeit:
        rows = [r for r in reports.run_rows(catalog, run_id) if r["wall_s"] is not None]
        if rows:
            show_figure(figures.timeline_figure(rows, f"Timeline of {title}"), reports.timing_table(rows, run or None))
            totals = reports.function_totals(rows)
            text = "\n".join(f"{t['function']}: {t['tasks']} tasks, {human_seconds(t['total_s'])}" for t in totals)
            show_figure(figures.function_time_figure(totals), text)
        else:
            print(reports.no_data_message(title, "timing", "timeit"))
    if memcheck:
        _show_memory(catalog, run_id, title, run)
    if profiling:
        lines = reports.run_profile_rows(catalog, run_id)
        if lines:
            show_figure(figures.profile_figure(lines, f"Line profile of {title}"), reports.profile_text(lines))
        else:
            print(reports.no_data_message(title, "line-profile", "profiling", run or None,
                                          reports.run_rows(catalog, run_id)))


def _show_memory(catalog: Catalog, run_id: int, title: str, run: dict[str, Any]) -> None:
    """Heap bars (tracemalloc) and RSS bars (psutil), as the CLI's ``--html`` draws them."""
    rows = reports.run_rows(catalog, run_id, metric="memory")
    measured = [r for r in rows if reports.has_memory(r)]
    if not measured:
        print(reports.no_data_message(title, "memory", "memcheck", run or None, rows))
        return
    table = reports.memory_table(measured)
    if any(r["peak_bytes"] is not None for r in measured):
        show_figure(figures.memory_figure(measured, title), table)
    rss = "\n".join(f"{r['task']}: RSS peak {human_bytes(r['rss_peak_bytes'])}" for r in measured)
    show_figure(figures.memory_figure(measured, title, rss=True), rss)


def show_failures(failures: Sequence[TaskFailure]) -> None:
    """A table of failed tasks: the error, and the task's traceback (left-aligned, monospace, its
    indentation kept) behind a <details> toggle."""
    from IPython.display import publish_display_data

    rows, text = [], [f"{len(failures)} task(s) failed:"]
    cell = "style='text-align:left; vertical-align:top'"
    for f in failures:
        error = f"{type(f.exception).__name__}: {f.exception}" if f.exception else "error"
        lines = f.traceback.rstrip().splitlines()
        error = lines[-1] if lines and not f.exception else error
        skipped = f"<br><small>skipped: {html.escape(', '.join(f.skipped))}</small>" if f.skipped else ""
        rows.append(f"<tr><td {cell}><code>{html.escape(f.task)}</code>{skipped}</td><td {cell}>{html.escape(error)}"
                    f"<details><summary>traceback</summary><pre class='ndustria-traceback' style='{TRACEBACK_STYLE}'>"
                    f"{html.escape(f.traceback)}</pre></details></td></tr>")
        text.append(f"  {f.task}: {error}")
    table = (f"<table class='ndustria-failures'><thead><tr><th {cell}>task</th><th {cell}>error</th></tr></thead>"
             f"<tbody>{''.join(rows)}</tbody></table>")
    publish_display_data({"text/html": table, "text/plain": "\n".join(text)})


TRACEBACK_STYLE = ("text-align:left; font-family:var(--jp-code-font-family, monospace); white-space:pre; "
                   "overflow-x:auto; margin:4px 0")
