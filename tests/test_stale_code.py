"""Stale results from code the fingerprint does not follow (issue 13), tried as a user would.

Each test builds a small project under tmp_path (a script plus local modules and packages), runs the
script in fresh interpreters, edits a file between runs and checks that the next run returns what the
edited code returns (recomputed), while comment, docstring and formatting edits stay cache hits.
Every task appends its name to ``runs.log`` when it executes, so a test sees what was computed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import run_python, write_script

PRELUDE = """\
import os
import sys
from pathlib import Path

from ndustria import NdustriaError, Pipeline

pipe = Pipeline(name="stale")


def mark(name):
    with open("runs.log", "a") as log:
        log.write(name + "\\n")
"""


def put(root: Path, rel: str, source: str) -> Path:
    """Write a project file and give it an mtime strictly later (by 2 s) than the one it replaces,
    so neither ndustria's stat check nor Python's .pyc check can mistake it for the old file."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.stat().st_mtime_ns if path.exists() else 0
    write_script(path, source)
    stamp = max(time.time_ns(), old + 2_000_000_000)
    os.utime(path, ns=(stamp, stamp))
    return path


def script(root: Path, body: str, name: str = "main.py") -> Path:
    return put(root, name, PRELUDE + body)


@dataclass
class Run:
    results: list[str]  # the values printed on RESULT lines, in order
    computed: list[str]  # names of the tasks that executed, in order
    stdout: str

    @property
    def result(self) -> str:
        assert len(self.results) == 1, self.stdout
        return self.results[0]

    def line(self, tag: str) -> str:
        return next(line.split(" ", 1)[1] for line in self.stdout.splitlines() if line.startswith(tag + " "))


