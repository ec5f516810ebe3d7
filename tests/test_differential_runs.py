"""A cached run equals the uncached run: two processes run one random graph of small and large results
on one cache at the same time, with both SQLite logs checkpointed by their threads all through the run
(the threshold lowered from 192 MB to 64 KB); then a third process finds every task cached. Each process
compares every result with the same functions called without ndustria, and every task is computed once
in all (a side-effect log counts the calls)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import write_script

SCRIPT = """
import glob, json, os, random, sys, time
import numpy as np
from ndustria import Pipeline
from ndustria.record.catalog import Catalog
from ndustria.store import wal
from ndustria.store.blobs import Blobs

wal.CHECKPOINT_AT = 64 << 10  # the threads checkpoint all through the run (192 MB otherwise)
seed, n, backwards = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:] == ["backwards"]
CALLS = os.environ["DIFF_CALLS"]


def note(kind, i):
    fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{kind} {i} {os.getpid()}\\n".encode())
    os.close(fd)


def leaf(i, size):
    note("leaf", i)
    if size == "array":
        return np.arange(i, i + 20_000, dtype=np.float64)  # a file of its own (buffers)
    if size == "big":
        return bytes([i % 251]) * 80_000  # a file of its own (over 64 KiB)
    return {"i": i, "square": i * i}  # a row of objects.sqlite


def mix(i, *inputs):
    note("mix", i)
    total = i
    for x in inputs:
        total = (total * 31 + _fold(x)) % 1_000_000_007
    return total


def _fold(x):
    if isinstance(x, dict):
        return x["square"] + x["i"]
    if isinstance(x, bytes):
        return len(x) + x[0]
    if isinstance(x, np.ndarray):
        return int(x.sum()) % 1_000_003
    return int(x)


rng = random.Random(seed)
sizes = [rng.choice(["row"] * 18 + ["big", "array"]) for _ in range(n // 2)]
graph = [sorted(rng.sample(range(j + n // 2), rng.randint(1, 3))) for j in range(n - n // 2)]

pipe = Pipeline(name="diff", backend="serial", verbose=False)
t_leaf, t_mix = pipe.AddFunction()(leaf), pipe.AddFunction()(mix)
handles = [None] * len(sizes)
for i in (reversed if backwards else iter)(range(len(sizes))):  # the other process starts at the other end
    handles[i] = t_leaf(i, sizes[i])
for j, deps in enumerate(graph):
    handles.append(t_mix(n // 2 + j, *[handles[d] for d in deps]))
barrier = os.environ.get("DIFF_BARRIER")
if barrier:  # both processes run at once
    open(f"{barrier}.{os.getpid()}", "w").close()
    while len(glob.glob(f"{barrier}.*")) < 2:
        time.sleep(0.01)
summary = pipe.run()

# The same functions without ndustria (no note: only ndustria's calls are counted).
note = lambda kind, i: None
direct = [leaf(i, s) for i, s in enumerate(sizes)]
for j, deps in enumerate(graph):
    direct.append(mix(n // 2 + j, *[direct[d] for d in deps]))
wrong = []
for i, (h, want) in enumerate(zip(handles, direct)):
    got = h.result()
    same = np.array_equal(got, want) if isinstance(want, np.ndarray) else (type(got) is type(want) and got == want)
    if not same:
        wrong.append(i)
print(json.dumps({"executed": summary.executed, "cached": summary.cached, "wrong": wrong[:20],
                  "checkpoints": Blobs.of(pipe.store.root)._checkpointer.checkpoints
                  + pipe.catalog._checkpointer.checkpoints}))
pipe.close()
"""


def test_two_processes_then_a_warm_one_agree_with_uncached_calls_while_the_logs_are_checkpointed(tmp_path):
    script = write_script(tmp_path / "diff.py", SCRIPT)
    calls, n = tmp_path / "calls.log", 3000
    env = {"NDUSTRIA_CACHE_DIR": str(tmp_path / "cache"), "DIFF_CALLS": str(calls)}
    full_env = {**os.environ, **env}

    def start(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), "7", str(n), *args], cwd=tmp_path,
                                env={**full_env, "DIFF_BARRIER": str(tmp_path / "ready")},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first, second = start(), start("backwards")  # the same graph, at the same time
    outs = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    for out in outs:
        assert out["wrong"] == [], out
        assert out["executed"] + out["cached"] == n
    assert sum(out["checkpoints"] for out in outs) > 0, "the threads never checkpointed: the test tests nothing"
    calls_made = [line.rsplit(" ", 1) for line in calls.read_text().splitlines()]
    assert sorted(task for task, _ in calls_made) == sorted({task for task, _ in calls_made}), "a task computed twice"
    assert len(calls_made) == n, "a task never computed"
    assert len({pid for _, pid in calls_made}) == 2, "one process computed everything: they did not meet"

    warm = subprocess.run([sys.executable, str(script), "7", str(n)], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0, warm.stderr
    out = json.loads(warm.stdout.strip().splitlines()[-1])
    assert out == {**out, "wrong": [], "executed": 0, "cached": n}, out
    assert len(calls.read_text().splitlines()) == n, "the warm run computed something"
