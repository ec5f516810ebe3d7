"""Large task graphs kept out of the cyclic garbage collector's walks (``gc.freeze``).

A script declaring 300,000 tasks keeps ~400,000 container objects alive for as long as its pipeline
lives (the handles, the argument tuples holding them, a run's dicts of them). CPython's collector walks
every one of them in each full collection, and runs one whenever the objects that survived since the
last grew by a quarter of the old ones: declaring and running such a graph paid 9 (warm) to 17 (cold)
full collections, ~2.5 us per task warm and ~6.6 cold, where 3,000 tasks pay none (BENCHMARKS.md).

So while a pipeline declares a large graph (at :data:`FREEZE_AT` pending tasks, then at twice as many,
and so on) and when a run of one starts, the young generations are collected and then the objects alive
are moved to the collector's permanent generation (:func:`gc.freeze`, which Python documents for
long-lived objects). Later collections walk only the objects made since: a task's own garbage is
collected as before. What is frozen is given back (:func:`gc.unfreeze`; the next full collection walks it
once): by the run that froze it, when it ends; if it was frozen while declaring, by the end of the next
run when no other run is in progress, by the pipeline's ``close()``, or at the latest when the
interpreter exits (so that finalizers of objects that were alive then still run).

Left alone: a disabled collector; objects someone else froze (a server freezing before it forks: while
they are frozen ndustria does not freeze, and if they froze on top of ndustria's freeze, everything stays
theirs); declarations while a run is in progress (a task's own pipeline, another thread's run); runs
overlapping another run; a forked child (it keeps what it inherited frozen). ``Pipeline(freeze_gc=False)``
leaves the collector alone.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator

__all__ = ["FREEZE_AT", "freeze_declared", "freeze_run", "frozen_by_ndustria", "running", "thaw_declared"]

FREEZE_AT = 10_000  # tasks: below this a graph costs the collector little (no full collection at 3,000)

_DECLARED = "declared"  # the owner of a freeze made while declaring
_lock = threading.RLock()  # reentrant: a finalizer run by an allocation under it may close a pipeline
_owner: object = None  # what froze the objects frozen now: _DECLARED or a run's token; None: nothing of ours
_marker: object = None  # made just after ndustria's last freeze: frozen itself, it shows that someone else froze since
_runs = 0  # runs in progress in this process
_solo: object = None  # the token of the run in progress when it started alone


def freeze_declared() -> None:
    """A pipeline reached a freezing point while declaring: freeze, unless a run is in progress."""
    if not _runs:
        _freeze(_DECLARED)


def freeze_run() -> None:
    """A large graph is about to be scheduled: freeze, if its run is the only one in progress."""
    token = _solo
    if token is not None and _runs == 1:
        _freeze(token)


def thaw_declared() -> None:
    """Give back a freeze made while declaring (a pipeline is closed), unless a run is in progress."""
    _thaw_if(lambda owner: owner is _DECLARED and not _runs)


def frozen_by_ndustria() -> bool:
    """Whether objects are frozen by ndustria now."""
    return _owner is not None


@contextlib.contextmanager
def running() -> Iterator[None]:
    """The span of one run: its freeze (:func:`freeze_run`) is given back when it ends, and so is a freeze
    made while declaring once no run is in progress."""
    global _runs, _solo
    token = object()
    with _lock:
        _runs += 1
        if _runs == 1:
            _solo = token
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _solo is token:
                _solo = None
            idle = not _runs
        _thaw_if(lambda owner: owner is token or (idle and owner is _DECLARED))


class _Marker:
    """An object the collector tracks, made after a freeze of ndustria's."""


def _frozen_since() -> bool:
    """Whether someone else froze after ndustria's last freeze: its marker is frozen then, so absent from
    the generations (which hold few objects while a graph is frozen). Counting frozen objects cannot tell:
    the count also falls as frozen objects are freed."""
    marker = _marker
    return marker is not None and not any(obj is marker for obj in gc.get_objects())


def _freeze(owner: object) -> None:
    global _owner, _marker
    if not gc.isenabled():
        return
    gc.collect(1)  # outside the lock: finalizers run here, and one may close a pipeline
    with _lock:
        if gc.get_freeze_count() and (_owner is None or _frozen_since()):  # someone else's: all of it, ours too
            _owner = None
            return
        _owner, _marker = owner, None  # first: interrupted after the freeze, it is still given back
        gc.freeze()
        _marker = _Marker()


def _thaw_if(condition: Callable[[object], bool]) -> None:
    global _owner
    with _lock:
        if _owner is None or not condition(_owner):
            return
        if not _frozen_since():  # else someone froze on top of ours: all of it is theirs now
            gc.unfreeze()
        _owner = None


def _thaw_at_exit() -> None:
    _thaw_if(lambda owner: True)


def _forked_child() -> None:
    """A forked child keeps what it inherited frozen (as if someone else froze it) and no run of the parent."""
    global _lock, _owner, _runs, _solo, _marker
    _lock, _owner, _runs, _solo, _marker = threading.RLock(), None, 0, None, None


atexit.register(_thaw_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked_child)
