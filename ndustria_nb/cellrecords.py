"""What the last run of each ``%%task`` and ``%%ndustria`` cell left, so a later state can say what changed.

One small JSON file per cell, ``<cache>/cells/<xxh3 of the cell id>.json``, written whole (a temporary
file renamed into place). Cells are known by their notebook cell id (JupyterLab and Notebook 7 send
it with each execution); a kernel that is not told the id (``nbclient``, terminal IPython) keeps no
record, and its cells' states read "cached" or "never run" only.

A ``%%task`` cell's record: ``key``, ``code`` (digest of its normalized code), ``inputs`` ({name:
digest}), ``parts`` (for function inputs, the digests :meth:`Fingerprinter.parts` names), ``files``,
``sources`` (for each input, the digest of the cell that last bound it in this kernel) and ``outcome``
(``stored``, ``restored``, ``failed``, ``uncacheable``) with ``error``. A ``%%ndustria`` cell's record:
``ids`` of its tasks, ``tasks`` ({call: {id, function, code, parts, args}}) and ``failed`` ({call: error}).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from ndustria.task import TaskHandle

if TYPE_CHECKING:
    from .kernel import KernelState

log = logging.getLogger("ndustria")


class RecordStore:
    """The cell records of one cache folder."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.root = Path(cache_dir) / "cells"

    def path(self, cell_id: str) -> Path:
        return self.root / f"{xxhash.xxh3_128_hexdigest(cell_id.encode())}.json"

    def load(self, cell_id: str) -> dict[str, Any] | None:
        if not cell_id:
            return None
        try:
            data = json.loads(self.path(cell_id).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("cell_id") == cell_id else None

    def save(self, cell_id: str, record: dict[str, Any]) -> None:
        """Write ``record`` whole (best effort: a record that cannot be written only costs its 'why')."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".cell-", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "w") as f:
                json.dump({**record, "cell_id": cell_id, "when": time.time()}, f)
            os.replace(tmp, self.path(cell_id))
        except OSError as exc:
            log.debug("could not write the record of cell %s: %s", cell_id, exc)
            with contextlib.suppress(OSError, UnboundLocalError):
                os.unlink(tmp)


def function_parts(state: KernelState, value: Any) -> dict[str, str] | None:
    """The labelled sub-digests of a user function (``code``, ``global variable 'k'``, ...), hex; None
    for anything else or when they cannot be computed."""
    if not inspect.isfunction(value):
        return None
    try:
        return {label: digest.hex() for label, digest in state.fingerprinter.parts(value).items()}
    except Exception:  # naming what changed is a courtesy
        return None


def task_summary(state: KernelState, handle: TaskHandle) -> dict[str, Any]:
    """What a declared task's id is made of, as hex digests: {id, function, code, parts, args}."""
    function = handle.function
    if function.version is not None:
        code, parts = f"version {function.version}", {"version": function.version}
    else:
        try:
            code = state.fingerprinter.digest(function.func).hex()
        except Exception:
            code = ""
        parts = function_parts(state, function.func) or {}
    args = {}
    for name, value in handle.arguments.items():
        try:
            args[name] = state.hasher.digest(value).hex()
        except Exception:
            args[name] = ""
    return {"id": handle.id, "function": function.name, "code": code, "parts": parts, "args": args}
