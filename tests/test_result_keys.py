"""A dependent's key follows what its inputs produced: a recomputed input with a new result gives new
dependent keys, one with a byte-identical result keeps them (early cutoff)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import run_python, write_script

SCRIPT = """
import json, sys
from pathlib import Path
from ndustria import Pipeline

pipe = Pipeline(name="results", backend=sys.argv[1])

@pipe.AddFunction(rerun=True)
def load():
    return Path("data.txt").read_text()

@pipe.AddFunction()
def shout(text):
    with open("shout-calls.txt", "a") as log:
        log.write("x")
    return text.upper()

@pipe.AddFunction()
def exclaim(text):
    return text + "!"

h = exclaim(shout(load()))
before = h.key
pipe.run()
print(json.dumps({"result": h.result(), "before": before, "after": h.key, "shout": shout(load()).key}))
"""


def _run(tmp_path: Path, data: str, backend: str = "serial") -> dict:
    (tmp_path / "data.txt").write_text(data)
    out = run_python(tmp_path / "results.py", backend, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shout_calls(tmp_path: Path) -> int:
    log = tmp_path / "shout-calls.txt"
    return len(log.read_text()) if log.exists() else 0


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_dependents_follow_a_rerun_input_and_stop_when_it_came_out_the_same(tmp_path, backend):
    write_script(tmp_path / "results.py", SCRIPT)
    first = _run(tmp_path, "a", backend)
    assert first["result"] == "A!" and _shout_calls(tmp_path) == 1
    assert first["before"] is None, "before run() the input's result is not known yet"
    assert first["after"] and len(first["after"]) == 32

    changed = _run(tmp_path, "b", backend)  # a new process: load() reruns and gives a new text
    assert changed["result"] == "B!", "a dependent of a recomputed task must see its new result"
    assert _shout_calls(tmp_path) == 2
    assert changed["after"] != first["after"]

    same = _run(tmp_path, "b", backend)  # load() reruns, byte-identical result: early cutoff
    assert same["result"] == "B!"
    assert _shout_calls(tmp_path) == 2, "shout must not run again when its input came out the same"
    assert same["after"] == changed["after"]

    back = _run(tmp_path, "a", backend)  # keys are content-addressed: the first results are hits again
    assert back["result"] == "A!" and back["after"] == first["after"]
    assert _shout_calls(tmp_path) == 2


def test_a_dependents_key_is_known_at_declaration_when_its_inputs_are_cached(cache_dir):
    from ndustria import Pipeline

    def build():
        pipe = Pipeline(name="known", verbose=False)

        @pipe.AddFunction()
        def produce(n):
            return list(range(n))

        @pipe.AddFunction()
        def total(xs):
            return sum(xs)

        return pipe, produce, total

    pipe, produce, total = build()
    h = total(produce(5))
    assert h.key is None and h.id
    assert "pending" in repr(h)
    pipe.run()
    key = h.key

    pipe2, produce2, total2 = build()
    h2 = total2(produce2(5))
    assert h2.key == key and h2.status == "cached"  # the whole warm graph is looked up before run()
    assert h2.result() == 10


def test_a_damaged_input_recomputed_with_another_result_gives_its_dependent_a_new_key(cache_dir):
    from ndustria import Pipeline

    draws = iter([1, 2, 3])

    pipe = Pipeline(name="damaged", verbose=False)

    @pipe.AddFunction(version="1")
    def draw():
        return next(draws)  # not deterministic: its recomputed result differs

    @pipe.AddFunction()
    def double(x):
        return 2 * x

    up = draw()
    down = double(up)
    pipe.run()
    assert down.result() == 2
    old_key = down.key
    pipe.store.remove(up.key)  # the input's entry is lost; the dependent's is still there

    pipe2 = Pipeline(name="damaged", verbose=False)
    draw2 = pipe2.AddFunction(version="1")(draw.func)
    double2 = pipe2.AddFunction()(double.func)
    d2 = double2(draw2())
    assert d2.key is None  # its input must be computed again first
    pipe2.run()
    assert d2.result() == 4, "the dependent follows the input's new result, not the old entry"
    assert d2.key != old_key



@pytest.mark.parametrize("call", ["plain", "nested"])
def test_a_dependents_key_lists_its_inputs_in_the_order_the_call_holds_them(cache_dir, call):
    """The key names each input's result in the order the arguments hold them, handles inside a list
    included (``g([a], b)``: a, then b), as keys made before declaring got a fast path for plain calls."""
    from ndustria import Pipeline
    from ndustria.keys.maker import result_key

    pipe = Pipeline(name="order", verbose=False)

    @pipe.AddFunction()
    def produce(n):
        return n * 10

    @pipe.AddFunction()
    def pair(a, b):
        return (a, b)

    a, b = produce(1), produce(2)
    h = pair([a], b) if call == "nested" else pair(a, b)
    assert [d.id for d in h.deps] == [a.id, b.id]
    pipe.run()
    assert h.key == result_key(h.id, [(a.id, a.checksum), (b.id, b.checksum)])
    assert h.result() == (([10], 20) if call == "nested" else (10, 20))


def test_declaring_only_sees_the_hits_of_inputs_declared_before_it(cache_dir):
    """A task declared inside ``declaring_only()`` (how the notebook asks whether a cell is cached) on an
    input declared before the block, not yet looked up, is a hit like the same call outside the block."""
    from ndustria import Pipeline

    pipe = Pipeline(name="only", verbose=False)

    @pipe.AddFunction()
    def produce(n):
        return n + 1

    @pipe.AddFunction()
    def double(x):
        return 2 * x

    expected = double(produce(1))
    pipe.run()
    a = produce(1)  # declared again: looked up lazily
    with pipe.declaring_only() as declared:
        b = double(a)
    assert declared == [b]
    assert b.key == expected.key and b.status == "cached"
