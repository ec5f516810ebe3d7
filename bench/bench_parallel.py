"""Parallel benchmarks, each measured in this run against a peer or a bound on the same machine.

    python bench/bench_parallel.py [--tasks 1000] [--repeats 5] [--overhead-tasks 300] [--dir DIR]

1. Makespan of a heterogeneous workload on 2 engines (one 2.0 s sleep and four 0.5 s sleeps,
   declared short-first), without history and then with it (a rerun: the catalog remembers the
   durations), against the lower bound max(total/P, longest) and against the original ndustria's
   schedule (each level's tasks dealt round robin to the workers, a barrier between levels;
   simulated with the measured durations).
2. Throughput of N tasks of 1 ms on 2 ipyparallel engines, caching included, against one
   ``apply_async`` per task and against the best hand-picked ``map(chunksize=...)`` (no caching);
   medians of ``--repeats`` interleaved rounds. ndustria runs three ways: in a new cache (no
   duration known: the first tasks go alone, then batches sized from them), with history (the
   catalog remembers the function's duration), and with history and ``fsync=False``.
3. Per-task overhead (no-op tasks) of the ipyparallel backend and of the MPI backend
   (``mpiexec -n 3``: 2 worker ranks), with batching off and with automatic batching.
Numbers go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKERS = 2


def nap(seconds, label):
    import time

    time.sleep(seconds)
    return label


def tick(i, salt):
    import time

    time.sleep(0.001)
    return i


def noop(i, salt):
    return i


def round_robin_with_barriers(levels: list[list[float]], workers: int) -> float:
    """The original's schedule: each level dealt round robin, every level waits for its slowest worker."""
    total = 0.0
    for durations in levels:
        loads = [0.0] * workers
        for i, d in enumerate(durations):
            loads[i % workers] += d
        total += max(loads)
    return total


def bench_makespan(cache: Path) -> None:
    from ndustria import Pipeline

    sleeps = [0.5, 0.5, 0.5, 0.5, 2.0]  # short first
    results = []
    for attempt in ("no history", "with history"):
        pipe = Pipeline(name="makespan", parallel=True, engines=WORKERS, cache_dir=cache, verbose=False)
        task = pipe.AddFunction(rerun=True)(nap)
        for i, s in enumerate(sleeps):
            task(s, f"t{i}")
        t0 = time.perf_counter()
        pipe.run()
        results.append((attempt, time.perf_counter() - t0))
        measured = [r["wall_s"] for r in pipe.catalog.tasks(pipe.catalog.runs(limit=1)[0]["run_id"])]
    total, longest = sum(sleeps), max(sleeps)
    bound = max(total / WORKERS, longest)
    rr = round_robin_with_barriers([sleeps], WORKERS)
    print(f"\n1. Makespan, {len(sleeps)} sleeps {sleeps} on {WORKERS} engines (measured sum {sum(measured):.2f} s)")
    print(f"   lower bound max(total/P, longest)          {bound:6.2f} s")
    print(f"   original round robin + barriers (simulated) {rr:6.2f} s   ({rr / bound:.2f}x the bound)")
    for attempt, seconds in results:
        print(f"   ndustria, {attempt:<13}                  {seconds:6.2f} s   ({seconds / bound:.2f}x the bound)")


def bench_throughput(n: int, cache: Path, repeats: int) -> None:
    """Each method ``repeats`` times, interleaved (round k runs every method once), medians compared:
    the disk and the other tenants of this machine move single runs by 10-30 %."""
    from ndustria import Pipeline
    from ndustria.run import cluster

    client = cluster.local_client(WORKERS)
    view = client.load_balanced_view()
    runs = iter(range(1_000_000))

    def ndustria_run(fsync: bool = True, where: Path = cache) -> tuple[float, int]:
        t0 = time.perf_counter()
        pipe = Pipeline(name="throughput", parallel=True, engines=WORKERS, cache_dir=where, verbose=False,
                        fsync=fsync)
        task = pipe.AddFunction()(tick)
        salt = f"run{next(runs)}"  # new keys every time: nothing is cached, the catalog remembers tick
        for i in range(n):
            task(i, salt)
        pipe.run()
        return time.perf_counter() - t0, pipe.last_scheduler.submissions

    def apply_each() -> float:
        t0 = time.perf_counter()
        for ar in [view.apply_async(tick, i, "x") for i in range(n)]:
            ar.get()
        return time.perf_counter() - t0

    def mapped(chunk: int) -> float:
        t0 = time.perf_counter()
        view.map_sync(tick, range(n), ["x"] * n, chunksize=chunk)
        return time.perf_counter() - t0

    def settle() -> None:
        """Start every timed call clean: nothing dirty in the page cache (the fsync=False runs leave
        1,000 unsynced files, which the next run's first sync would pay for) and no garbage of the
        previous method waiting for a full collection (1,000 apply_async results: up to 0.3 s)."""
        os.sync()
        gc.collect()

    probe = Path(cache)  # the runs' own directories: creating files there costs what the runs pay
    saves_before = save_cost(probe, True, "before"), save_cost(probe, False, "before")
    settle()
    ndustria_run()  # the shared cache's first run: from now on the catalog remembers tick's duration
    chunks = (10, 25, 50, 100, 250)
    times: dict[str, list[float]] = {}
    subs: dict[str, list[int]] = {}
    for k in range(repeats):
        for label, fsync, where in (("fresh", True, cache.parent / f"fresh{k}"), ("history", True, cache),
                                    ("nofsync", False, cache)):
            settle()
            seconds, count = ndustria_run(fsync, where)  # "fresh": a new cache, no duration known
            times.setdefault(label, []).append(seconds)
            subs.setdefault(label, []).append(count)
        settle()
        times.setdefault("apply", []).append(apply_each())
        for chunk in chunks:
            settle()
            times.setdefault(f"map{chunk}", []).append(mapped(chunk))
    med = {k: statistics.median(v) for k, v in times.items()}
    best_chunk = min(chunks, key=lambda c: med[f"map{c}"])
    best, per_task = med[f"map{best_chunk}"], med["apply"]

    def spread(key: str) -> str:
        return f"{min(times[key]):.2f}-{max(times[key]):.2f}"

    floor = n * 0.001 / WORKERS
    saves_after = save_cost(probe, True, "after"), save_cost(probe, False, "after")
    print(f"\n2. Throughput, {n} tasks of 1 ms on {WORKERS} ipyparallel engines (floor {floor:.2f} s); "
          f"medians of {repeats} interleaved rounds (range)")
    print("   store: one small result saved alone in " + ", then ".join(
        f"{fs * 1e3:.2f} ms (fsync) / {plain * 1e3:.2f} ms (fsync=False) {when}"
        for when, (fs, plain) in (("before the rounds", saves_before), ("after them", saves_after))))
    print("   (a disk slow to create or sync files moves ndustria, which caches, not map, which writes nothing; "
          "see BENCHMARKS.md)")
    print(f"   one apply_async per task                    {per_task:6.2f} s  ({spread('apply')})")
    print("   map(chunksize=c), hand-picked: " + ", ".join(f"c={c}: {med[f'map{c}']:.2f} s" for c in chunks))
    for label, title in (("fresh", "caching included, no history  "), ("history", "caching included, with history"),
                         ("nofsync", "with history, fsync=False    ")):
        print(f"   ndustria, {title}  {med[label]:6.2f} s  ({spread(label)}, {statistics.median(subs[label]):.0f} "
              f"submissions)   {per_task / med[label]:.1f}x faster than apply_async, {med[label] / best:.2f}x best "
              f"map (c={best_chunk})")


