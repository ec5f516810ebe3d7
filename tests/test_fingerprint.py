"""Behaviour of code fingerprints: what changes a task's code identity and what does not."""

from __future__ import annotations

import importlib
import inspect
import itertools
import linecache
import math
import os
import sys
import textwrap
import time

import numpy
import pytest

from ndustria.errors import NdustriaWarning, UnhashableError
from ndustria.keys.fingerprint import Fingerprinter, is_library_module
from ndustria.keys.hashing import ValueHasher

_counter = itertools.count()


@pytest.fixture
def fp() -> Fingerprinter:
    return Fingerprinter(ValueHasher())


def load(src: str, filename: str | None = None, module: str = "usercode") -> dict:
    """Exec ``src`` as if it were a file (registered in linecache so its source can be read)."""
    src = textwrap.dedent(src)
    filename = filename or f"<ndustria-test-{next(_counter)}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns = {"__name__": module}
    exec(compile(src, filename, "exec"), ns)
    return ns


def digest_of(fp: Fingerprinter, src: str, name: str = "task") -> bytes:
    return fp.digest(load(src)[name])


BASE = """
import functools

def deco(**options):
    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            return fn(*a, **k)
        return wrapper
    return wrap

def task(x, y=2):
    total = 0
    for i in range(x):
        total += i * y
    return total
"""


@pytest.mark.parametrize(
    "edited",
    [
        BASE.replace("total = 0", "total = 0  # start from zero"),
        BASE.replace("def task(x, y=2):", 'def task(x, y=2):\n    """Sum things up."""'),
        BASE.replace("    return total", "\n\n    return total"),
        BASE.replace("for i in range(x):", "for i in range( x ) :"),
        BASE.replace("total += i * y", "total += (i *\n                  y)"),
    ],
    ids=["comment", "docstring", "blank-lines", "spacing", "line-break"],
)
def test_cosmetic_edits_keep_the_digest(fp, edited):
    assert digest_of(fp, edited) == digest_of(fp, BASE)


def test_decorator_arguments_the_wrapper_does_not_read_do_not_count(fp):
    a = load(BASE.replace("def task(", "@deco(retries=3)\ndef task("))["task"]
    b = load(BASE.replace("def task(", "@deco(retries=5, verbose=True)\ndef task("))["task"]
    assert fp.digest(a) == fp.digest(b)
    assert fp.digest(a) != digest_of(fp, BASE)  # the wrapper's own code counts


SCALED = """
import functools

def scaled(factor):
    def wrap(fn):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            return fn(*a, **k) * factor
        return wrapper
    return wrap

@scaled(10)
def helper(v):
    return v + 1

def task(x):
    return helper(x)
"""


@pytest.mark.parametrize("edit", [("@scaled(10)", "@scaled(100)"), ("* factor", "* factor + 1"),
                                  ("return v + 1", "return v + 2")], ids=["argument", "wrapper", "wrapped"])
def test_a_decorated_helper_counts_by_its_wrapper_and_what_it_wraps(fp, edit):
    assert digest_of(fp, SCALED.replace(*edit)) != digest_of(fp, SCALED)
    assert digest_of(fp, SCALED.replace("@scaled(10)", "@scaled( 10 )  # ten")) == digest_of(fp, SCALED)


@pytest.mark.parametrize(
    "edited",
    [
        BASE.replace("total += i * y", "total += i + y"),
        BASE.replace("y=2", "y=3"),
        BASE.replace("def task(x, y=2):", "def task(x: int, y=2):"),
    ],
    ids=["operator", "default", "annotation"],
)
def test_code_edits_change_the_digest(fp, edited):
    assert digest_of(fp, edited) != digest_of(fp, BASE)


def test_function_name_counts(fp):
    renamed = load(BASE.replace("def task(", "def job("))["job"]
    assert fp.digest(renamed) != digest_of(fp, BASE)


def test_reverting_restores_the_earlier_digest(fp):
    v1 = digest_of(fp, BASE)
    v2 = digest_of(fp, BASE.replace("i * y", "i - y"))
    v3 = digest_of(fp, BASE)
    assert v1 != v2
    assert v1 == v3
    assert fp.hexdigest(load(BASE)["task"]) == v1.hex()
    assert len(v1) == 16


HELPERS = """
SCALE = 3

def inner(v):
    return v * SCALE

def helper(v):
    return inner(v) + 1

def task(x):
    return [helper(i) for i in range(x)]
"""


def test_editing_a_helper_changes_the_task(fp):
    base = digest_of(fp, HELPERS)
    assert digest_of(fp, HELPERS.replace("inner(v) + 1", "inner(v) + 2")) != base
    assert digest_of(fp, HELPERS.replace("# nothing", "")) == base


