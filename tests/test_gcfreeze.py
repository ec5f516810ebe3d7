"""A large graph is kept out of the garbage collector's walks while it is declared and run (ndustria.gcfreeze),
and the collector is given everything back: nothing is held frozen after the run (nor after a result
recomputed on its own, nor at exit), a task's own garbage is still collected during it, a freeze made by
someone else is left alone, and finalizers, threads and forks do not trip it."""

from __future__ import annotations

import gc
import os
import threading
import weakref
from collections.abc import Iterator

import pytest
from support import run_python, write_script

from ndustria import Pipeline, gcfreeze

COLLECTED: list[int] = []  # cycles made by tasks that the collector freed (the serial backend runs them here)


class Cycle:
    def __init__(self, i: int) -> None:
        self.me = self
        weakref.finalize(self, COLLECTED.append, i)


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    if not gc.isenabled() or gc.get_freeze_count():
        pytest.skip("the collector is disabled or objects are frozen in this test process (a plugin?)")
    COLLECTED.clear()
    try:
        yield
    finally:
        gcfreeze.thaw_declared()
        gc.enable()
        gc.unfreeze()


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


def test_a_run_inside_a_run_neither_freezes_nor_thaws_the_outer_one():
    with gcfreeze.running():
        gcfreeze.freeze_run()
        outer = gc.get_freeze_count()
        with gcfreeze.running():
            gcfreeze.freeze_run()  # not the only run in progress: nothing more is frozen
            gcfreeze.freeze_declared()  # declaring while a run is in progress: neither
        assert gcfreeze.frozen_by_ndustria() and outer - 100 < gc.get_freeze_count() <= outer
    assert not gcfreeze.frozen_by_ndustria() and not gc.get_freeze_count()


def total_and_frozen(*values: int) -> tuple[int, int]:
    return sum(values), gc.get_freeze_count()


def test_a_result_recomputed_on_its_own_is_a_run_like_any_other(cache_dir, monkeypatch):
    """``result()`` of a task whose entry vanished runs it again (with its 30 cached inputs): frozen
    while it runs, given back after."""
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    pipe = Pipeline(backend="serial", verbose=False)
    square, total = pipe.AddFunction()(_square), pipe.AddFunction()(total_and_frozen)
    last = total(*[square(i) for i in range(30)])
    pipe.run()
    pipe.store.remove(last.key)
    with pytest.warns(Warning, match="recomputed"):
        value, frozen = last.result()
    assert value == sum(i * i for i in range(30)) and frozen > 0
    assert not gc.get_freeze_count() and not gcfreeze.frozen_by_ndustria()


def test_a_freeze_made_on_top_of_ndustrias_stays(cache_dir, monkeypatch):
    """The user froze after ndustria did (while declaring): everything frozen is theirs, the run keeps it."""
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    pipe = Pipeline(backend="serial", verbose=False)
    square = pipe.AddFunction()(_square)
    handles = [square(i) for i in range(30)]
    assert gcfreeze.frozen_by_ndustria()
    gc.freeze()
    theirs = gc.get_freeze_count()
    pipe.run()
    assert theirs - 100 < gc.get_freeze_count() <= theirs and not gcfreeze.frozen_by_ndustria()
    assert handles[5].result() == 25


def test_no_freeze_while_only_checking_what_is_cached(cache_dir, monkeypatch):
    """The notebook asks whether a cell's tasks are cached by declaring them in ``declaring_only()``."""
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    pipe = Pipeline(backend="serial", verbose=False)
    square = pipe.AddFunction()(_square)
    with pipe.declaring_only() as declared:
        [square(i) for i in range(50)]
    assert len(declared) == 50 and not gc.get_freeze_count()
    [square(i) for i in range(20)]  # the pipeline's own declarations still freeze at the first point
    assert gcfreeze.frozen_by_ndustria()


def test_the_run_that_froze_gives_it_back_while_another_thread_runs(cache_dir, monkeypatch):
    monkeypatch.setattr(gcfreeze, "FREEZE_AT", 20)
    inside, release = threading.Event(), threading.Event()

    def other_run() -> None:
        with gcfreeze.running():  # a run of another thread, still going when the first one ends
            inside.set()
            release.wait(30)

    with gcfreeze.running():
        gcfreeze.freeze_run()
        thread = threading.Thread(target=other_run)
        thread.start()
        assert inside.wait(30)
        gcfreeze.freeze_run()  # not alone any more: nothing more frozen
    try:
        assert not gc.get_freeze_count() and not gcfreeze.frozen_by_ndustria()
        with gcfreeze.running():  # started while the other runs: it does not freeze
            gcfreeze.freeze_run()
            assert not gc.get_freeze_count()
    finally:
        release.set()
        thread.join(30)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_keeps_what_it_inherited_frozen():
    with gcfreeze.running():
        gcfreeze.freeze_run()
        pid = os.fork()
        if pid == 0:  # the child: no run of its own in progress, the inherited freeze is not its to give back
            with gcfreeze.running():
                gcfreeze.freeze_run()
            os._exit(0 if gc.get_freeze_count() and not gcfreeze.frozen_by_ndustria() else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not gc.get_freeze_count()


FINALIZER_CLOSES = """
    import sys
    from ndustria import Pipeline

    def square(i):
        return i * i

    class Study:  # owns a pipeline and closes it when collected (it is in a reference cycle)
        def __init__(self):
            self.pipe, self.me = Pipeline(backend="serial", verbose=False), self
        def __del__(self):
            self.pipe.close()
            print("closed", flush=True)

    pipe = Pipeline(backend="serial", verbose=False)
    sq = pipe.AddFunction()(square)
    handles = [sq(i) for i in range(9_999)]
    Study()  # garbage, collected by the young collection that comes before the freeze
    handles.append(sq(9_999))
    print("declared", flush=True)
"""

EXIT_FINALIZER = """
    import sys
    from ndustria import Pipeline

    def square(i):
        return i * i

    class Report:  # a buffered file, closed when the object (in a reference cycle) is collected
        def __init__(self, path):
            self.f, self.me = open(path, "w"), self
        def __del__(self):
            self.f.close()

    report = Report(sys.argv[1])
    report.f.write("results\\n")
    pipe = Pipeline(backend="serial", verbose=False)
    sq = pipe.AddFunction()(square)
    handles = [sq(i) for i in range(10_000)]  # frozen, never run
    sys.exit(0)
"""


def test_a_finalizer_closing_a_pipeline_during_the_freeze_does_not_hang(tmp_path):
    proc = run_python(write_script(tmp_path / "study.py", FINALIZER_CLOSES), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["closed", "declared"]


def test_a_graph_frozen_but_never_run_is_given_back_at_exit(tmp_path):
    """A script that stops before run(): its objects' finalizers still run at exit (the file is written)."""
    out = tmp_path / "out.txt"
    proc = run_python(write_script(tmp_path / "report.py", EXIT_FINALIZER), str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "results\n"
