"""Many small tasks: ndustria against joblib.Memory on the same workload, measured in one run.

The workload (issue 16): N tasks, two thirds tiny producers ``produce(i)`` and one third consumers
``combine(a, b)`` of two producers each. Every measurement runs in a fresh interpreter (as a script
would) and times everything after the imports: declaring, looking up, running, storing durably and
reading one result back. Each round of samples measures every size in turn (medians of the rounds are
printed), so that the growth compares sizes measured in the same minutes.

- cold: a new cache; ndustria computes and stores every task, joblib.Memory makes its first calls;
- warm: the same script again; every task is a cache hit (joblib: every call is a hit);
- growth: per-task cost at the largest size over the smallest (goal <= 1.25x);
- processes: 1,000 tiny tasks on ndustria's ``processes`` backend against ``joblib.Parallel`` with
  ``joblib.Memory`` (2 workers each), cold and warm.

Goals: cold >= 3x cheaper per task than joblib's first calls; warm >= 10x cheaper than its hits.
Memory per declared task (tracemalloc, after declaring) is reported too.

    python bench/bench_scale.py [--sizes 3000,30000] [--repeats 3]
    python bench/bench_scale.py --sizes 3000,300000 --processes 0 --no-joblib   # growth only (~8 minutes)
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FUNCTIONS = '''
def produce(i):
    return i * 2


def combine(a, b):
    return a + b
'''

NDUSTRIA = '''
import json, sys, time, tracemalloc
t_start = time.perf_counter()
from ndustria import Pipeline
import work
t0 = time.perf_counter()
n, backend, measure_memory = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
if measure_memory:
    tracemalloc.start()
pipe = Pipeline(name="scale", backend=backend, verbose=False)
produce = pipe.AddFunction()(work.produce)
combine = pipe.AddFunction()(work.combine)
p = max(1, 2 * n // 3) if n > 1 else n
ps = [produce(i) for i in range(p)]
cs = [combine(ps[(2 * j) % p], ps[(2 * j + 1) % p]) for j in range(n - p)]
declared = time.perf_counter()
memory = tracemalloc.get_traced_memory()[0] if measure_memory else 0
if measure_memory:
    tracemalloc.stop()
summary = pipe.run()
value = (cs or ps)[-1].result()
t1 = time.perf_counter()
pipe.close()
print(json.dumps({"seconds": t1 - t0, "declare": declared - t0, "import": t0 - t_start, "memory": memory,
                  "executed": summary.executed, "cached": summary.cached, "value": value}))
'''

JOBLIB = '''
import json, sys, time
from joblib import Memory, Parallel, delayed
import work
t0 = time.perf_counter()
n, where, parallel = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "processes"
mem = Memory(where, verbose=0)
produce, combine = mem.cache(work.produce), mem.cache(work.combine)
if parallel:
    values = Parallel(n_jobs=2)(delayed(produce)(i) for i in range(n))
    value = values[-1]
else:
    p = max(1, 2 * n // 3) if n > 1 else n
    ps = [produce(i) for i in range(p)]
    cs = [combine(ps[(2 * j) % p], ps[(2 * j + 1) % p]) for j in range(n - p)]
    value = (cs or ps)[-1]
t1 = time.perf_counter()
print(json.dumps({"seconds": t1 - t0, "value": value}))
'''

PROCESSES = '''
import json, sys, time
from ndustria import Pipeline
import work
t0 = time.perf_counter()
n = int(sys.argv[1])
pipe = Pipeline(name="scale-processes", backend="processes", engines=2, verbose=False)
produce = pipe.AddFunction()(work.produce)
hs = [produce(i) for i in range(n)]
summary = pipe.run()
value = hs[-1].result()
t1 = time.perf_counter()
pipe.close()
print(json.dumps({"seconds": t1 - t0, "executed": summary.executed, "value": value}))
'''


def run(folder: Path, script: str, *args: str, cache: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(folder)}
    if cache is not None:
        env["NDUSTRIA_CACHE_DIR"] = str(cache)
    proc = subprocess.run([sys.executable, str(folder / script), *args], capture_output=True, text=True, env=env,
                          cwd=folder, timeout=3600)
    if proc.returncode:
        raise SystemExit(f"{script} {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sample(folder: Path, n: int, r: int, joblib: bool = True) -> dict[str, float]:
    """One sample of each case at size ``n`` (seconds per task; a fresh cache for the cold runs); without
    ``joblib`` its cases are left out (they take ~4 minutes per sample at 300,000 tasks)."""
    cache, jl = folder / f"nd-{n}-{r}", folder / f"jl-{n}-{r}"
    try:
        cold = run(folder, "nd.py", str(n), "serial", "0", cache=cache)
        assert cold["executed"] == n, cold
        warm = run(folder, "nd.py", str(n), "serial", "0", cache=cache)
        assert warm["executed"] == 0 and warm["value"] == cold["value"], warm
        out = {"nd_cold": cold["seconds"] / n, "nd_warm": warm["seconds"] / n}
        if joblib:
            j_cold, j_warm = (run(folder, "jl.py", str(n), str(jl), "serial") for _ in range(2))
            assert j_cold["value"] == j_warm["value"] == cold["value"]
            out |= {"jl_cold": j_cold["seconds"] / n, "jl_warm": j_warm["seconds"] / n}
        return out
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(jl, ignore_errors=True)


def measure(folder: Path, sizes: list[int], repeats: int, joblib: bool = True) -> dict[int, dict[str, float]]:
    """Median seconds per task of each case at each size, and memory per declared task. The sizes take turns
    within each round of samples, so that a machine getting busier or quieter during the minutes the bench
    takes shifts every size alike instead of the growth."""
    samples: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
    for r in range(repeats):
        for n in sizes:
            for case, value in sample(folder, n, r, joblib).items():
                samples[n].setdefault(case, []).append(value)
    out = {n: {case: statistics.median(values) for case, values in samples[n].items()} for n in sizes}
    for n in sizes:
        out[n]["memory"] = run(folder, "nd.py", str(n), "serial", "1", cache=folder / f"nd-mem-{n}")["memory"] / n
        shutil.rmtree(folder / f"nd-mem-{n}", ignore_errors=True)
    return out


def measure_processes(folder: Path, n: int, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {k: [] for k in ("nd_cold", "nd_warm", "jl_cold", "jl_warm")}
    for r in range(repeats):
        cache, jl = folder / f"ndp-{r}", folder / f"jlp-{r}"
        cold, warm = (run(folder, "ndp.py", str(n), cache=cache) for _ in range(2))
        assert cold["executed"] == n and warm["executed"] == 0 and warm["value"] == cold["value"]
        j_cold, j_warm = (run(folder, "jl.py", str(n), str(jl), "processes") for _ in range(2))
        for key, value in (("nd_cold", cold), ("nd_warm", warm), ("jl_cold", j_cold), ("jl_warm", j_warm)):
            samples[key].append(value["seconds"] / n)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(jl, ignore_errors=True)
    return {k: statistics.median(v) for k, v in samples.items()}


def compile_ndustria() -> None:
    """Byte-compile ndustria's modules, as ``pip install`` does for every package it installs (joblib's
    included). A checkout installed with ``pip install -e`` under ``PYTHONDONTWRITEBYTECODE`` has none, and
    every fresh process (each ``processes`` worker) would compile ndustria's modules again (~75 ms)."""
    spec = importlib.util.find_spec("ndustria")
    for folder in spec.submodule_search_locations if spec else ():
        compileall.compile_dir(folder, quiet=1)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="3000,30000", help="task counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="samples per case (the median is printed)")
    parser.add_argument("--processes", type=int, default=1000, help="tasks of the processes-backend case (0: skip)")
    parser.add_argument("--dir", help="where to put the caches (default: a temporary directory)")
    parser.add_argument("--no-joblib", action="store_true", help="ndustria's cases only (per-task cost and growth)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    compile_ndustria()
    folder = Path(tempfile.mkdtemp(prefix="ndustria-scale-", dir=args.dir))
    try:
        for name, text in (("work.py", FUNCTIONS), ("nd.py", NDUSTRIA), ("jl.py", JOBLIB), ("ndp.py", PROCESSES)):
            (folder / name).write_text(textwrap.dedent(text))
        results = measure(folder, sizes, args.repeats, joblib=not args.no_joblib)
        for n in sizes:
            r = results[n]
            if args.no_joblib:
                print(f"[{n:,} tasks] ndustria cold {us(r['nd_cold'])}/task, warm {us(r['nd_warm'])}/task")
            else:
                print(f"[{n:,} tasks] cold: ndustria {us(r['nd_cold'])}/task, joblib.Memory first calls "
                      f"{us(r['jl_cold'])}/task -> {r['jl_cold'] / r['nd_cold']:.1f}x cheaper (goal >= 3x)")
                print(f"[{n:,} tasks] warm: ndustria {us(r['nd_warm'])}/task, joblib.Memory hits "
                      f"{us(r['jl_warm'])}/task -> {r['jl_warm'] / r['nd_warm']:.1f}x cheaper (goal >= 10x)")
            print(f"[{n:,} tasks] memory per declared task: {r['memory']:,.0f} bytes (tracemalloc)")
            sys.stdout.flush()
        lo, hi = min(sizes), max(sizes)
        if lo != hi:
            for case in ("nd_cold", "nd_warm"):
                growth = results[hi][case] / results[lo][case]
                peer = "jl" + case[2:]
                theirs = "" if args.no_joblib else f"; joblib {results[hi][peer] / results[lo][peer]:.2f}x"
                print(f"[growth {lo:,} -> {hi:,}] ndustria {case[3:]}: {growth:.2f}x per task (goal <= 1.25x){theirs}")
        if args.processes:
            p = measure_processes(folder, args.processes, args.repeats)
            print(f"[processes, {args.processes:,} tiny tasks, 2 workers] cold: ndustria {us(p['nd_cold'])}/task, "
                  f"joblib.Parallel + Memory {us(p['jl_cold'])}/task -> {p['jl_cold'] / p['nd_cold']:.1f}x")
            print(f"[processes, {args.processes:,} tiny tasks, 2 workers] warm: ndustria {us(p['nd_warm'])}/task, "
                  f"joblib.Parallel + Memory {us(p['jl_warm'])}/task -> {p['jl_warm'] / p['nd_warm']:.1f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
