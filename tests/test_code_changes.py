"""What invalidates a result: real scripts, edited between runs, in fresh interpreters."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import run_python, write_script

TEMPLATE = '''
import numpy as np
from ndustria import Pipeline

SCALE = {scale}

pipe = Pipeline(name="edits")

def helper(x):
    {helper_body}

def outer_helper(x):
    return helper(x) + 1

@pipe.AddFunction({decorator_args})
def compute(n):
    {docstring}
    # {comment}
    return outer_helper(n) * SCALE{extra}

h = compute(3)
pipe.run()
print("RESULT", h.result())
'''

BASE = dict(scale=2, helper_body="return x * 10", decorator_args="", docstring='"""Compute."""',
            comment="a comment", extra="")


def run_variant(tmp_path: Path, **changes) -> tuple[bool, str]:
    """Run the script with some template fields changed; (did compute run?, RESULT line)."""
    fields = {**BASE, **changes}
    script = write_script(tmp_path / "edits.py", TEMPLATE.format(**fields))
    proc = run_python(script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    ran = "[Added Task] compute(3)" in proc.stdout
    assert ran != ("[Cache hit!] compute(3) can be skipped" in proc.stdout)
    result = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    return ran, result


@pytest.mark.parametrize("changes", [
    {"comment": "a different comment"},
    {"docstring": '"""A different docstring, longer."""'},
    {"docstring": ""},
    {"decorator_args": "rerun=False"},
    {"extra": "  "},
], ids=["comment", "docstring", "docstring-removed", "decorator-args", "trailing-space"])
def test_cosmetic_edits_hit_the_cache(tmp_path, changes):
    assert run_variant(tmp_path)[0] is True
    assert run_variant(tmp_path, **changes)[0] is False


@pytest.mark.parametrize("changes", [
    {"helper_body": "return x * 11"},
    {"scale": 3},
    {"extra": " + 1"},
], ids=["helper-of-helper", "module-constant", "task-code"])
def test_real_edits_recompute(tmp_path, changes):
    first = run_variant(tmp_path)
    second = run_variant(tmp_path, **changes)
    assert first[0] is True and second[0] is True
    assert first[1] != second[1]


def test_reverting_an_edit_hits_the_earlier_result(tmp_path):
    assert run_variant(tmp_path)[0] is True
    assert run_variant(tmp_path, helper_body="return x * 11")[0] is True
    ran, result = run_variant(tmp_path)
    assert ran is False and result == "RESULT 62"


CLOSURES = '''
from ndustria import Pipeline
pipe = Pipeline(name="closures")

def make(k):
    def scaled(x):
        return x * k
    return scaled

a = pipe.AddFunction(name="scaled")(make(2))
b = pipe.AddFunction(name="scaled")(make(3))
ha, hb = a(5), b(5)
print("DISTINCT", ha.key != hb.key)
pipe.run()
print("VALUES", ha.result(), hb.result())
'''


def test_closures_with_different_captured_values_are_different_tasks(tmp_path):
    proc = run_python(write_script(tmp_path / "closures.py", CLOSURES), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "DISTINCT True" in proc.stdout and "VALUES 10 15" in proc.stdout


def test_scripts_share_results_whatever_their_file_name(tmp_path):
    script = TEMPLATE.format(**BASE)
    first = run_python(write_script(tmp_path / "one.py", script), cwd=tmp_path)
    second = run_python(write_script(tmp_path / "two.py", script), cwd=tmp_path)
    assert "[Added Task] compute(3)" in first.stdout
    assert "[Cache hit!] compute(3) can be skipped" in second.stdout


FAILING = '''
from ndustria import Pipeline
pipe = Pipeline(name="failing")

@pipe.AddFunction()
def work(i):
    if i == 1:
        raise RuntimeError("task one is broken")
    return i

for i in range(3):
    work(i)
pipe.run()
'''


def test_a_failed_run_exits_non_zero_with_the_traceback(tmp_path):
    proc = run_python(write_script(tmp_path / "failing.py", FAILING), cwd=tmp_path)
    assert proc.returncode != 0
    assert "TaskError" in proc.stderr and "work(1)" in proc.stderr and "task one is broken" in proc.stderr
    assert proc.stdout.count("Saved result of") == 2


CLASS_ARGUMENTS = '''
import dataclasses
from ndustria import Pipeline

pipe = Pipeline(name="classes")

class Model:
    # {comment}
    def predict(self, x):
        return x * {factor}

@dataclasses.dataclass
class Config:
    size: int
    def scale(self):
        return self.size * {factor}

class Plain:
    def __init__(self, n):
        self.n = n

@pipe.AddFunction()
def use_class(model_cls, x):
    return model_cls().predict(x)

@pipe.AddFunction()
def use_config(config):
    return config.scale()

@pipe.AddFunction()
def use_plain(obj):
    return obj.n

use_class(Model, 2), use_config(Config(3)), use_plain(Plain(4))
pipe.run()
'''


def run_classes(tmp_path: Path, **fields) -> set[str]:
    """Run the class script; the tasks that ran (the others were cache hits)."""
    values = {"comment": "a comment", "factor": 10, **fields}
    proc = run_python(write_script(tmp_path / "classes.py", CLASS_ARGUMENTS.format(**values)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return {line.split()[2].partition("(")[0] for line in proc.stdout.splitlines() if line.startswith("[Added Task]")}


def test_classes_and_instances_passed_as_arguments_count_by_their_code(tmp_path):
    """Editing a class whose objects a task receives recomputes that task; a comment does not."""
    assert run_classes(tmp_path) == {"use_class", "use_config", "use_plain"}
    assert run_classes(tmp_path) == set()
    assert run_classes(tmp_path, comment="another comment") == set()
    assert run_classes(tmp_path, factor=11) == {"use_class", "use_config"}, "Plain did not change"
