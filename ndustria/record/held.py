"""Rows a catalog keeps back to write together, in key order (see :data:`ndustria.record.catalog.ENTRIES_HELD`).

Keys are random: rows written a few hundred at a time dirty a page of the key's index each once the index
is large, where thousands written in key order share their pages. Rows written in a transaction that rolls
back (a Ctrl-C, a failed commit) are held again: none is let go before its commit.
"""

from __future__ import annotations

import atexit
import contextlib
import sqlite3
import time
import weakref
from collections.abc import Iterable
from typing import Any

_OWNERS: weakref.WeakSet[Any] = weakref.WeakSet()  # what held rows in this process: settled at exit


@atexit.register
def _settle_owners() -> None:
    for owner in list(_OWNERS):
        with contextlib.suppress(Exception):
            owner.settle()


class HeldRows:
    """Rows for one ``INSERT OR REPLACE`` statement, by key (their first column): a later row for a key
    replaces the one held. :meth:`write` sends them in key order inside the caller's transaction;
    :meth:`committed` lets them go once it commits, :meth:`rolled_back` holds them again (behind rows
    held since)."""

    def __init__(self, statement: str) -> None:
        self.statement = statement
        self.rows: dict[str, tuple[Any, ...]] = {}
        self.since = 0.0  # time.monotonic() when the oldest row held now was held
        self._written: dict[str, tuple[Any, ...]] = {}  # sent in a transaction not committed yet

    def __len__(self) -> int:
        return len(self.rows)

    def hold(self, rows: Iterable[tuple[Any, ...]], owner: Any) -> None:
        """Hold ``rows``; ``owner.settle()`` writes them at the latest when the interpreter exits."""
        _OWNERS.add(owner)
        if not self.rows:
            self.since = time.monotonic()
        self.rows.update((row[0], row) for row in rows)

    def due(self, most: int, after: float) -> bool:
        """Whether ``most`` rows are held, or the oldest was held ``after`` seconds ago."""
        return len(self.rows) >= most or (bool(self.rows) and time.monotonic() - self.since >= after)

    def write(self, db: sqlite3.Connection) -> None:
        if self.rows:
            db.executemany(self.statement, [row for _, row in sorted(self.rows.items())])
            self._written.update(self.rows)
            self.rows = {}

    def committed(self) -> None:
        self._written = {}

    def rolled_back(self) -> None:
        if self._written:
            if not self.rows:
                self.since = time.monotonic()
            self.rows, self._written = {**self._written, **self.rows}, {}
