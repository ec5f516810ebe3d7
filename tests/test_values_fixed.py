"""Values are fixed at the call: a task runs on exactly the argument values, globals and closure values
its key was made from, or it fails before running with InputChangedError and nothing is stored.

Each case is a script a user would write, run in a fresh interpreter ("dirty": the value changes
after the call), then again in a second fresh process that declares the clean call: it must get the
right number, i.e. the first process stored no result under a key that does not describe it. The
cached results are compared with the plain function called without ndustria (a differential check).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
from support import run_python, write_script

from ndustria.errors import InputChangedError
from ndustria.keys.fingerprint import Fingerprinter
from ndustria.records import TaskReport
from ndustria.run.backends import SerialExecutor
from ndustria.run.batching import BatchPolicy
from ndustria.run.scheduler import GraphState, Scheduler, SchedulerHooks, longest_path_priority

HAS_PARTS = hasattr(Fingerprinter, "parts")  # names the global or closure value that changed
UNNAMED = "a global, closure value or helper it reads"

PRELUDE = '''
import json, sys
import numpy as np
import pandas as pd
from ndustria import InputChangedError, Pipeline, TaskError

DIRTY = sys.argv[1] == "dirty"
pipe = Pipeline(name="fixed", verbose=False{options})

def report(**fields):
    print("RESULT " + json.dumps(fields), flush=True)

def run(pipe=pipe):
    """The failures of pipe.run(), as plain data."""
    try:
        pipe.run()
    except TaskError as exc:
        return [dict(task=f.task, kind=type(f.exception).__name__, text=str(f.exception),
                     isinstance=isinstance(f.exception, InputChangedError), skipped=f.skipped)
                for f in exc.failures]
    return []

@pipe.AddFunction()
def total(values):
    return float(sum(values.values()) if isinstance(values, dict) else np.asarray(values).sum())

@pipe.AddFunction()
def double(x):
    return 2 * x
'''


def script(tmp_path: Path, body: str, options: str = "") -> Path:
    return write_script(tmp_path / "user_script.py", PRELUDE.format(options=options) + body)


def results(proc: subprocess.CompletedProcess) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"no result line:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(lines[0][len("RESULT "):])


def run(path: Path, mode: str) -> dict:
    return results(run_python(path, mode, cwd=path.parent))


def assert_refused(failure: dict, task: str, changed: str, hint: str = "") -> None:
    assert failure["task"] == task
    assert failure["kind"] == "InputChangedError" and failure["isinstance"]
    text = failure["text"]
    assert text.startswith(f"{task}: {changed}"), text
    assert "changed after the task was declared" in text and text.endswith("the task was not run"), text
    assert "call run() before changing it" in text
    if hint:
        assert f"pass a copy (e.g. {hint})" in text


# ----------------------------------------------------------------------------- arguments

ONE_ARGUMENT = '''
values = {value}
h = total(values)
declared = str(h)  # the call as it was written
if DIRTY:
    {change}
fails = run()
report(fails=fails, status=h.status, result=None if fails else h.result(), key=h.key, plain=total.func({value}),
       declared=declared)
'''

ARGUMENTS = {
    "list appended": ("[1, 2, 3]", "values.append(100)", "total([1, 2, 3])", "list(values)"),
    "dict changed": ('{"a": 1, "b": 2, "c": 3}', 'values["c"] = 30', "total({'a': 1, 'b': 2, 'c': 3})",
                     "dict(values)"),
    "small array changed in place": ("np.array([1.0, 2.0, 3.0])", "values[0] = 10.0",
                                     "total(ndarray(shape=(3,), dtype=float64))", "values.copy()"),
    "DataFrame changed": ('pd.DataFrame({"x": [1, 2, 3]})', 'values.loc[0, "x"] = 10',
                          None, "values.copy()"),  # (shown by the frame's repr: it has no single dtype)
}


@pytest.mark.parametrize("case", list(ARGUMENTS))
def test_an_argument_changed_after_the_call_fails_the_task_and_stores_nothing(tmp_path: Path, case: str) -> None:
    value, change, task, hint = ARGUMENTS[case]
    path = script(tmp_path, ONE_ARGUMENT.format(value=value, change=change))
    dirty = run(path, "dirty")
    [failure] = dirty["fails"]
    assert dirty["declared"] == (task or dirty["declared"])
    assert_refused(failure, dirty["declared"], "parameter 'values'", hint)
    assert dirty["status"] == "failed"

    clean = run(path, "clean")  # a second process, the call as declared: computed now, and right
    assert clean["fails"] == [] and clean["status"] == "done"
    assert clean["result"] == clean["plain"] == 6.0 and clean["key"] == dirty["key"]
    again = run(path, "clean")
    assert again["status"] == "cached" and again["result"] == 6.0


def test_an_unchanged_mutable_argument_runs_and_is_a_hit_next_time(tmp_path: Path) -> None:
    path = script(tmp_path, '''
args = [[1, 2, 3], {"a": 1, "b": 5}, np.arange(4.0), pd.DataFrame({"x": [1, 2]}), np.ones(2**18)]
handles = [total(a) for a in args]
fails = run()
report(fails=fails, statuses=[h.status for h in handles], results=[h.result() for h in handles],
       plain=[total.func(a) for a in args])
''')
    first = run(path, "clean")
    assert first["fails"] == [] and first["statuses"] == ["done"] * 5
    assert first["results"] == first["plain"] == [6.0, 6.0, 6.0, 3.0, 2.0**18]
    second = run(path, "clean")
    assert second["statuses"] == ["cached"] * 5 and second["results"] == first["results"]


def test_a_large_array_changed_in_place_between_two_calls_gives_two_keys(tmp_path: Path) -> None:
    path = script(tmp_path, '''
a = np.ones(2**18)  # 2 MiB: hashed again at every call, never answered by an identity memo
h1 = total(a)
a[0] = 5.0
h2 = total(a)
fails = run()
b = np.ones(2**18)
h3 = total(b)
run()
b[0] = 5.0
h4 = total(b)
run()
report(fails=fails, keys=[h1.key, h2.key, h3.key, h4.key], h2=h2.result(), h3=h3.result(), h4=h4.result(),
       statuses=[h.status for h in (h1, h2, h3, h4)])
''')
    dirty = run(path, "dirty")
    k1, k2, k3, k4 = dirty["keys"]
    assert k1 != k2 and k1 == k3 and k2 == k4
    [failure] = dirty["fails"]  # h1 was declared before a changed: it must not run on the new content
    assert_refused(failure, "total(ndarray(shape=(262144,), dtype=float64))", "parameter 'values'", "values.copy()")
    assert dirty["h2"] == dirty["h4"] == 2**18 + 4 and dirty["h3"] == 2**18
    assert dirty["statuses"] == ["failed", "done", "done", "cached"]

    clean = results(run_python(write_script(tmp_path / "clean.py", PRELUDE.format(options="") + '''
h = total(np.ones(2**18))
run()
report(result=h.result(), key=h.key)
'''), "clean", cwd=tmp_path))
    assert clean == {"result": 2.0**18, "key": k1}


# ----------------------------------------------------------------------------- globals and closures

def test_a_global_set_in_a_loop_before_each_declaration(tmp_path: Path) -> None:
    path = script(tmp_path, '''
SCALE = 1

@pipe.AddFunction()
def scaled(x):
    return x * SCALE

handles = []
for s in ((1, 2, 3) if DIRTY else (int(sys.argv[2]),)):
    SCALE = s
    handles.append(scaled(10))
fails = run()
report(fails=fails, statuses=[h.status for h in handles], results=[h.result() for h in handles if h.done()],
       plain=scaled.func(10), keys=[h.key for h in handles])
''')
    dirty = run_python(path, "dirty", cwd=tmp_path)
    out = results(dirty)
    assert out["statuses"] == ["failed", "failed", "done"] and out["results"] == [30]
    assert len(set(out["keys"])) == 3
    for failure in out["fails"]:
        assert_refused(failure, "scaled(10)", "global variable 'SCALE'" if HAS_PARTS else UNNAMED)
    for scale in (1, 2, 3):  # second processes, one per clean declaration: each gets its own number
        clean = results(run_python(path, "clean", str(scale), cwd=tmp_path))
        assert clean["fails"] == [] and clean["results"] == [clean["plain"]] == [10 * scale]
        assert clean["keys"] == [out["keys"][scale - 1]]
        assert clean["statuses"] == ["cached" if scale == 3 else "done"]


def test_a_closure_cell_changed_after_the_call(tmp_path: Path) -> None:
    path = script(tmp_path, '''
def main():
    factor = 2

    @pipe.AddFunction()
    def mul(x):
        return x * factor

    h = mul(5)
    if DIRTY:
        factor = 3
    fails = run()
    report(fails=fails, status=h.status, result=h.result() if h.done() else None, plain=mul.func(5))

main()
''')
    dirty = run(path, "dirty")
    [failure] = dirty["fails"]
    assert_refused(failure, "mul(5)", "closure variable 'factor'" if HAS_PARTS else UNNAMED)
    clean = run(path, "clean")
    assert clean["fails"] == [] and clean["status"] == "done" and clean["result"] == clean["plain"] == 10


# ----------------------------------------------------------------------------- failing alone

INDEPENDENT = '''
a, b, c = [1], [2], [3]
ha, hb, hc = total(a), total(b), total(c)
da, db = double(ha), double(hb)
if DIRTY:
    b.append(10)
fails = run()
handles = dict(ha=ha, hb=hb, hc=hc, da=da, db=db)
report(fails=fails, statuses={{k: h.status for k, h in handles.items()}},
       results={{k: h.result() for k, h in handles.items() if h.done()}})
'''


@pytest.mark.parametrize("options", ["", ', backend="processes", engines=2'], ids=["serial", "processes"])
def test_one_changed_task_fails_alone_and_its_dependent_is_skipped(tmp_path: Path, options: str) -> None:
    path = script(tmp_path, INDEPENDENT.format(), options)
    dirty = run(path, "dirty")
    [failure] = dirty["fails"]
    assert_refused(failure, "total([2])", "parameter 'values'", "list(values)")
    assert failure["skipped"] == ["double(total([2]))"]
    assert dirty["statuses"] == dict(ha="done", hb="failed", hc="done", da="done", db="skipped")
    assert dirty["results"] == dict(ha=1.0, hc=3.0, da=2.0)
    clean = run(path, "clean")
    assert clean["fails"] == []
    assert clean["statuses"] == dict(ha="cached", hb="done", hc="cached", da="cached", db="done")
    assert clean["results"] == dict(ha=1.0, hb=2.0, hc=3.0, da=2.0, db=4.0)


def test_a_dry_run_reports_the_change_and_runs_nothing(tmp_path: Path) -> None:
    path = script(tmp_path, '''
dry = Pipeline(name="fixed", dryrun=True)
values = [1, 2, 3]
h = dry.AddFunction()(total.func)(values)
ok = dry.AddFunction()(double.func)(4)
values.append(100)
fails = run(dry)
report(fails=fails, status=h.status)
''')
    proc = run_python(path, "dirty", cwd=tmp_path)
    out = results(proc)
    [failure] = out["fails"]
    assert_refused(failure, "total([1, 2, 3])", "parameter 'values'", "list(values)")
    assert "[Dry run] would run: double(4)" in proc.stdout
    assert "would run: total" not in proc.stdout


def test_recomputing_a_lost_entry_after_the_value_changed_fails_instead_of_storing(tmp_path: Path) -> None:
    path = script(tmp_path, '''
import os
values = [1, 2, 3]
h = total(values)
run()
first = h.result()
values.append(100)  # after run(): allowed, the result is stored
h.pipeline.store.remove(h.key)  # ... but the entry is lost, and result() must compute it again
try:
    h.result()
    error = ""
except TaskError as exc:
    error = str(exc.failures[0].exception)
report(first=first, error=error)
''')
    out = run(path, "dirty")
    assert out["first"] == 6.0
    assert out["error"].startswith("total([1, 2, 3]): parameter 'values' changed after the task was declared")
    clean = results(run_python(write_script(tmp_path / "clean.py", PRELUDE.format(options="") + '''
h = total([1, 2, 3])
run()
report(result=h.result(), status=h.status)
'''), "clean", cwd=tmp_path))
    assert clean == {"result": 6.0, "status": "done"}


def test_mpi_script_mode_fails_the_changed_task_on_every_rank(tmp_path: Path) -> None:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        mpiexec = Path(shutil.which("mpiexec") or mpiexec)
    path = script(tmp_path, INDEPENDENT.format(), ", parallel=True")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(mpiexec), "-n", "2", sys.executable, str(path), "dirty"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    # mpiexec merges the ranks' streams, and lines of different ranks may touch: decode each object alone
    parts = proc.stdout.split("RESULT ")[1:]
    outs = [json.JSONDecoder().raw_decode(part)[0] for part in parts]
    assert len(outs) == 2, proc.stdout + proc.stderr
    for out in outs:  # every rank raises the same TaskError
        [failure] = out["fails"]
        assert_refused(failure, "total([2])", "parameter 'values'", "list(values)")
        assert out["statuses"]["hb"] == "failed" and out["statuses"]["db"] == "skipped"
        assert out["results"] == dict(ha=1.0, hc=3.0, da=2.0)
    clean = run(path, "clean")
    assert clean["results"] == dict(ha=1.0, hb=2.0, hc=3.0, da=2.0, db=4.0)


# ----------------------------------------------------------------------------- the scheduler's part

class Recording(SerialExecutor):
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def submit(self, fn, /, *args, **kwargs) -> Future:
        payload = args[0]
        self.calls.append(list(payload) if isinstance(payload, list) else [payload])
        return super().submit(fn, *args, **kwargs)


class FixedOverhead(BatchPolicy):
    def observe_overhead(self, seconds: float) -> None:
        pass


def _report(key: str) -> TaskReport:
    now = time.time()
    return TaskReport(key=key, status="done", start=now, end=now + 1e-4, wall_s=1e-4)


def test_a_refused_payload_fails_only_its_own_task_inside_a_batch() -> None:
    deps = {f"tiny{i}": () for i in range(40)} | {"after": ("tiny7",)}
    state = GraphState(deps=deps, available=set(), order={k: i for i, k in enumerate(deps)})
    state.priority = longest_path_priority(deps, deps, lambda k: 1e-3)
    state.add(list(deps))
    done, failed, skipped = [], [], []

    def payload(key: str) -> str:
        if key == "tiny7":
            raise InputChangedError("tiny7(...): parameter 'x' changed after the task was declared", "tiny7", "x")
        return key

    hooks = SchedulerHooks(completed=lambda r: done.append(r.key), failed=failed.append,
                           skipped=lambda key, cause: skipped.append((key, cause)))
    executor = Recording()
    sched = Scheduler(executor, 2, _report, payload, hooks, run_batch=lambda keys: [_report(k) for k in keys],
                      policy=FixedOverhead(overhead=3e-3, workers=2, history={"tiny": 1e-3}),
                      group=lambda key: key.rstrip("0123456789"))
    sched.run(state)
    assert any(len(call) > 1 for call in executor.calls), "the tiny tasks were batched"
    assert sorted(done) == sorted(k for k in deps if k not in ("tiny7", "after"))
    assert [r.key for r in failed] == ["tiny7"] and isinstance(failed[0].exception, InputChangedError)
    assert failed[0].error.startswith("InputChangedError: tiny7(...): parameter 'x' changed")
    assert skipped == [("after", "tiny7")]
    assert all("tiny7" not in call for call in executor.calls), "the refused task was never sent"
