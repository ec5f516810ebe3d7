"""Console lines, as the original ndustria printed them (stdout), plus failures and dry runs.

Each line shown is also kept in memory (the last :data:`LOG_LINES`), for the run's log file
``<cache>/<pipeline>_log.txt`` (:func:`ndustria.show.runfiles.write_log`, ``ndustria -l NAME``): one
append per line, nothing written until the run ends.

Only this module (and the notebook views) print; everything else logs through
``logging.getLogger("ndustria")``.
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

LOG_LINES = 10_000  # the log keeps the last lines of a run, at most this many
FLUSH_EVERY = 0.1  # seconds
BAR_AFTER = 2.0  # seconds a run goes before its progress bar appears


class Console:
    """Prints a pipeline's progress. ``verbose=False`` silences everything but failures.

    ``record=False`` (MPI ranks other than 0) keeps no log. The log holds the lines shown, and
    always a run's start and end lines and its errors, even with ``verbose=False``.
    """

    def __init__(self, verbose: bool = True, stream: TextIO | None = None, record: bool = True) -> None:
        self.verbose = verbose
        self._stream = stream
        self._bar: Any = None
        self._log: deque[str] | None = deque(maxlen=LOG_LINES) if record else None
        self._flushed = 0.0
        self._tty: dict[int, bool] = {}
        self._progress: list[Any] | None = None  # [total, done, started] of a run that may get a bar
        self._logged = 0  # lines kept since the last take_log, including those the deque let go

    @property
    def stream(self) -> TextIO:
        """Where progress lines go: the stream given, else the current ``sys.stdout``."""
        return self._stream if self._stream is not None else sys.stdout

    @stream.setter
    def stream(self, stream: TextIO | None) -> None:
        self._stream = stream

    @contextmanager
    def redirected(self, stream: TextIO | None) -> Iterator[None]:
        """Print to ``stream`` inside the block (``None``: no change), then where it printed before."""
        previous = self._stream
        if stream is not None:
            self._stream = stream
        try:
            yield
        finally:
            self._stream = previous

    def _say(self, line: str, *, always: bool = False, keep: bool = False) -> None:
        if self._log is not None and (self.verbose or always or keep):
            self._log.append(line)
            self._logged += 1
        if not (self.verbose or always):
            return
        stream = self.stream
        if self._bar is not None:
            self._bar.write(line, file=stream)
            return
        stream.write(line + "\n")
        now = time.monotonic()  # a flush per line would cost a system call per task: at most 10 a second
        if always or now - self._flushed >= FLUSH_EVERY or self._tty.get(id(stream), False):
            self.flush()

    def flush(self) -> None:
        """Push the lines written so far to the stream (done at the run's start and end, on failures, and
        at least every :data:`FLUSH_EVERY` seconds while lines come; at once on a terminal)."""
        self._flushed = time.monotonic()
        stream = self.stream
        if id(stream) not in self._tty:
            try:
                self._tty[id(stream)] = stream.isatty()
            except (AttributeError, ValueError):
                self._tty[id(stream)] = False
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.flush()

    def progress_start(self, total: int) -> None:
        """A progress bar on stderr when it is a terminal (never in logs or pipes), shown once the run
        has taken :data:`BAR_AFTER` seconds (a short run prints no bar)."""
        self._progress = None
        if self.verbose and total > 1 and _isatty(sys.stderr):
            self._progress = [total, 0, time.monotonic()]  # total, done, started

    def progress_step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)
            return
        if self._progress is None:
            return
        self._progress[1] += 1
        total, done, started = self._progress
        if done < total and time.monotonic() - started >= BAR_AFTER:
            from tqdm import tqdm

            self.flush()
            self._bar = tqdm(total=total, initial=done, unit="task", leave=False, dynamic_ncols=True,
                             file=sys.stderr)

    def progress_end(self) -> None:
        self._progress = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.flush()

    def added(self, task: object) -> None:
        if self.verbose:  # formatting a task's call is only paid for when it is shown
            self._say(f"[Added Task] {task}")

    def cache_hit(self, task: object) -> None:
        if self.verbose:
            self._say(f"[Cache hit!] {task} can be skipped")

    def run_start(self, n_tasks: int, workers: int = 1, backend: str = "serial") -> None:
        if workers > 1:
            self._say(f"Initializing parallel run with {workers} {_worker_word(backend)}")
        self._say(f"---\n Starting a run with {n_tasks} tasks.\n---", keep=True)
        self.flush()

    def running(self, task: str, engine: str) -> None:
        self._say(f"[{engine}] running: {task}")

    def task_output(self, task: str, stdout: str, stderr: str) -> None:
        """What a task printed on a remote engine, each line marked with the task."""
        for text, stream in ((stdout, self.stream), (stderr, sys.stderr if self._stream is None else self.stream)):
            if text and self.verbose:
                lines = text.rstrip("\n").split("\n")
                shown = "".join(f"[{task}] {line}\n" for line in lines)
                if self._log is not None:
                    self._log.append(shown[:-1])
                    self._logged += 1
                stream.write(shown)  # one write: no splicing
                stream.flush()

    def saved(self, task: str, path: str) -> None:
        self._say(f"Saved result of {task} to {path}")

    def found(self, task: str, path: str) -> None:
        self._say(f"[Cache hit!] {task} is in the cache already (its inputs came out as stored, or another "
                  f"process computed it meanwhile): {path}")

    def failed(self, task: str, error: str) -> None:
        last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        self._say(f"[Failed] {task}: {last}", always=True)

    def skipped(self, task: str, because: str) -> None:
        self._say(f"[Skipped] {task}: its input {because} did not complete", always=True)

    def recomputing(self, task: str, reason: str) -> None:
        self._say(f"[Recompute] {task}: {reason}", always=True)

    def would_run(self, task: str) -> None:
        self._say(f"[Dry run] would run: {task}")

    def dry_run_end(self, n_tasks: int) -> None:
        self._say(f"Dry run: {n_tasks} tasks would run; nothing was executed.", keep=True)
        self.flush()

    def all_done(self) -> None:
        self._say("All done.", keep=True)
        self.flush()

    def summary_failed(self, n_failed: int, n_skipped: int, n_done: int, n_cached: int = 0) -> None:
        """The closing line of a run with failures: exactly how many tasks failed, were skipped, completed."""
        done = f"{n_done} completed and {'is' if n_done == 1 else 'are'} cached" if n_done else "none completed"
        hits = f" ({n_cached} {'was a cache hit' if n_cached == 1 else 'were cache hits'})" if n_cached else ""
        self._say(f"{n_failed} task(s) failed, {n_skipped} skipped; {done}{hits}.", always=True)

    # -- the run's log -------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self._log is not None

    def log_error(self, exc: BaseException) -> None:
        """The exception a run ended with, and its traceback (a TaskError's holds each task's), in the log."""
        if self._log is not None:
            self._log.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
            self._logged += 1

    def take_log(self) -> tuple[list[str], int]:
        """The lines kept since the last call (the last :data:`LOG_LINES` at most) and how many earlier
        ones were let go; then forget them."""
        if self._log is None:
            return [], 0
        lines, dropped = list(self._log), self._logged - len(self._log)
        self._log.clear()
        self._logged = 0
        return lines, dropped


def _worker_word(backend: str) -> str:
    return {"mpi": "processes", "ipyparallel": "engines"}.get(backend, "workers")


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
