"""The scheduler's state, one step at a time, and its priority rule."""

from __future__ import annotations

import gc
import json
import random

import pytest
from support import run_python

from ndustria.run.scheduler import GraphState, longest_path_priority

#   a -> c -> d ;  b -> d ; e independent
DEPS = {"a": (), "b": (), "c": ("a",), "d": ("c", "b"), "e": ()}


def fresh(available=()) -> GraphState:
    state = GraphState(deps=DEPS, available=set(available), order={k: i for i, k in enumerate(DEPS)})
    return state


def waiting(state: GraphState) -> dict[str, set[str]]:
    """Each waiting key's missing inputs, as sets."""
    return {key: set(missing) for key, missing in state.waiting.items()}


def test_tasks_become_ready_as_soon_as_their_inputs_exist():
    state = fresh()
    state.add(list(DEPS))
    assert sorted(k for _, _, k in state.ready) == ["a", "b", "e"]
    assert waiting(state) == {"c": {"a"}, "d": {"c", "b"}}
    assert state.pop_ready() == "a"  # declaration order breaks ties
    assert state.finish("a") == ["c"]  # c does not wait for b or e: no levels
    assert waiting(state) == {"d": {"c", "b"}}


def test_cached_inputs_count_as_available():
    state = fresh(available={"a", "b"})
    state.add(["c", "d"])
    assert [k for _, _, k in state.ready] == ["c"]
    assert waiting(state) == {"d": {"c"}}


def test_failure_skips_dependents_transitively_and_nothing_else():
    state = fresh()
    state.add(list(DEPS))
    state.pop_ready()
    skipped = state.fail("a")
    assert sorted(skipped) == ["c", "d"]
    assert state.skipped == {"c": "a", "d": "a"}
    assert sorted(k for _, _, k in state.ready) == ["b", "e"]


def test_repair_recomputes_a_damaged_input_then_the_consumer():
    state = fresh(available={"a"})
    state.add(["c"])
    assert state.pop_ready() == "c"
    new = state.repair("c", ["a"])
    assert new == ["a"]
    assert waiting(state) == {"c": {"a"}}
    assert state.pop_ready() == "a"
    assert state.finish("a") == ["c"]


def test_longest_remaining_path_goes_first():
    durations = {"a": 1.0, "b": 5.0, "c": 1.0, "d": 1.0, "e": 2.0}
    rank = longest_path_priority(DEPS, DEPS, durations.__getitem__)
    assert rank == {"a": 3.0, "b": 6.0, "c": 2.0, "d": 1.0, "e": 2.0}
    state = GraphState(deps=DEPS, available=set(), priority=rank, order={k: i for i, k in enumerate(DEPS)})
    state.add(list(DEPS))
    assert [state.pop_ready() for _ in range(3)] == ["b", "a", "e"]


def test_history_reorders_a_short_first_declaration():
    deps = {f"short{i}": () for i in range(4)} | {"long": ()}
    rank = longest_path_priority(deps, deps, lambda k: 2.0 if k == "long" else 0.5)
    state = GraphState(deps=deps, available=set(), priority=rank, order={k: i for i, k in enumerate(deps)})
    state.add(list(deps))
    assert state.pop_ready() == "long"


def test_priority_is_the_same_whether_or_not_inputs_come_first():
    """The one-pass rule (inputs listed before their dependents, as declared) and the general one (any
    order) give every task the same rank, on random graphs with tasks outside the run."""
    rng = random.Random(7)
    for _ in range(50):
        keys = [f"t{i}" for i in range(rng.randint(1, 40))]
        deps = {k: tuple(rng.sample(keys[:i], rng.randint(0, min(i, 3)))) for i, k in enumerate(keys)}
        to_run = [k for k in keys if rng.random() < 0.8]
        cost = {k: rng.choice([0.5, 1.0, 2.0, 7.0]) for k in keys}
        declared = longest_path_priority(deps, to_run, cost.__getitem__)
        assert declared == longest_path_priority(deps, to_run[::-1], cost.__getitem__)
        assert set(declared) == set(to_run)


def test_the_key_sets_of_a_large_graph_are_not_walked_by_the_garbage_collector():
    """``waiting`` and ``dependents`` hold strings only, in containers the garbage collector does not
    track: with a set per key, every full collection of a 300,000-task run walked 200,000 more objects."""
    deps = {f"p{i}": () for i in range(100)} | {f"c{i}": (f"p{i}", f"p{(i + 1) % 100}") for i in range(100)}
    state = GraphState(deps=deps, available=set(), order={k: i for i, k in enumerate(deps)})
    state.add(list(deps))
    gc.collect()
    assert len(state.dependents) == 100 and len(state.waiting) == 100
    assert not any(gc.is_tracked(keys) for keys in (*state.dependents.values(), *state.waiting.values()))
    state.repair("c0", ["p0"])  # changed later, still untracked
    assert not any(gc.is_tracked(keys) for keys in (*state.dependents.values(), *state.waiting.values()))


RANDOM_GRAPH = '''
import json, random, sys
from ndustria import Pipeline

def node(i, inputs, salt):
    return (i * 7919 + salt * 104729 + sum(v * (k + 3) for k, v in enumerate(inputs))) % 1_000_003

def plain(n, seed, changed):
    rng, values = random.Random(seed), []
    for i in range(n):
        inputs = [values[j] for j in rng.sample(range(i), min(i, rng.randint(0, 3)))]
        values.append(node(i, inputs, int(i in changed)))
    return values

n, seed, changed = int(sys.argv[1]), int(sys.argv[2]), {int(c) for c in sys.argv[3].split(",") if c}
if len(sys.argv) > 4:  # freeze the graph out of the garbage collector's walks from this many tasks
    from ndustria import gcfreeze
    gcfreeze.FREEZE_AT = int(sys.argv[4])
pipe = Pipeline(name="graph", verbose=False)
task = pipe.AddFunction()(node)
rng, handles = random.Random(seed), []
for i in range(n):
    inputs = [handles[j] for j in rng.sample(range(i), min(i, rng.randint(0, 3)))]
    handles.append(task(i, inputs, int(i in changed)))
summary = pipe.run()
print(json.dumps({"cached": [h.result() for h in handles], "plain": plain(n, seed, changed),
                  "executed": summary.executed}))
'''


@pytest.mark.parametrize("seed, freeze_at", [(1, ()), (2, ()), (3, ("20",))])
def test_a_random_graph_gives_the_uncached_values_cold_partly_cached_and_warm(tmp_path, seed, freeze_at):
    """Differential, across processes: a random graph of tasks (each taking 0-3 earlier results) run cold,
    then with a few tasks changed (their dependents wait on fresh inputs while the rest is cached), then
    as at first, returns in every run exactly what the same functions return called directly; also with
    the graph frozen out of the garbage collector's walks while declared and run (ndustria.gcfreeze)."""
    script = tmp_path / "graph.py"
    script.write_text(RANDOM_GRAPH)
    env = {"NDUSTRIA_CACHE_DIR": str(tmp_path / "cache")}
    executed = []
    for changed in ("", "3,17,40", ""):
        out = run_python(script, "60", str(seed), changed, *freeze_at, cwd=tmp_path, env=env)
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["cached"] == result["plain"], changed
        executed.append(result["executed"])
    assert executed[0] == 60 and 3 <= executed[1] < 60 and executed[2] == 0
