"""Large task graphs kept out of the cyclic garbage collector's walks (``gc.freeze``).

A script declaring 300,000 tasks keeps ~400,000 container objects alive for as long as its pipeline
lives (the handles, the argument tuples holding them, a run's dicts of them). CPython's collector walks
every one of them in each full collection, and runs one whenever the objects that survived since the
last grew by a quarter of the old ones: declaring and running such a graph paid 9 (warm) to 17 (cold)
full collections, ~2.5 us per task warm and ~6.6 cold, where 3,000 tasks pay none (BENCHMARKS.md).

So while a pipeline declares a large graph (every :data:`FREEZE_AT` tasks, then at twice as many, and so
on) and when such a graph starts running, the objects alive at that moment are moved to the collector's
permanent generation (:func:`gc.freeze`, which Python documents for long-lived objects), after the young
generations are collected (so that only garbage that was already old is held back). Later collections
walk only the objects made since: a task's own garbage is collected as before. When a run ends, or a
pipeline is closed, the objects go back to the oldest generation (:func:`gc.unfreeze`), and the next full
collection walks them once. Nothing is done when the collector is disabled, or when objects were frozen
by something else (a server freezing before it forks): ndustria unfreezes only what it froze.
``Pipeline(freeze_gc=False)`` leaves the collector alone.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["FREEZE_AT", "freeze", "frozen_by_ndustria", "running", "thaw"]

FREEZE_AT = 10_000  # tasks: below this a graph costs the collector little (no full collection at 3,000)

_lock = threading.Lock()
_ours = False  # objects are frozen, and ndustria froze them
_runs = 0  # run() calls in progress in this process (a task may run a pipeline of its own)


def freeze() -> None:
    """Collect the young generations, then freeze every object alive (see the module's text)."""
    global _ours
    with _lock:
        if not gc.isenabled() or (not _ours and gc.get_freeze_count()):
            return
        gc.collect(1)
        gc.freeze()
        _ours = True


def thaw() -> None:
    """Give the collector back what :func:`freeze` froze, unless a run is still in progress."""
    global _ours
    with _lock:
        if _ours and not _runs:
            _ours = False
            gc.unfreeze()


def frozen_by_ndustria() -> bool:
    """Whether objects are frozen by ndustria now."""
    return _ours


@contextlib.contextmanager
def running() -> Iterator[None]:
    """The span of one ``run()``: what is frozen during it stays frozen until the outermost run ends."""
    global _runs
    with _lock:
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
        thaw()
