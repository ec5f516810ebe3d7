"""A large graph is kept out of the garbage collector's walks while it is declared and run (ndustria.gcfreeze),
and the collector is given everything back: nothing is held frozen after the run, a task's own garbage is
still collected during it, and a freeze made by someone else is left alone."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ndustria import Pipeline, gcfreeze

COLLECTED: list[int] = []  # cycles made by tasks that the collector freed (the serial backend runs them here)


class Cycle:
    def __init__(self, i: int) -> None:
        self.me = self
        weakref.finalize(self, COLLECTED.append, i)


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    assert gc.isenabled() and not gc.get_freeze_count(), "the suite must start these tests with a plain collector"
    COLLECTED.clear()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()
        gcfreeze._ours = False


def _square(i: int) -> int:
    return i * i


def _total(*values: int) -> int:
    return sum(values)


def test_a_large_graph_is_frozen_while_declared_and_run_and_thawed_after(cache_dir):
    """The real threshold: 10,000 declared tasks freeze the graph; the run returns what the functions return."""
    pipe = Pipeline(backend="serial", verbose=False)
    square, total = pipe.AddFunction()(_square), pipe.AddFunction()(_total)
    n = gcfreeze.FREEZE_AT
    squares = [square(i) for i in range(n - 1)]
    assert not gc.get_freeze_count()  # below the threshold nothing is frozen
    last = total(*squares[:50])
    assert gc.get_freeze_count() > 0 and gcfreeze.frozen_by_ndustria()
    pipe.run()
    assert not gc.get_freeze_count() and not gcfreeze.frozen_by_ndustria()
    assert [h.result() for h in squares[:3]] + [squares[-1].result(), last.result()] == \
        [0, 1, 4, (n - 2) ** 2, sum(i * i for i in range(50))]


def make_cycle(i: int) -> int:
    Cycle(i)  # garbage as soon as the task returns, freed only by the cyclic collector
    return i


def collect_now(i: int) -> tuple[int, int]:
    gc.collect()
    return len(COLLECTED), gc.get_freeze_count()


def test_a_tasks_garbage_is_collected_during_a_frozen_run(cache_dir, monkeypatch):
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    pipe = Pipeline(backend="serial", verbose=False)
    make, collect = pipe.AddFunction()(make_cycle), pipe.AddFunction()(collect_now)
    made = [make(i) for i in range(30)]
    checked = collect(made[0])  # runs after make(0), inside the run
    pipe.run()
    collected, frozen = checked.result()
    assert frozen > 0, "the graph was not frozen during the run"
    assert collected >= 1, "a cycle a task made during the frozen run was not collected"
    assert not gc.get_freeze_count()


def test_freeze_gc_false_leaves_the_collector_alone(cache_dir, monkeypatch):
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    pipe = Pipeline(backend="serial", verbose=False, freeze_gc=False)
    square = pipe.AddFunction()(_square)
    handles = [square(i) for i in range(50)]
    assert not gc.get_freeze_count()
    pipe.run()
    assert not gc.get_freeze_count() and handles[-1].result() == 49 * 49


def test_a_disabled_collector_is_left_alone(cache_dir, monkeypatch):
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    gc.disable()
    pipe = Pipeline(backend="serial", verbose=False)
    square = pipe.AddFunction()(_square)
    [square(i) for i in range(50)]
    assert not gc.get_freeze_count()
    pipe.run()
    assert not gc.get_freeze_count() and not gc.isenabled()


def test_objects_frozen_by_someone_else_stay_frozen(cache_dir, monkeypatch):
    """A server that froze its objects before forking keeps them frozen: ndustria unfreezes only its own."""
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    gc.freeze()
    theirs = gc.get_freeze_count()
    pipe = Pipeline(backend="serial", verbose=False)
    square = pipe.AddFunction()(_square)
    handles = [square(i) for i in range(50)]
    pipe.run()
    pipe.close()
    # not unfrozen, and nothing of ndustria's added (a frozen object freed by its reference count leaves)
    assert theirs - 100 < gc.get_freeze_count() <= theirs and handles[7].result() == 49


def test_a_graph_never_run_is_collected_after_another_run_or_a_close(cache_dir, monkeypatch):
    """A pipeline dropped after declaring (a notebook cell redone) is not held frozen for good."""
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)

    def declare_and_drop() -> weakref.ref:
        pipe = Pipeline(backend="serial", verbose=False)
        square = pipe.AddFunction()(_square)
        handles = [square(i) for i in range(50)]
        assert gc.get_freeze_count() > 0
        return weakref.ref(handles[0])

    dropped = declare_and_drop()
    gc.collect()
    assert dropped() is not None  # frozen: the graph's cycles are not walked
    small = Pipeline(backend="serial", verbose=False)
    one = small.AddFunction()(_square)(3)
    small.run()
    gc.collect()
    assert dropped() is None and one.result() == 9

    dropped = declare_and_drop()
    small.close()
    gc.collect()
    assert dropped() is None and not gc.get_freeze_count()


def test_a_run_inside_a_task_does_not_thaw_the_outer_run(cache_dir, monkeypatch):
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    with gcfreeze.running():
        gcfreeze.freeze()
        with gcfreeze.running():
            pass
        assert gcfreeze.frozen_by_ndustria() and gc.get_freeze_count() > 0
    assert not gcfreeze.frozen_by_ndustria() and not gc.get_freeze_count()