def run(root: Path, *args: str, name: str = "main.py") -> Run:
    log = root / "runs.log"
    log.unlink(missing_ok=True)
    proc = run_python(root / name, *args, cwd=root, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    computed = log.read_text().split() if log.exists() else []
    return Run(results, computed, proc.stdout)


def check_edits(root: Path, expected: int, cosmetic: list[tuple[str, str]], real: list[tuple[str, str, int]],
                *args: str) -> None:
    """Run once (computed); each cosmetic (file, source) edit must hit; each real (file, source, value)
    edit must recompute and give value; reverting the last real edit must hit with the first value."""
    first = run(root, *args)
    assert first.computed == ["compute"] and first.result == str(expected), first.stdout
    originals = {rel: (root / rel).read_text() for rel, *_ in cosmetic + real}
    for rel, source in cosmetic:
        put(root, rel, source)
        again = run(root, *args)
        assert again.computed == [] and again.result == str(expected), \
            f"cosmetic edit of {rel} recomputed or changed the result\n{again.stdout}"
    for rel, source, value in real:
        put(root, rel, source)
        edited = run(root, *args)
        assert edited.result == str(value), f"stale result after editing {rel}\n{edited.stdout}"
        assert edited.computed == ["compute"], edited.stdout
    for rel, source in originals.items():
        put(root, rel, source)
    back = run(root, *args)
    assert back.result == str(expected) and back.computed == [], back.stdout


# --------------------------------------------------------------------------- a. pkg.sub.func

SUB = """\
def func(x):
    return x * {k}
"""

SUB_COSMETIC = '''\
def func(x):
    """Multiply."""  # a docstring and a comment


    return (x *
            {k})
'''


@pytest.mark.parametrize("init", ["", "from . import sub\n"], ids=["empty-init", "init-imports-sub"])
def test_function_reached_through_package_submodule(tmp_path, init):
    put(tmp_path, "pkg/__init__.py", init)
    put(tmp_path, "pkg/sub.py", SUB.format(k=10))
    script(tmp_path, """
import pkg.sub

@pipe.AddFunction()
def compute(n):
    mark("compute")
    return pkg.sub.func(n)

h = compute(3)
pipe.run()
print("RESULT", h.result())
""")
    check_edits(tmp_path, 30, [("pkg/sub.py", SUB_COSMETIC.format(k=10))],
                [("pkg/sub.py", SUB.format(k=20), 60)])


# --------------------------------------------------------------------------- b. helper of a method

SHAPES = """\
{import_}

class Scaler:
    def apply(self, x):
        return helper(x) + 1
{local}"""

HELPER = """\
def helper(x):
    return x * {k}
"""


def shapes_project(root: Path, where: str, k: int) -> None:
    if where == "other-module":
        put(root, "helpers.py", HELPER.format(k=k))
        put(root, "shapes.py", SHAPES.format(import_="from helpers import helper", local=""))
    else:
        put(root, "shapes.py", SHAPES.format(import_="", local="\n\n" + HELPER.format(k=k)))


@pytest.mark.parametrize("use", ["global", "argument"])
@pytest.mark.parametrize("where", ["other-module", "same-module"])
def test_helper_called_by_a_method(tmp_path, where, use):
    shapes_project(tmp_path, where, 10)
    call = "compute(3)" if use == "global" else "compute(Scaler(), 3)"
    params = "n" if use == "global" else "scaler, n"
    obj = "Scaler()" if use == "global" else "scaler"
    script(tmp_path, f"""
from shapes import Scaler

@pipe.AddFunction()
def compute({params}):
    mark("compute")
    return {obj}.apply(n)

h = {call}
pipe.run()
print("RESULT", h.result())
""")
    rel = "helpers.py" if where == "other-module" else "shapes.py"
    before = (tmp_path / rel).read_text()
    cosmetic = before.replace("def helper(x):\n", 'def helper(x):\n    """Scale it."""\n    # why\n\n')
    shapes_project(tmp_path, where, 20)
    edited = (tmp_path / rel).read_text()
    put(tmp_path, rel, before)
    check_edits(tmp_path, 31, [(rel, cosmetic)], [(rel, edited, 61)])


# --------------------------------------------------------------------------- c. inherited method

BASE = """\
class Base:
    def value(self, x):
        return x * {k}
"""

BASE_COSMETIC = """\
class Base:
    # the base of everything

    def value(self, x):
        '''The value.'''
        return x*{k}
"""

CHILD = """\
from base import Base


class Child(Base):
    def name(self):
        return "child"
"""


@pytest.mark.parametrize("use", ["global", "argument"])
def test_method_inherited_from_a_base_class_in_another_module(tmp_path, use):
    put(tmp_path, "base.py", BASE.format(k=10))
    put(tmp_path, "child.py", CHILD)
    call = "compute(3)" if use == "global" else "compute(Child(), 3)"
    params = "n" if use == "global" else "obj, n"
    obj = "Child()" if use == "global" else "obj"
    script(tmp_path, f"""
from child import Child

@pipe.AddFunction()
def compute({params}):
    mark("compute")
    return {obj}.value(n)

h = {call}
pipe.run()
print("RESULT", h.result())
""")
    check_edits(tmp_path, 30, [("base.py", BASE_COSMETIC.format(k=10))], [("base.py", BASE.format(k=20), 60)])


# --------------------------------------------------------------------------- d. decorated helper

DECO = """\
import functools


def scaled(k):
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            return f(*args, **kwargs) * k{extra}
        return wrapper
    return decorate
"""

DECO_COSMETIC = '''\
import functools


def scaled(k):
    """Multiply the result of the decorated function by k."""
    def decorate(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            # the scaling happens here
            return f(*args, **kwargs)*k
        return wrapper

    return decorate
'''

DECORATED = """\
from deco import scaled


@scaled({k})
def helper(x):
    return x + 1
"""


@pytest.mark.parametrize("edit", ["decorator-argument", "wrapper-body"])
def test_decorator_on_a_helper(tmp_path, edit):
    put(tmp_path, "deco.py", DECO.format(extra=""))
    put(tmp_path, "helpers.py", DECORATED.format(k=10))
    script(tmp_path, """
from helpers import helper

@pipe.AddFunction()
def compute(n):
    mark("compute")
    return helper(n)

h = compute(2)
pipe.run()
print("RESULT", h.result())
""")
    if edit == "decorator-argument":
        real = [("helpers.py", DECORATED.format(k=100), 300)]
    else:
        real = [("deco.py", DECO.format(extra=" + 7"), 37)]
    check_edits(tmp_path, 30, [("deco.py", DECO_COSMETIC)], real)


# --------------------------------------------------------------------------- e. module attribute

SETTINGS = """\
SCALE = {k}
"""

SETTINGS_SCRIPT = """
import settings

if len(sys.argv) > 1:
    settings.SCALE = int(sys.argv[1])

@pipe.AddFunction()
def compute(n):
    mark("compute")
    return n * settings.SCALE

h = compute(3)
pipe.run()
print("RESULT", h.result())
"""


def test_module_attribute_set_at_run_time(tmp_path):
    put(tmp_path, "settings.py", SETTINGS.format(k=10))
    script(tmp_path, SETTINGS_SCRIPT)
    assert run(tmp_path, "4").result == "12"
    second = run(tmp_path, "5")
    assert second.result == "15" and second.computed == ["compute"], second.stdout
    third = run(tmp_path, "4")
    assert third.result == "12" and third.computed == [], third.stdout


def test_module_attribute_constant_edited_in_its_file(tmp_path):
    put(tmp_path, "settings.py", SETTINGS.format(k=10))
    script(tmp_path, SETTINGS_SCRIPT)
    check_edits(tmp_path, 30, [("settings.py", "# the scale\nSCALE = (\n    10\n)\n")],
                [("settings.py", SETTINGS.format(k=20), 60)])


# --------------------------------------------------------------------------- f. loaded code counts

LOADED = """\
def f(x):
    return x * {k}


def g(x):
    return x * {k}0
"""

LOADED_SCRIPT = """
import helpers


def rewrite(k):
    path = Path("helpers.py")
    stamp = path.stat().st_mtime_ns + 2_000_000_000
    path.write_text("def f(x):\\n    return x * %d\\n\\n\\ndef g(x):\\n    return x * %d0\\n" % (k, k))
    os.utime(path, ns=(stamp, stamp))


@pipe.AddFunction()
def compute(n):
    mark("compute")
    return helpers.f(n)


@pipe.AddFunction()
def other(n):
    mark("other")
    return helpers.g(n)


def once(label, task):
    h = task(3)
    try:
        pipe.run()
        print(label, h.result())
    except NdustriaError as exc:
        print(label, "REFUSED", type(exc).__name__, str(exc).replace("\\n", " "))


mode, name = sys.argv[1], sys.argv[2]
task = compute if name == "compute" else other
if mode == "edit-between-runs":
    once("FIRST", compute)
    rewrite(20)
    once("RESULT", task)
elif mode == "edit-before-first-run":
    rewrite(20)
    once("RESULT", task)
else:
    once("RESULT", task)
"""


def check_loaded_run(line: str, old: int) -> None:
    """A run in the process whose file changed under it: the code in memory gives ``old``, or a refusal."""
    if line.startswith("REFUSED"):
        assert any(word in line.lower() for word in ("restart", "reload")), line
    else:
        assert line == str(old), f"the process runs the code it loaded ({old}), got {line}"


@pytest.mark.parametrize("task, old, new", [("compute", 30, 60), ("other", 300, 600)],
                         ids=["same-task", "task-first-declared-after-the-edit"])
def test_module_edited_after_the_first_run_in_the_same_process(tmp_path, task, old, new):
    put(tmp_path, "helpers.py", LOADED.format(k=10))
    script(tmp_path, LOADED_SCRIPT)
    inproc = run(tmp_path, "edit-between-runs", task)
    assert inproc.line("FIRST") == "30", inproc.stdout
    print("in-process run after the edit:", inproc.result)
    check_loaded_run(inproc.result, old)
    fresh = run(tmp_path, "fresh", task)
    assert fresh.result == str(new), f"a fresh process must run the new code ({new})\n{fresh.stdout}"
    assert fresh.computed == [task], fresh.stdout


def test_module_edited_after_import_before_the_first_fingerprint(tmp_path):
    put(tmp_path, "helpers.py", LOADED.format(k=10))
    script(tmp_path, LOADED_SCRIPT)
    inproc = run(tmp_path, "edit-before-first-run", "compute")
    print("in-process run after the edit:", inproc.result)
    check_loaded_run(inproc.result, 30)
    fresh = run(tmp_path, "fresh", "compute")
    assert fresh.result == "60", f"a fresh process must run the new code (x * 20)\n{fresh.stdout}"
    assert fresh.computed == ["compute"], fresh.stdout


# --------------------------------------------------------------------------- g. dependents of a rerun

RERUN_SCRIPT = """
@pipe.AddFunction(rerun=True)
def load():
    mark("load")
    return Path("data.txt").read_text()


@pipe.AddFunction()
def shout(text):
    mark("shout")
    return text.upper()


def key_of(handle):
    try:
        return handle.key
    except Exception as exc:  # what handle.key does before the upstream rerun is not fixed yet
        return "raised " + type(exc).__name__


h = shout(load())
print("KEY_BEFORE", key_of(h))
pipe.run()
print("KEY_AFTER", key_of(h))
print("RESULT", repr(h.result()))
"""


def rerun_project(root: Path) -> None:
    script(root, RERUN_SCRIPT)


def data_run(root: Path, text: str) -> Run:
    (root / "data.txt").write_text(text)
    out = run(root)
    print(f"data={text!r}: computed={out.computed} key before run={out.line('KEY_BEFORE')} "
          f"after={out.line('KEY_AFTER')}")
    return out


def test_dependent_of_a_rerun_task_sees_its_new_result(tmp_path):
    rerun_project(tmp_path)
    first = data_run(tmp_path, "a")
    assert first.result == "'A'" and first.computed == ["load", "shout"], first.stdout
    second = data_run(tmp_path, "b")
    assert second.result == "'B'", f"shout(load()) is stale after data.txt changed\n{second.stdout}"
    assert second.computed == ["load", "shout"], second.stdout
    third = data_run(tmp_path, "b")  # load runs again, returns the same bytes: early cutoff
    assert third.result == "'B'" and third.computed == ["load"], third.stdout


def test_dependent_of_a_rerun_task_with_an_unchanged_result_is_not_run_again(tmp_path):
    rerun_project(tmp_path)
    first = data_run(tmp_path, "a")
    assert first.computed == ["load", "shout"], first.stdout
    for _ in range(2):
        again = data_run(tmp_path, "a")
        assert again.result == "'A'" and again.computed == ["load"], again.stdout
