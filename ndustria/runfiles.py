"""The files a run leaves in the cache directory: ``<name>_timing.csv``, ``<name>_memcheck.csv``,
``<name>_profile.txt``.

Written once per run by the process that scheduled it (never by engines or MPI
ranks), from the catalog, atomically (a temporary file renamed into place).
Each holds the latest execution of every task of the pipeline, so a cached
task keeps the numbers of the run that computed it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .reports import (
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
                    timeit: bool = False, memcheck: bool = False, profiling: bool = False) -> list[Path]:
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
            written.append(write_atomic(path, make()))
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)
    return written


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


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file next to ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path