def test_editing_a_helpers_helper_changes_the_task(fp):
    assert digest_of(fp, HELPERS.replace("v * SCALE", "v ** SCALE")) != digest_of(fp, HELPERS)


def test_constant_read_by_a_helper_changes_the_task(fp):
    ns = load(HELPERS)
    before = fp.digest(ns["task"])
    ns["SCALE"] = 4
    after = fp.digest(ns["task"])
    ns["SCALE"] = 3
    assert before != after
    assert fp.digest(ns["task"]) == before


def test_constant_read_by_the_task_changes_the_digest(fp):
    src = "LIMIT = {}\ndef task(x):\n    return min(x, LIMIT)\n"
    assert digest_of(fp, src.format(10)) != digest_of(fp, src.format(11))
    assert digest_of(fp, src.format("[1, 2]")) != digest_of(fp, src.format("[1, 3]"))


def test_global_changed_between_declarations(fp):
    ns = load("def task(x):\n    return x + K\n")
    digests = []
    for k in (1, 2, 1):
        ns["K"] = k
        digests.append(fp.digest(ns["task"]))
    assert digests[0] != digests[1]
    assert digests[0] == digests[2]


def test_missing_global_is_allowed_and_counts(fp):
    ns = load("def task(x):\n    return later(x)\n")
    missing = fp.digest(ns["task"])
    ns["later"] = load("def later(v):\n    return v\n", module="usercode")["later"]
    assert fp.digest(ns["task"]) != missing


def test_closure_values_count(fp):
    ns = load("def make(k):\n    def task(x):\n        return x + k\n    return task\n")
    one, two, one_again = ns["make"](1), ns["make"](2), ns["make"](1)
    assert one.__code__ is two.__code__
    assert fp.digest(one) != fp.digest(two)
    assert fp.digest(one) == fp.digest(one_again)


def test_closure_over_a_helper_function(fp):
    ns = load("def make(f):\n    return lambda x: f(x)\n")
    a = load("def h(v):\n    return v + 1\n")["h"]
    b = load("def h(v):\n    return v + 2\n")["h"]
    assert fp.digest(ns["make"](a)) != fp.digest(ns["make"](b))


def test_recursive_functions_terminate(fp):
    src = "def task(n):\n    return 1 if n <= 1 else n * task(n - 1)\n"
    assert digest_of(fp, src) == digest_of(fp, src)
    assert digest_of(fp, src) != digest_of(fp, src.replace("n - 1", "n - 2"))


MUTUAL = """
def is_even(n):
    return True if n == 0 else is_odd(n - 1)

def is_odd(n):
    return False if n == 0 else is_even(n - 1)
"""


def test_mutual_recursion_terminates_and_sees_edits(fp):
    ns = load(MUTUAL)
    assert fp.digest(ns["is_even"]) == fp.digest(load(MUTUAL)["is_even"])
    assert fp.digest(ns["is_even"]) != fp.digest(ns["is_odd"])
    edited = load(MUTUAL.replace("False if", "bool(0) if"))
    assert fp.digest(edited["is_even"]) != fp.digest(ns["is_even"])
    assert set(fp.helpers(ns["is_even"])) == {ns["is_odd"]}


def test_decorated_recursive_task(fp):
    src = BASE + "\n@deco(retries=1)\ndef rec(n):\n    return 0 if n == 0 else rec(n - 1)\n"
    ns = load(src)
    assert ns["rec"].__wrapped__ is not ns["rec"]
    assert fp.digest(ns["rec"]) == fp.digest(load(src)["rec"])
    assert fp.digest(ns["rec"].__wrapped__) == fp.digest(load(src)["rec"].__wrapped__)


def test_library_functions_are_identified_by_version_not_source(fp, monkeypatch):
    parsed = []
    real = inspect.getsource

    def spy(obj):
        parsed.append(getattr(obj, "co_filename", obj))
        return real(obj)

    monkeypatch.setattr(inspect, "getsource", spy)
    src = """
    import numpy as np
    from math import sqrt
    from numpy import dot, sqrt as npsqrt
    from collections import OrderedDict
    def task(a):
        return sqrt(dot(a, a)) + np.linalg.norm(a) + npsqrt(2.0) + len(OrderedDict())
    """
    first = digest_of(fp, src)
    assert first == digest_of(fp, src)
    assert all(isinstance(p, str) and p.startswith("<ndustria-test-") for p in parsed), parsed


