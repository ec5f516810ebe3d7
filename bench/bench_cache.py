"""Cache benchmarks, each measured in this run against a peer on the same machine and disk.

    python bench/bench_cache.py [--tasks 5000] [--hash-mb 400] [--io-mb 1024] [--dir DIR]

1. Warm re-run of N cached tasks, declaring included, vs joblib.Memory cache hits of the same function.
2. Key time of a large float64 array argument (a new object each time) vs joblib.hash, alone and
   with the check run() makes before the task is sent (values are fixed at the call).
3. Save / load of a large array result vs raw np.save / np.load, and a memory-mapped load.
Prints ratios (>1 means ndustria is faster); numbers go in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def square(i):
    return i * i


def bench_warm_rerun(n: int, root: Path) -> None:
    import joblib

    from ndustria import Pipeline

    cache = root / "nd"

    def declare_and_run() -> None:
        pipe = Pipeline(name="bench", cache_dir=cache, verbose=False)
        task = pipe.AddFunction()(square)
        for i in range(n):
            task(i)
        pipe.run()
        pipe.close()

    declare_and_run()  # cold: computes and stores n results
    nd = best_of(3, declare_and_run)

    memory = joblib.Memory(root / "jl", verbose=0)
    cached = memory.cache(square)
    for i in range(n):
        cached(i)

    def joblib_hits() -> None:
        for i in range(n):
            cached(i)

    jl = best_of(3, joblib_hits)
    print(f"[warm re-run] {n} cached tasks: ndustria {nd / n * 1e6:.1f} us/task (declare + look up + run), "
          f"joblib.Memory hit {jl / n * 1e6:.1f} us/call -> ndustria is {jl / nd:.1f}x cheaper (goal >= 10x)")


def consume(values):
    return values


def bench_hash(mb: int, root: Path) -> None:
    """Key time of a new array object each time (no identity memo can answer), and the key plus the
    check run() makes before the task is sent (the array hashed again: values are fixed at the call)."""
    import joblib

    from ndustria import Pipeline
    from ndustria.keys.maker import KeyMaker

    base = np.random.default_rng(0).random(mb * 2**20 // 8)
    pipe = Pipeline(name="bench", cache_dir=root / "nd-hash", verbose=False)
    task = pipe.AddFunction()(consume)
    keys, store = KeyMaker(), pipe.store  # what declaring a task does, step by step (Pipeline.declare)
    keys.task_key(task, {"values": np.zeros(3)}, (np.zeros(3),), {})  # fingerprints consume() once, untimed
    declare, both = [], []
    for _ in range(5):
        arr = base.copy()  # a new object with the same content, made outside the timings
        gc.collect()
        record: dict[str, bytes] = {}
        t0 = time.perf_counter()
        task_id = keys.task_key(task, {"values": arr}, (arr,), {}, record)  # declare: the key ...
        store.contains(task_id)  # ... and a look-up of it in the cache
        fixed = keys.fixed(task, {"values": arr}, record)
        t1 = time.perf_counter()
        keys.check_fixed(task, "consume(arr)", fixed)  # what run() does before sending it
        t2 = time.perf_counter()
        declare.append(t1 - t0)
        both.append(t2 - t0)
        del arr
    pipe.close()
    arr = base.copy()
    jl = best_of(1, lambda: joblib.hash(arr))
    nd, nd_both = min(declare), min(both)
    print(f"[key time] {base.nbytes / 1e6:.0f} MB float64 array, a new object each time: ndustria {nd * 1e3:.1f} ms "
          f"({base.nbytes / nd / 1e9:.1f} GB/s), joblib.hash {jl * 1e3:.0f} ms -> {jl / nd:.0f}x faster")
    print(f"[key + run-time check] declare + re-check before the task is sent: ndustria {nd_both * 1e3:.1f} ms "
          f"-> {jl / nd_both:.0f}x faster than joblib.hash (goal >= 20x)")


def bench_io(mb: int, root: Path) -> None:
    from ndustria.store.entries import Store

    arr = np.random.default_rng(1).random(mb * 2**20 // 8)
    store_plain = Store(root / "store", fsync=False)
    store_sync = Store(root / "store-sync", fsync=True)
    npy = root / "raw.npy"

    counter = iter(range(10**6))

    def fresh(kind: str) -> tuple[str, Path]:
        """A new key and file for each repetition: a result is written once, never over itself."""
        n = next(counter)
        return f"{kind}{n:031d}", root / f"{kind}{n}.npy"

    def np_save(sync: bool) -> None:
        _, path = fresh("n")
        with open(path, "wb") as fh:
            np.save(fh, arr)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        path.unlink()

    def nd_save(store: Store) -> None:
        key, _ = fresh("d")
        store.save(key, arr)
        store.remove(key)

    save_np = best_of(3, lambda: np_save(False))
    save_nd = best_of(3, lambda: nd_save(store_plain))
    save_np_sync = best_of(2, lambda: np_save(True))
    save_nd_sync = best_of(2, lambda: nd_save(store_sync))
    np.save(npy, arr)
    store_plain.save("a" * 32, arr)
    load_np = best_of(3, lambda: np.load(npy))
    load_nd = best_of(3, lambda: store_plain.load("a" * 32))

    proc = psutil.Process()
    gc.collect()
    rss0 = proc.memory_info().rss
    t0 = time.perf_counter()
    mapped = store_plain.load("a" * 32, mmap=True)
    mmap_s = time.perf_counter() - t0
    rss_growth = proc.memory_info().rss - rss0
    assert float(mapped[12345]) == float(arr[12345])
    del mapped
    gb = arr.nbytes / 1e9
    print(f"[save] {gb:.2f} GB array: np.save {gb / save_np:.2f} GB/s, ndustria {gb / save_nd:.2f} GB/s "
          f"-> {save_np / save_nd:.2f}x (goal >= 0.9x); with fsync: np.save+fsync {gb / save_np_sync:.2f} GB/s, "
          f"ndustria {gb / save_nd_sync:.2f} GB/s -> {save_np_sync / save_nd_sync:.2f}x")
    print(f"[load] np.load {gb / load_np:.2f} GB/s, ndustria (checksum verified) {gb / load_nd:.2f} GB/s "
          f"-> {load_np / load_nd:.2f}x (goal >= 0.9x)")
    print(f"[mmap load] {mmap_s * 1e3:.2f} ms, RSS grew {rss_growth / 1e6:.1f} MB for a {gb * 1e3:.0f} MB array")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--hash-mb", type=int, default=400)
    parser.add_argument("--io-mb", type=int, default=1024)
    parser.add_argument("--dir", help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ndustria-bench-", dir=args.dir))
    try:
        bench_warm_rerun(args.tasks, root)
        bench_hash(args.hash_mb, root)
        bench_io(args.io_mb, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