def save_cost(root: Path, fsync: bool, label: str, n: int = 100) -> float:
    """Seconds to store one small result, as an unbatched task's engine does (a batch defers its fsyncs)."""
    from ndustria.store.entries import Store

    store = Store(root, fsync=fsync)
    t0 = time.perf_counter()
    for i in range(n):
        store.save(f"probe{label}{fsync:d}{i:020d}", i)
    return (time.perf_counter() - t0) / n


def overhead_run(n: int, cache: Path, batching: bool, salt: str, **kwargs) -> tuple[float, int]:
    """Seconds per no-op task per worker: makespan x workers / tasks."""
    from ndustria import Pipeline
    from ndustria.run import backends

    saved = dict(backends.OVERHEAD)
    if not batching:
        backends.OVERHEAD.update({k: 0.0 for k in backends.OVERHEAD})
    try:
        pipe = Pipeline(name="overhead", parallel=True, cache_dir=cache, verbose=False, **kwargs)
        task = pipe.AddFunction()(noop)
        for i in range(n):
            task(i, f"{batching}-{salt}")  # the same keys on every MPI rank
        t0 = time.perf_counter()
        pipe.run()
        seconds = time.perf_counter() - t0
        scheduler = pipe.last_scheduler  # None on MPI ranks other than 0
        return seconds * WORKERS / n, scheduler.submissions if scheduler else 0
    finally:
        backends.OVERHEAD.clear()
        backends.OVERHEAD.update(saved)


def bench_overhead(n: int, cache: Path) -> None:
    print(f"\n3. Per-task overhead, {n} no-op tasks, {WORKERS} workers (makespan x workers / tasks)")
    for batching in (False, True):
        per, subs = overhead_run(n, cache, batching, str(time.time()), engines=WORKERS)
        print(f"   ipyparallel, batching {'on ' if batching else 'off'}   {per * 1e3:7.3f} ms/task   ({subs} submissions)")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        print("   MPI: no mpiexec next to this Python (pip install mpi4py mpich)")
        return
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(mpiexec), "-n", str(WORKERS + 1), sys.executable, __file__, "--mpi-child", str(n),
                           "--dir", str(cache), "--salt", str(time.time())], capture_output=True, text=True, env=env,
                          timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            for batching in ("off", "on"):
                per, subs = data[batching]
                print(f"   MPI (mpiexec -n {WORKERS + 1}), batching {batching:<3} {per * 1e3:7.3f} ms/task   ({subs} submissions)")
            return
    print("   MPI run failed:", proc.stderr[-2000:])


def mpi_child(n: int, cache: Path, salt: str) -> None:
    from mpi4py import MPI

    off = overhead_run(n, cache, False, salt)
    on = overhead_run(n, cache, True, salt)
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps({"off": off, "on": on}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--overhead-tasks", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds of the throughput comparison")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--mpi-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--salt", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mpi_child:
        mpi_child(args.mpi_child, args.dir, args.salt)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        from ndustria.run import cluster

        t0 = time.perf_counter()
        cluster.local_client(WORKERS)
        print(f"local ipyparallel cluster with {WORKERS} engines started in {time.perf_counter() - t0:.1f} s "
              "(once per process; not counted below)")
        bench_makespan(root / "makespan")
        bench_throughput(args.tasks, root / "throughput", args.repeats)
        bench_overhead(args.overhead_tasks, root / "overhead")


if __name__ == "__main__":
    main()
