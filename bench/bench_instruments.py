"""Instrument overheads, each measured in this run against the same task uninstrumented.

    python bench/bench_instruments.py [--repeats 21] [--ms 50]

Each workload is tuned to take about ``--ms`` milliseconds when called plainly.
Every configuration wraps the same call in ndustria's instruments exactly as
``worker.execute`` does; calls are interleaved (plain, timeit, rss, ...) so
drift affects all alike; the best of ``--repeats`` calls is compared (the median in brackets).

- timeit: the always-on timer (goal <= 2% on a 50 ms task)
- memcheck-rss: RSS sampled every 10 ms in a thread, plus start, end and Linux's peak (goal <= 5%)
- tracemalloc: the Python-heap tracer alone (reported; depends on allocation count)
- memcheck: both together, as ``memcheck=True`` runs
- profiling: line_profiler over the task and its helpers (reported)

Prints overhead percentages (best instrumented / best plain - 1); numbers go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ndustria.record.instruments import HeapTracer, Instrument, LineProfile, RSSSampler, Timer, run_with
from ndustria.records import TaskReport


def py_inner(i: int) -> int:
    return (i * i) % 7


def python_loop(n: int) -> int:
    """Pure-Python arithmetic with a helper call per iteration; allocates almost nothing."""
    total = 0
    for i in range(n):
        total += py_inner(i)
    return total


def numpy_work(n: int) -> float:
    """A few large numpy operations (big allocations, few Python lines)."""
    out = 0.0
    for _ in range(n):
        a = np.random.default_rng(0).random(200_000)
        out += float(np.sort(a)[::1000].sum())
    return out


def many_objects(n: int) -> int:
    """Allocation-heavy Python: many small objects (tracemalloc's worst case)."""
    rows = [{"i": i, "s": str(i)} for i in range(n)]
    return len(rows)


CONFIGS: dict[str, Callable[[Callable[..., Any]], list[Instrument]]] = {
    "timeit": lambda f: [Timer()],
    "memcheck-rss": lambda f: [RSSSampler(), Timer()],
    "tracemalloc": lambda f: [HeapTracer(), Timer()],
    "memcheck": lambda f: [RSSSampler(), HeapTracer(), Timer()],
    "profiling": lambda f: [LineProfile(f), Timer()],
}


def best_time(fn: Callable[[int], Any], n: int, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - t0)
    return min(times)


def tune(fn: Callable[[int], Any], target_s: float) -> int:
    """The argument that makes ``fn`` take about ``target_s`` (best of a few calls, so load spikes
    during tuning do not shrink the task)."""
    n = 1
    while (dt := best_time(fn, n, 3)) < target_s / 4:
        n *= 2
    n = max(1, round(n * target_s / dt))
    return max(1, round(n * target_s / best_time(fn, n)))


def one_call(name: str, fn: Callable[[int], Any], n: int) -> float:
    if name == "plain":
        gc.collect()
        t0 = time.perf_counter()
        fn(n)
        return time.perf_counter() - t0
    instruments = CONFIGS[name](fn)  # built per call, as the worker does
    gc.collect()
    t0 = time.perf_counter()
    run_with(instruments, fn, (n,), {}, TaskReport(key="k", status="done"))
    return time.perf_counter() - t0


def measure(fn: Callable[[int], Any], n: int, repeats: int) -> tuple[float, dict[str, float]]:
    """Plain seconds, and per configuration the median ratio of paired calls (plain and instrumented
    back to back, their order alternating), so the machine's drift cancels out."""
    plain: list[float] = []
    ratios: dict[str, list[float]] = {name: [] for name in CONFIGS}
    fn(n)  # warm up
    for r in range(repeats):
        for name in CONFIGS:
            if r % 2:
                t_instr, t_plain = one_call(name, fn, n), one_call("plain", fn, n)
            else:
                t_plain, t_instr = one_call("plain", fn, n), one_call(name, fn, n)
            plain.append(t_plain)
            ratios[name].append(t_instr / t_plain)
    return statistics.median(plain), {name: statistics.median(rs) for name, rs in ratios.items()}


def fixed_costs(repeats: int = 2000) -> dict[str, float]:
    """Seconds each instrument adds around an empty call (start + stop), best of five batches."""
    def noop() -> None:
        return None

    out = {}
    for name, make in CONFIGS.items():
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(repeats // 10 if name == "profiling" else repeats):
                run_with(make(noop), noop, (), {}, TaskReport(key="k", status="done"))
            best = min(best, (time.perf_counter() - t0) / (repeats // 10 if name == "profiling" else repeats))
        out[name] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--ms", type=float, default=50.0, help="plain duration of each task")
    args = parser.parse_args()
    target = args.ms / 1000
    print(f"Instrument overhead vs the same task uninstrumented ({args.repeats} calls each, "
          f"tasks of ~{args.ms:.0f} ms; goals: timeit <= 2%, memcheck-rss <= 5%)\n")
    print("Each cell: median over paired calls of instrumented / plain - 1.\n")
    names = ["plain", *CONFIGS]
    print(f"{'workload':<14}" + "".join(f"{n:>14}" for n in names))
    for label, fn in (("python loop", python_loop), ("numpy", numpy_work), ("many objects", many_objects)):
        fn(1)
        n = tune(fn, target)
        base, ratio = measure(fn, n, args.repeats)
        cells = [f"{base * 1e3:.1f} ms"] + [f"{100 * (ratio[k] - 1):+.1f}%" for k in CONFIGS]
        print(f"{label:<14}" + "".join(f"{c:>14}" for c in cells))
    costs = fixed_costs()
    print("\nFixed cost per task (start + stop around an empty call), and its share of a "
          f"{args.ms:.0f} ms task:")
    for name, cost in costs.items():
        print(f"  {name:<14}{cost * 1e6:10.1f} µs   {100 * cost / target:6.2f}%")


if __name__ == "__main__":
    main()
