"""The files a run leaves in the cache directory: ``<name>_timing.csv``, ``<name>_memcheck.csv``,
``<name>_profile.txt``, and ``<name>_log.txt`` (the console lines and errors of the last run, at most
:data:`ndustria.show.console.LOG_LINES` lines; ``ndustria -l NAME``).

Written once per run by the process that scheduled it (never by engines or MPI
ranks), from the catalog, whole (a temporary file renamed into place): a reader such as
``ndustria -l`` sees the previous file or the new one, also while other processes replace it. The
report files are fsynced first; the log is not (see :func:`write_log`).
Each holds the latest execution of every task of the pipeline, so a cached
task keeps the numbers of the run that computed it.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ndustria.atomic import publish_whole
from ndustria.record.catalog import Catalog
from ndustria.show.reports import (
    MEMORY_COLUMNS,
    TIMING_COLUMNS,
    iso_time,
    memory_rows,
    profile_rows,
    profile_text,
    timing_rows,
)

log = logging.getLogger("ndustria")


def write_run_files(catalog: Catalog, cache_dir: str | os.PathLike, name: str, keys: Iterable[str], *,
                    timeit: bool = False, memcheck: bool = False, profiling: bool = False,
                    fsync: bool = True) -> list[Path]:
    """Write the report files the flags ask for; returns their paths. Never raises for I/O errors."""
    if not (timeit or memcheck or profiling):
        return []
    keys = list(dict.fromkeys(keys))
    root = Path(cache_dir)
    written: list[Path] = []
    jobs = []
    if timeit:
        jobs.append((root / f"{name}_timing.csv", lambda: _timing_csv(catalog, keys)))
    if memcheck:
        jobs.append((root / f"{name}_memcheck.csv", lambda: csv_text(MEMORY_COLUMNS, memory_rows(catalog, keys))))
    if profiling:
        jobs.append((root / f"{name}_profile.txt", lambda: profile_text(profile_rows(catalog, keys))))
    for path, make in jobs:
        try:
            written.append(write_atomic(path, make(), fsync=fsync))
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)
    return written


LOG_SUFFIX = "_log.txt"
_LONG_LINE = 2000  # characters a log line keeps


def log_path(cache_dir: str | os.PathLike, name: str) -> Path:
    """Where pipeline ``name`` keeps the log of its last run."""
    return Path(cache_dir) / f"{name}{LOG_SUFFIX}"


def latest_log(cache_dir: str | os.PathLike) -> tuple[str, Path] | None:
    """(pipeline name, path) of the most recently written log in ``cache_dir``, or None."""
    try:
        logs = [p for p in Path(cache_dir).glob(f"*{LOG_SUFFIX}") if p.is_file()]
    except OSError:
        return None
    if not logs:
        return None
    newest = max(logs, key=lambda p: p.stat().st_mtime)
    return newest.name[: -len(LOG_SUFFIX)], newest


def write_log(cache_dir: str | os.PathLike, name: str, lines: Sequence[str], *, run_id: int | None,
              started: float, state: str, max_lines: int = 10_000, left_out: int = 0,
              fsync: bool = False) -> Path | None:
    """Replace ``<name>_log.txt`` with a header and ``lines`` (the last ``max_lines`` of them, each cut
    to 2,000 characters), whole: written to a temporary file, then renamed. ``left_out``: lines the
    console already let go. Never raises for I/O errors.

    Not fsynced unless asked: every run writes it, even a run of cache hits, where the sync was ~0.6 ms
    of ~25 (3,000 hits); it is a record for people, not a result, and after a power loss it may be the
    previous run's log (or, on a filesystem that reorders the rename before the data, empty)."""
    text = "\n".join(lines).split("\n") if lines else []
    cut = len(text) - max_lines
    text = [line if len(line) <= _LONG_LINE else line[:_LONG_LINE] + " [...]" for line in text[max(0, cut):]]
    ended = time.time()
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    run = run_id if run_id is not None else "-"
    head = [f"ndustria log of pipeline {name!r}: run {run}, started {when}, {ended - started:.1f} s, {state}"]
    if cut + left_out > 0:
        gone = max(0, cut) + left_out
        head.append(f"[... {gone} earlier lines left out: the log keeps the last {max_lines}]")
    path = log_path(cache_dir, name)
    try:
        return write_atomic(path, "\n".join(head + text) + "\n", fsync=fsync)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
        return None


def _timing_csv(catalog: Catalog, keys: Sequence[str]) -> str:
    rows = timing_rows(catalog, keys)
    for r in rows:
        r["start"], r["end"] = iso_time(r["start"]), iso_time(r["end"])
    return csv_text(TIMING_COLUMNS, rows)


def csv_text(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    """CSV with a header row; missing values are empty cells."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else row.get(c)) for c in columns})
    return out.getvalue()


def write_atomic(path: Path, text: str, *, fsync: bool = True) -> Path:
    """Replace ``path`` with ``text`` whole (:func:`ndustria.atomic.publish_whole`): a reader sees the
    previous file or this one. The temporary file is made in the cache's ``tmp/`` when ``path`` is in a
    cache (a killed writer's one is cleaned with the others), else beside ``path``."""
    tmp_dir = path.parent / "tmp"
    publish_whole(path, text, replace=True, tmp_dir=tmp_dir if tmp_dir.is_dir() else None, fsync=fsync)
    return path