def test_library_module_reference_is_stable(fp):
    a = load("import math\ndef task(x):\n    return math.sqrt(x)\n")["task"]
    b = load("import math\ndef task(x):\n    return math.sqrt(x)\n")["task"]
    c = load("import numpy as math\ndef task(x):\n    return math.sqrt(x)\n")["task"]
    assert fp.digest(a) == fp.digest(b) != fp.digest(c)
    assert math.sqrt(4) == numpy.sqrt(4)


def _write(path, text: str) -> None:
    """Write a source file with a strictly newer mtime, as an editor would."""
    stamp = os.stat(path).st_mtime_ns + 1_000_000_000 if path.exists() else time.time_ns()
    path.write_text(textwrap.dedent(text))
    os.utime(path, ns=(stamp, stamp))


def test_user_module_helper_edit_changes_the_task(fp, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    name = f"ndustria_test_helpers_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    deep = tmp_path / f"{name}_deep.py"
    _write(deep, "def deeper(v):\n    return v + 1\n")
    _write(path, f"from {name}_deep import deeper\n\ndef helper(v):\n    return deeper(v) * 2\n")
    importlib.invalidate_caches()
    mod = importlib.import_module(name)
    try:
        task = load(f"import {name} as hm\ndef task(x):\n    return hm.helper(x)\n")["task"]
        before = fp.digest(task)
        assert fp.digest(task) == before
        assert fp.helpers(task) == [mod.helper, mod.deeper]

        _write(
            path,
            f"from {name}_deep import deeper\n\ndef helper(v):\n    # comment\n    return deeper(v) * 2\n",
        )
        importlib.reload(mod)
        assert fp.digest(task) == before

        _write(path, f"from {name}_deep import deeper\n\ndef helper(v):\n    return deeper(v) * 3\n")
        importlib.reload(mod)
        edited = fp.digest(task)
        assert edited != before

        _write(deep, "def deeper(v):\n    return v + 5\n")
        importlib.reload(sys.modules[f"{name}_deep"])
        importlib.reload(mod)
        assert fp.digest(task) not in (before, edited)
    finally:
        sys.modules.pop(name, None)
        sys.modules.pop(f"{name}_deep", None)


def test_user_class_source_counts(fp):
    src = "class Model:\n    def predict(self, x):\n        return x * 2\n\ndef task(x):\n    return Model().predict(x)\n"
    base = digest_of(fp, src)
    assert digest_of(fp, src.replace("x * 2", "x * 3")) != base
    assert digest_of(fp, src.replace("class Model:", 'class Model:\n    """A model."""')) == base
    ns = load(src)
    assert fp.helpers(ns["task"]) == [ns["Model"].predict]


def test_instance_of_a_user_class_in_a_global_counts_its_code(fp):
    src = "class Scaler:\n    def __call__(self, x):\n        return x * 2\n\nSCALER = Scaler()\n\ndef task(x):\n    return SCALER(x)\n"
    assert digest_of(fp, src) == digest_of(fp, src)
    assert digest_of(fp, src.replace("x * 2", "x * 3")) != digest_of(fp, src)


def test_function_inside_a_global_container_is_fingerprinted(fp):
    src = "def double(v):\n    return v * 2\n\nSTEPS = [double]\n\ndef task(x):\n    return [s(x) for s in STEPS] + [task]\n"
    assert digest_of(fp, src) == digest_of(fp, src)
    assert digest_of(fp, src.replace("v * 2", "v + v")) != digest_of(fp, src)


def test_unhashable_global_names_function_and_variable(fp, tmp_path):
    ns = load("def task(x):\n    return LOG.write(str(x))\n")
    with open(tmp_path / "log.txt", "w") as fh:
        ns["LOG"] = fh
        with pytest.raises(UnhashableError) as info:
            fp.digest(ns["task"])
    message = str(info.value)
    assert "task" in message and "LOG" in message
    assert "argument" in message and "version=" in message


def test_unhashable_global_of_a_helper_names_the_helper(fp, tmp_path):
    ns = load("def helper(v):\n    return SINK.write(v)\n\ndef task(x):\n    return helper(x)\n")
    with open(tmp_path / "sink.txt", "w") as fh:
        ns["SINK"] = fh
        with pytest.raises(UnhashableError, match="helper.*SINK"):
            fp.digest(ns["task"])


def test_lambdas(fp):
    base = digest_of(fp, "task = lambda x: x + 1\n")
    assert digest_of(fp, "task = lambda x: x + 1  # add one\n") == base
    assert digest_of(fp, "task = (lambda x:  x+1)\n") == base
    assert digest_of(fp, "task = lambda x: x + 2\n") != base
    pair = "plus, times = (lambda x: x + 1), (lambda x: x * 2)\n"
    ns = load(pair)
    assert fp.digest(ns["plus"]) != fp.digest(ns["times"])
    assert fp.digest(ns["plus"]) == digest_of(fp, pair, "plus")


def test_code_without_source_falls_back_to_bytecode(fp):
    src = "def task(x):\n    return x * FACTOR\n"
    ns1, ns2 = {"__name__": "m"}, {"__name__": "m"}
    exec(compile(src, "<no-source-1>", "exec"), ns1)
    exec(compile("\n\n\n" + src, "<no-source-2>", "exec"), ns2)  # other line numbers
    ns1["FACTOR"] = ns2["FACTOR"] = 2
    assert fp.digest(ns1["task"]) == fp.digest(ns2["task"])
    ns2["FACTOR"] = 3
    assert fp.digest(ns1["task"]) != fp.digest(ns2["task"])
    ns3 = {"__name__": "m", "FACTOR": 2}
    exec(compile(src.replace("x *", "x +"), "<no-source-3>", "exec"), ns3)
    assert fp.digest(ns3["task"]) != fp.digest(ns1["task"])


def test_notebook_cells_do_not_depend_on_cell_file_names(fp):
    src = "def task(x):\n    return helper(x) + 1\n\ndef helper(v):\n    return v\n"
    a = load(src, filename="/tmp/ipykernel_111/2034101.py", module="__main__")["task"]
    b = load(src, filename="<ipython-input-7-abcdef>", module="__main__")["task"]
    assert fp.digest(a) == fp.digest(b)
    assert [f.__name__ for f in fp.helpers(a)] == ["helper"]


def test_helpers_lists_reachable_user_functions(fp):
    ns = load(HELPERS + "\nimport math\ndef unused(v):\n    return math.sqrt(v)\n")
    assert set(fp.helpers(ns["task"])) == {ns["helper"], ns["inner"]}
    assert fp.helpers(ns["inner"]) == []
    assert fp.helpers(ns["unused"]) == []


def test_fingerprinter_becomes_the_hashers_function_token():
    hasher = ValueHasher()
    fp = Fingerprinter(hasher)
    assert hasher.function_token == fp.digest


def test_is_library_module():
    assert is_library_module("numpy")
    assert is_library_module("numpy.linalg")
    assert is_library_module("json")
    assert is_library_module("math")
    assert is_library_module("builtins")
    assert is_library_module("ndustria")
    assert not is_library_module("__main__")
    assert not is_library_module("usercode")


# ----------------------------------------------------------------------------- repeated digests (memo)


@pytest.fixture
def slow_calls(fp, monkeypatch) -> list:
    """Records every full (slow path) digest computation ``fp`` makes."""
    calls: list = []
    real = fp._digest

    def counting(fn, ctx):
        calls.append(fn)
        return real(fn, ctx)

    monkeypatch.setattr(fp, "_digest", counting)
    return calls


def fresh(fn) -> bytes:
    """The digest a new Fingerprinter computes from scratch (no memo)."""
    return Fingerprinter(ValueHasher()).digest(fn)


FAST = """
import numpy as np
from math import sqrt
from numpy import add

K = 7
NAMES = ("a", ("b", 1.5), frozenset({1, 2}))

class Model:
    def predict(self, x):
        return x * 2

def helper(v, scale=2, *, shift=1):
    return v * scale + shift

def make(k):
    def inner(v):
        return v + k
    return inner

adder = make(3)

def task(x, n=K, *, mode="fast"):
    return np.sqrt(helper(x)) + K + sqrt(x) + add(x, 1) + adder(x) + len(NAMES) + Model().predict(x)
"""


def test_repeated_digest_takes_the_fast_path(fp, slow_calls):
    ns = load(FAST)
    task = ns["task"]
    first = fp.digest(task)
    assert [fp.digest(task) for _ in range(5)] == [first] * 5
    assert slow_calls == [task]
    assert first == fresh(task)


def test_fast_path_sees_a_global_changed_to_another_object(fp, slow_calls):
    ns = load("def task(x):\n    return x + K\n")
    digests = []
    for k in (1, 2):
        ns["K"] = k
        digests.append(fp.digest(ns["task"]))
    assert digests[0] != digests[1]
    ns["K"] = True  # equal to 1, but not the same object: must not reuse the digest of 1
    assert fp.digest(ns["task"]) not in digests
    assert fp.digest(ns["task"]) == fresh(ns["task"])
    assert len(slow_calls) == 3


def test_fast_path_sees_a_helper_redefined(fp, slow_calls):
    ns = load(HELPERS)
    before = fp.digest(ns["task"])
    ns["inner"] = load("SCALE = 3\ndef inner(v):\n    return v * SCALE * 2\n")["inner"]
    after = fp.digest(ns["task"])
    assert after != before
    assert after == fresh(ns["task"])
    assert fp.digest(ns["task"]) == after
    assert len(slow_calls) == 2


def test_fast_path_sees_a_helpers_global_and_a_shadowed_builtin(fp):
    ns = load("def helper(v):\n    return len(v) + OFFSET\n\ndef task(x):\n    return helper(x)\n")
    ns["OFFSET"] = 1
    base = fp.digest(ns["task"])
    ns["OFFSET"] = 2
    assert fp.digest(ns["task"]) != base
    ns["OFFSET"] = 1
    assert fp.digest(ns["task"]) == base
    ns["len"] = load("def len(v):\n    return 0\n")["len"]  # a global now shadows the builtin
    assert fp.digest(ns["task"]) != base
    del ns["len"]
    assert fp.digest(ns["task"]) == base


def test_fast_path_sees_a_closure_cell_changed(fp):
    ns = load(
        """
        def make():
            k = 1
            def task(x):
                return x + k
            def bump():
                nonlocal k
                k += 1
            return task, bump
        """
    )
    task, bump = ns["make"]()
    before = fp.digest(task)
    assert fp.digest(task) == before
    bump()
    after = fp.digest(task)
    assert after != before
    assert after == fresh(task)


def test_fast_path_sees_defaults_changed(fp):
    ns = load(BASE)
    task = ns["task"]
    before = fp.digest(task)
    task.__defaults__ = (3,)
    changed = fp.digest(task)
    assert changed != before
    assert changed == fresh(task)
    task.__defaults__ = (2,)
    assert fp.digest(task) == before


def test_fast_path_sees_keyword_defaults_changed_in_place(fp):
    ns = load("def helper(v, *, k=1):\n    return v + k\n\ndef task(x):\n    return helper(x)\n")
    before = fp.digest(ns["task"])
    ns["helper"].__kwdefaults__["k"] = 2
    assert fp.digest(ns["task"]) != before
    ns["helper"].__kwdefaults__["k"] = 1
    assert fp.digest(ns["task"]) == before
    ns["helper"].__kwdefaults__ = {"k": 1, "extra": None}
    assert fp.digest(ns["task"]) != before


def test_fast_path_sees_code_replaced(fp):
    ns = load(BASE)
    task = ns["task"]
    before = fp.digest(task)
    task.__code__ = load(BASE.replace("i * y", "i - y"))["task"].__code__
    assert fp.digest(task) != before
    assert fp.digest(task) == fresh(task)


def test_mutable_values_disable_the_fast_path(fp, slow_calls):
    ns = load("def task(x):\n    return x + STEPS[0] + PAIR[1][0]\n")
    ns["STEPS"], ns["PAIR"] = [1, 2], (0, [5])
    before = fp.digest(ns["task"])
    assert fp.digest(ns["task"]) == before
    assert len(slow_calls) == 2  # recomputed: a list's content may change in place
    ns["STEPS"].append(3)
    after = fp.digest(ns["task"])
    assert after != before
    ns["PAIR"][1][0] = 6
    assert fp.digest(ns["task"]) not in (before, after)


def test_mutable_default_and_cell_disable_the_fast_path(fp, slow_calls):
    ns = load(
        "def make(box):\n    def task(x, opts={}):\n        return box[0] + opts.get(x, 0)\n    return task\n"
    )
    box = [1]
    task = ns["make"](box)
    before = fp.digest(task)
    box[0] = 2
    after = fp.digest(task)
    task.__defaults__[0]["x"] = 1
    assert len({before, after, fp.digest(task)}) == 3
    assert len(slow_calls) == 3


def _module_on_disk(tmp_path, monkeypatch, source: str):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    name = f"ndustria_test_fast_{next(_counter)}"
    path = tmp_path / f"{name}.py"
    _write(path, source)
    importlib.invalidate_caches()
    return name, path, importlib.import_module(name)


def test_the_loaded_code_counts_not_the_file_edited_after_import(fp, slow_calls, tmp_path, monkeypatch):
    name, path, mod = _module_on_disk(tmp_path, monkeypatch, "def helper(v):\n    return v * 2\n")
    try:
        task = load(f"import {name} as hm\ndef task(x):\n    return hm.helper(x)\n")["task"]
        before = fp.digest(task)
        assert fp.digest(task) == before
        assert len(slow_calls) == 1
        _write(path, "def helper(v):\n    return v * 3\n")  # edited on disk, not reloaded: v * 2 still runs
        assert fp.digest(task) == before == fresh(task)
        importlib.reload(mod)  # now v * 3 runs
        after = fp.digest(task)
        assert after != before
        assert after == fresh(task)
    finally:
        sys.modules.pop(name, None)


def test_code_first_seen_after_its_file_changed_is_keyed_by_its_bytecode(fp, tmp_path, monkeypatch):
    name, path, mod = _module_on_disk(tmp_path, monkeypatch, "def helper(v):\n    return v * 2\n")
    try:
        task = load(f"import {name} as hm\ndef task(x):\n    return hm.helper(x)\n")["task"]
        _write(path, "def helper(v):\n    return v * 3\n")  # before ndustria ever saw helper
        with pytest.warns(NdustriaWarning, match="changed on disk after it was imported"):
            stale = fp.digest(task)
        assert fresh(task) == stale
        importlib.reload(mod)
        assert fp.digest(task) != stale  # the new code never gets the old code's key
    finally:
        sys.modules.pop(name, None)


def test_fast_path_follows_decorated_helpers(fp):
    ns = load(BASE + "\n@deco()\ndef helper(v):\n    return v\n\ndef job(x):\n    return helper(x)\n")
    before = fp.digest(ns["job"])
    ns["helper"].__wrapped__ = load("def helper(v):\n    return v + 1\n")["helper"]
    assert fp.digest(ns["job"]) != before
    assert fp.digest(ns["job"]) == fresh(ns["job"])


def test_memo_does_not_keep_functions_alive(fp):
    import gc
    import weakref

    ns = load(BASE)
    task = ns.pop("task")
    fp.digest(task)
    assert len(fp._fast) == 1
    ref = weakref.ref(task)
    del task, ns
    gc.collect()
    assert ref() is None
    assert fp._fast == {}


# ----------------------------------------------------------------------------- what the code reaches

REACH = """
import dataclasses
import enum

SCALE = 3

def helper(v):
    return v * SCALE

class Base:
    def method(self, v):
        return helper(v)

class Child(Base):
    def other(self):
        return 1

@dataclasses.dataclass
class Config:
    factor: int = 2
    names: list = dataclasses.field(default_factory=list)

class Color(enum.Enum):
    RED = 1
    BLUE = 2

def is_even(n):
    return True if n == 0 else is_odd(n - 1)

def is_odd(n):
    return False if n == 0 else is_even(n - 1) + helper(1)

class Node:
    def walk(self):
        return Tree.grow(self)

class Tree:
    @staticmethod
    def grow(n):
        return Node().walk() + is_odd(2)

def task(x):
    return Child().method(x) + Config().factor + Color.RED.value + Tree.grow(x)
"""


@pytest.fixture(autouse=True)
def _usercode_module(monkeypatch):
    """dataclasses look up the module of a class they decorate (load() execs as module "usercode")."""
    import types

    monkeypatch.setitem(sys.modules, "usercode", types.ModuleType("usercode"))


@pytest.mark.parametrize("edit", [("return helper(v)", "return helper(v) + 1"), ("SCALE = 3", "SCALE = 4"),
                                  ("factor: int = 2", "factor: int = 5"), ("BLUE = 2", "BLUE = 3"),
                                  ("is_even(n - 1) + helper(1)", "is_even(n - 1) + helper(2)")],
                         ids=["inherited-method", "constant-of-a-method-helper", "dataclass-default", "enum-value",
                              "cycle-member"])
def test_classes_count_by_their_members_bases_and_what_methods_reach(fp, edit):
    assert digest_of(fp, REACH.replace(*edit)) != digest_of(fp, REACH)


def test_class_cosmetics_do_not_count(fp):
    edited = REACH.replace("class Child(Base):", 'class Child(Base):\n    """A child."""  # comment')
    assert digest_of(fp, edited) == digest_of(fp, REACH)


def test_digests_do_not_depend_on_what_was_digested_before():
    import random

    ns = load(REACH)
    names = ["task", "helper", "Base", "Child", "Config", "Color", "is_even", "is_odd", "Node", "Tree"]
    results = set()
    for seed in range(8):
        order = names[:]
        random.Random(seed).shuffle(order)
        fp = Fingerprinter(ValueHasher())
        out = {}
        for _ in range(2):  # the second pass is served by memos
            for name in order:
                obj = ns[name]
                out[name] = fp.class_digest(obj) if isinstance(obj, type) else fp.digest(obj)
        results.add(tuple(sorted(out.items())))
    assert len(results) == 1


def test_attribute_chains_through_user_modules_and_imports_inside_functions(fp, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    top = f"ndustria_test_pkg_{next(_counter)}"
    (tmp_path / top).mkdir()
    _write(tmp_path / top / "__init__.py", "from . import sub\n")
    _write(tmp_path / top / "sub.py", "LIMIT = 4\n\ndef func(v):\n    return v + 1\n")
    importlib.invalidate_caches()
    pkg = importlib.import_module(top)
    try:
        chained = load(f"import {top}\ndef task(x):\n    return {top}.sub.func(x) + {top}.sub.LIMIT\n")["task"]
        inside = load(f"def task(x):\n    from {top}.sub import func\n    return func(x)\n")["task"]
        before = (fp.digest(chained), fp.digest(inside))
        pkg.sub.LIMIT = 5  # set at run time: the value in memory counts
        assert fp.digest(chained) != before[0]
        assert fp.digest(inside) == before[1]
        pkg.sub.LIMIT = 4
        _write(tmp_path / top / "sub.py", "LIMIT = 4\n\ndef func(v):\n    return v + 2\n")
        importlib.reload(pkg.sub)
        assert fp.digest(chained) != before[0]
        assert fp.digest(inside) != before[1]
    finally:
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            sys.modules.pop(name, None)


def test_parts_name_what_a_function_reads(fp):
    ns = load(REACH)
    parts = fp.parts(ns["task"])
    assert {"code", "global variable 'Child'", "global variable 'Config'", "global variable 'Tree'"} <= set(parts)
    ns["Config"] = load(REACH.replace("factor: int = 2", "factor: int = 5"))["Config"]
    changed = {k for k, v in fp.parts(ns["task"]).items() if parts.get(k) != v}
    assert changed == {"global variable 'Config'"}


def test_class_digests_are_the_same_first_and_later_and_as_values(fp):
    ns = load(REACH)
    first = [fp.class_digest(ns[n]) for n in ("Child", "Config", "Color", "Node")]
    assert [fp.class_digest(ns[n]) for n in ("Child", "Config", "Color", "Node")] == first
    assert [Fingerprinter(ValueHasher()).class_digest(ns[n]) for n in ("Child", "Config", "Color", "Node")] == first
    hasher = fp.hasher
    values = [ns["Config"](), ns["Child"], ns["Color"].RED]
    assert hasher.digest(values) == hasher.digest(values) == Fingerprinter(ValueHasher()).hasher.digest(values)


def _decorator(f):
    return f


class _Holder:
    @staticmethod
    @_decorator
    def method(x):  # decorated twice, inside a class
        return x + 1

    def plain(self):
        return [lambda y: y for _ in range(2)]


def test_source_of_reads_what_inspect_getsource_reads():
    """code.source_of (linecache, no scan of sys.modules) gives inspect.getsource's text exactly."""
    import inspect

    from ndustria.keys.code import source_of

    def nested(a, b=2):
        """doc"""
        return a * b

    square = lambda v: v * v  # noqa: E731
    for obj in (nested, square, _Holder.method, _Holder.plain, _decorator, _Holder().plain()[0]):
        assert source_of(obj.__code__) == inspect.getsource(obj.__code__), obj


def test_source_of_reads_a_file_edited_and_reloaded_in_this_process(tmp_path, monkeypatch):
    import importlib
    import time

    from ndustria.keys.code import source_of

    module = tmp_path / "edited_mod.py"
    module.write_text("def f(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import edited_mod

    assert "x + 1" in source_of(edited_mod.f.__code__)
    module.write_text("def f(x):\n    return x + 2\n")
    stamp = time.time() + 5
    os.utime(module, (stamp, stamp))  # a new mtime even on a coarse clock
    importlib.reload(edited_mod)
    assert "x + 2" in source_of(edited_mod.f.__code__)


_TRICKY_ENDINGS = '''
import abc


class Base(abc.ABC):
    @abc.abstractmethod
    def only_doc(self):
        """A body of one docstring."""

    @abc.abstractmethod
    def only_doc_long(self):
        """A docstring
        over lines."""


def trailing_pass(x):
    if x:
        return 1
    pass


def trailing_string(x):
    y = x
    """
text at column 0
"""


def trailing_comment(x):
    return x
    # a comment under the body


def trailing_annotation(x):
    print(x)
    y: int


def one_liner(x): return x


def closing_at_column_0(x):
    return max(x,
1,
)


def nested_last(x):
    def inner(y):
        return y
    return inner


def header_over_lines(
    a,
    b=2,
):
    return a + b


def try_pass(x):
    try:
        return x()
    except ValueError:
        pass


async def coroutine(x):
    return x
'''


def test_source_of_gives_the_statements_inspect_getsource_gives(tmp_path, monkeypatch):
    """The block of a function is found from its instructions' positions (no tokenizer); a block whose end
    they cannot tell (a trailing no-op, a string) goes to inspect.getblock. Differential: the parsed
    statements are those of inspect.getsource for awkward endings and every function of a few modules."""
    import ast
    import importlib
    import inspect
    import json
    import logging
    import types

    import ndustria.keys.fingerprint
    import ndustria.pipeline
    from ndustria.keys.code import _loaded_matches_file, _parse_source, source_of

    (tmp_path / "tricky_endings.py").write_text(_TRICKY_ENDINGS)
    monkeypatch.syspath_prepend(str(tmp_path))
    tricky = importlib.import_module("tricky_endings")
    codes = []
    for module in (tricky, inspect, json.decoder, logging, argparse_module(), ndustria.pipeline,
                   ndustria.keys.fingerprint):
        for value in vars(module).values():
            for obj in (list(vars(value).values()) if isinstance(value, type) else [value]):
                code = getattr(getattr(obj, "__func__", obj), "__code__", None)
                if isinstance(code, types.CodeType) and code.co_filename == getattr(module, "__file__", None):
                    codes.append(code)
    codes = [c for c in codes if _loaded_matches_file(c)]  # (a file edited since it was imported has no block)
    assert len(codes) > 300
    for code in codes:
        expected, got = inspect.getsource(code), source_of(code)
        assert ast.dump(_parse_source(got)) == ast.dump(_parse_source(expected)), (code.co_filename, code.co_name)
    assert "y: int" in source_of(tricky.trailing_annotation.__code__)
    assert "text at column 0" in source_of(tricky.trailing_string.__code__)


def argparse_module():
    import argparse

    return argparse


def test_library_roots_are_sysconfigs_found_without_it(monkeypatch):
    """The library folders found without sysconfig.get_paths() (which costs a warm script ~2 ms) are
    sysconfig's: each of its stdlib, platstdlib, purelib and platlib counts as library code, and no
    other folder does than site's own."""
    import site
    import sysconfig

    from ndustria.keys import library

    roots = set(library.library_roots())
    paths = sysconfig.get_paths()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        assert library._is_library_path(os.path.join(paths[name], "some_module.py")), name
    expected = {os.path.realpath(paths[n]) + os.sep for n in ("stdlib", "platstdlib", "purelib", "platlib")}
    expected |= {os.path.realpath(p) + os.sep for p in (*site.getsitepackages(), site.getusersitepackages())}
    assert roots <= expected
    assert os.path.realpath(paths["stdlib"]) + os.sep in roots
    assert os.path.realpath(paths["platstdlib"]) + os.sep in roots
    monkeypatch.delattr(os, "__file__")  # a standard library frozen into the interpreter: sysconfig says
    library.library_roots.cache_clear()
    try:
        assert expected - {os.path.realpath(p) + os.sep for p in site.getsitepackages()} <= set(library.library_roots())
    finally:
        monkeypatch.undo()
        library.library_roots.cache_clear()


def test_a_pipelines_remembered_digest_sees_every_change_between_declarations(tmp_path):
    """Each declaration checks the function's remembered digest (KeyMaker.function_digest keeps the
    fingerprinter's memo on the task function): a change between two declarations of the same call gives
    another task, undoing it gives the first one back, and each key is what a fresh fingerprint says."""
    from ndustria import Pipeline

    ns = load(
        """
        K = 1

        def helper(v, *, k=1):
            return v + k

        def make():
            c = 1
            def task(x, n=2):
                return helper(x) + K + n + c
            def bump():
                nonlocal c
                c += 1
            return task, bump
        """
    )
    task, bump = ns["make"]()
    pipe = Pipeline(name="remembered", cache_dir=tmp_path / "cache", verbose=False)
    declared = pipe.AddFunction()(task)

    def key() -> str:  # (n given: a task function binds the defaults it was registered with)
        handle = declared(5, 2)
        fresh_pipe = Pipeline(name="fresh", cache_dir=tmp_path / "cache", verbose=False)
        assert handle.id == fresh_pipe.AddFunction()(task)(5, 2).id
        return handle.id

    base = key()
    assert key() == base  # nothing changed: the remembered digest
    ns["K"] = 2
    changed_global = key()
    ns["K"] = 1
    assert key() == base
    ns["helper"].__kwdefaults__["k"] = 3
    changed_helper = key()
    ns["helper"].__kwdefaults__["k"] = 1
    assert key() == base
    task.__defaults__ = (7,)
    changed_defaults = key()
    task.__defaults__ = (2,)
    assert key() == base
    bump()
    changed_cell = key()
    original = task.__code__
    task.__code__ = load("def make():\n    c = 0\n    def task(x, n=2):\n        return x - n - c\n"
                         "    return task\n")["make"]().__code__
    changed_code = key()
    task.__code__ = original
    assert key() == changed_cell
    assert len({base, changed_global, changed_helper, changed_defaults, changed_cell, changed_code}) == 6
    pipe.close()
