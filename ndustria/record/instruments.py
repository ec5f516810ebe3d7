"""Instruments: small lifecycle objects started and stopped around one task call.

After dask's callbacks, an instrument only has ``start()`` and ``stop(report)``;
:func:`call_instrumented` starts them in order, calls the task once, and stops
them in reverse order, even when the task raises. Each one writes plain data
into the :class:`~ndustria.records.TaskReport` (its timing fields, or
``report.metrics``), which is pickled back to the scheduler — so every
instrument works the same in-process, in loky workers, on ipyparallel engines
and on MPI ranks.

- :class:`Timer` (always on): start/end, wall and CPU seconds.
- :class:`HeapTracer`: ``tracemalloc`` initial/peak/final bytes of this task alone.
- :class:`RSSSampler`: process RSS at start, end and every few ms (a thread), plus Linux's peak.
- :class:`LineProfile`: ``line_profiler`` over the task function and its helpers.
"""

from __future__ import annotations

import inspect
import linecache
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ndustria.install import require

if TYPE_CHECKING:
    from ndustria.records import TaskReport

INSTRUMENTS = ("timeit", "memcheck", "profiling")
RSS_INTERVAL_S = 0.01


class Instrument:
    """Base class: ``start()`` just before the task call, ``stop(report)`` just after."""

    def start(self) -> None:
        pass

    def stop(self, report: TaskReport) -> None:
        pass


class Timer(Instrument):
    """Wall and CPU time of the call, with its start and end (epoch seconds).

    CPU time is the process's (threads the task starts count), or with ``thread_cpu`` the
    calling thread's alone: while a batch's results are saved on a writer thread, that
    thread's work is not the task's.
    """

    def __init__(self, thread_cpu: bool = False) -> None:
        self._cpu = time.thread_time if thread_cpu else time.process_time

    def start(self) -> None:
        self._start = time.time()
        self._cpu0, self._t0 = self._cpu(), time.perf_counter()

    def stop(self, report: TaskReport) -> None:
        report.wall_s, report.cpu_s = time.perf_counter() - self._t0, self._cpu() - self._cpu0
        report.start, report.end = self._start, self._start + report.wall_s


def _metrics(report: TaskReport, name: str) -> dict[str, Any]:
    if report.metrics is None:
        report.metrics = {}
    return report.metrics.setdefault(name, {})


class HeapTracer(Instrument):
    """Python heap (``tracemalloc``: numpy buffers included) before, at its peak and after the call."""

    def start(self) -> None:
        self._started = not tracemalloc.is_tracing()
        if self._started:
            tracemalloc.start()
        tracemalloc.reset_peak()  # the peak of this task alone
        self._initial = tracemalloc.get_traced_memory()[0]

    def stop(self, report: TaskReport) -> None:
        final, peak = tracemalloc.get_traced_memory()
        if self._started:
            tracemalloc.stop()
        _metrics(report, "memory").update(initial_bytes=self._initial, peak_bytes=peak, final_bytes=final)


class _Watch:
    __slots__ = ("peak",)

    def __init__(self, rss: int) -> None:
        self.peak = rss


class _Sampler:
    """One daemon thread per process samples RSS while any task watches (idle in between)."""

    def __init__(self, interval: float) -> None:
        import psutil

        self.interval = interval
        self.pid = os.getpid()
        self._process = psutil.Process()
        self._statm: int | None = None
        try:  # a single pread per sample on Linux; psutil elsewhere
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
            self._page = os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            self._statm = None
        self._watches: set[_Watch] = set()
        self._lock = threading.Lock()
        self._active = threading.Event()
        threading.Thread(target=self._run, name="ndustria-rss", daemon=True).start()

    def rss(self) -> int:
        if self._statm is not None:
            try:
                return int(os.pread(self._statm, 128, 0).split()[1]) * self._page
            except (OSError, ValueError, IndexError):
                self._statm = None
        return int(self._process.memory_info().rss)

    def watch(self) -> _Watch:
        w = _Watch(self.rss())
        with self._lock:
            self._watches.add(w)
            self._active.set()
        return w

    def unwatch(self, w: _Watch) -> int:
        """Stop watching; returns the final RSS (also counted in the peak)."""
        with self._lock:
            self._watches.discard(w)
            if not self._watches:
                self._active.clear()
        final = self.rss()
        w.peak = max(w.peak, final)
        return final

    def _run(self) -> None:
        while True:
            self._active.wait()
            time.sleep(self.interval)
            rss = self.rss()
            with self._lock:
                for w in self._watches:
                    w.peak = max(w.peak, rss)


_SAMPLER: _Sampler | None = None
_SAMPLER_LOCK = threading.Lock()


def _sampler(interval: float) -> _Sampler:
    global _SAMPLER
    with _SAMPLER_LOCK:
        if _SAMPLER is None or _SAMPLER.pid != os.getpid() or _SAMPLER.interval != interval:
            _SAMPLER = _Sampler(interval)  # (a forked child has no thread, and another /proc/self)
        return _SAMPLER


class RSSSampler(Instrument):
    """Process RSS at start and end, sampled every ``interval`` seconds in between by a thread.

    Where Linux lets the high-water mark be reset (``/proc/self/clear_refs``), the
    kernel's exact peak since the task started refines the sampled one.
    """

    def __init__(self, interval: float = RSS_INTERVAL_S) -> None:
        self._sampler = _sampler(interval)

    def start(self) -> None:
        self._hwm_reset = _reset_peak_rss()
        self._watch = self._sampler.watch()
        self._initial = self._watch.peak

    def stop(self, report: TaskReport) -> None:
        final = self._sampler.unwatch(self._watch)
        peak = self._watch.peak
        if self._hwm_reset:
            peak = max(peak, _peak_rss() or 0)
        _metrics(report, "memory").update(rss_initial_bytes=self._initial, rss_peak_bytes=peak,
                                          rss_final_bytes=final)


def _reset_peak_rss() -> bool:
    """Reset Linux's VmHWM for this process (``echo 5 > /proc/self/clear_refs``); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class LineProfile(Instrument):
    """``line_profiler`` over ``func`` and the user functions it reaches; results as plain rows.

    ``report.metrics["profile"]`` becomes a list of functions, each
    ``{"file", "name", "lineno", "lines": [{"lineno", "hits", "time_s", "source"}, ...]}``
    with every source line of the function (``hits`` 0 where it did not run).
    The profiled functions' ``__code__`` is restored afterwards.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        require("line_profiler", "profiling=True (on the engine that runs the task)")
        from line_profiler import LineProfiler

        self._profiler = LineProfiler()
        self._codes: list[tuple[Any, Any]] = []
        for f in [inspect.unwrap(func), *_helpers(func)]:
            code = getattr(f, "__code__", None)
            if code is None or any(f is g for g, _ in self._codes):
                continue
            try:
                self._profiler.add_function(f)
            except (TypeError, ValueError):
                continue
            self._codes.append((f, code))

    def start(self) -> None:
        self._profiler.enable_by_count()

    def stop(self, report: TaskReport) -> None:
        self._profiler.disable_by_count()
        for f, code in self._codes:
            f.__code__ = code  # line_profiler pads the bytecode; give the user their function back
        stats = self._profiler.get_stats()
        if report.metrics is None:
            report.metrics = {}
        report.metrics["profile"] = profile_rows(stats.timings, stats.unit)


def _helpers(func: Callable[..., Any]) -> list[Callable[..., Any]]:
    from ndustria.keys.fingerprint import Fingerprinter
    from ndustria.keys.hashing import ValueHasher

    try:
        return Fingerprinter(ValueHasher()).helpers(func)
    except Exception:  # profiling the task alone is better than failing it
        return []


def profile_rows(timings: dict[tuple[str, int, str], list[tuple[int, int, int]]],
                 unit: float) -> list[dict[str, Any]]:
    """line_profiler's ``timings`` as plain data, with the source of every line of each function that ran."""
    out = []
    for (filename, first, name), lines in sorted(timings.items()):
        if not lines:  # a helper this call never ran
            continue
        measured = {lineno: (hits, t * unit) for lineno, hits, t in lines}
        source = _function_source(filename, first)
        numbers = sorted(set(range(first, first + len(source))) | set(measured))
        rows = []
        for lineno in numbers:
            hits, secs = measured.get(lineno, (0, 0.0))
            text = source[lineno - first] if 0 <= lineno - first < len(source) else linecache.getline(filename, lineno)
            rows.append({"lineno": lineno, "hits": hits, "time_s": secs, "source": text.rstrip("\n")})
        out.append({"file": filename, "name": name, "lineno": first, "lines": rows})
    return out


def _function_source(filename: str, first: int) -> list[str]:
    """The source lines of the function starting at ``first`` (empty where the engine has no source)."""
    linecache.checkcache(filename)  # a file edited since it was cached
    lines = linecache.getlines(filename)
    if not lines or first < 1:
        return []
    try:
        return inspect.getblock(lines[first - 1:])
    except Exception:  # tokenizer trouble: the measured lines still get their own text
        return []


def check_instruments(names: Iterable[str]) -> None:
    """Fail at once, saying what to install, if an instrument asked for cannot be imported here
    (before a cluster starts or a task runs; engines elsewhere are checked when their task starts)."""
    names = set(names)
    if "memcheck" in names:
        require("psutil", "memcheck=True")
    if "profiling" in names:
        require("line_profiler", "profiling=True")


def make_instruments(names: Iterable[str], func: Callable[..., Any], thread_cpu: bool = False) -> list[Instrument]:
    """The instruments for one call, outermost first; the timer is always there, innermost."""
    names = set(names)
    out: list[Instrument] = []
    if "memcheck" in names:  # memcheck="rss" (the "rss-only" name) skips tracemalloc's heavy tracing
        out += [RSSSampler()] if "rss-only" in names else [RSSSampler(), HeapTracer()]
    if "profiling" in names:
        out.append(LineProfile(func))
    out.append(Timer(thread_cpu))
    return out


def call_instrumented(names: Iterable[str], func: Callable[..., Any], args: tuple[Any, ...],
                      kwargs: dict[str, Any], report: TaskReport, thread_cpu: bool = False) -> Any:
    """Call ``func(*args, **kwargs)`` once inside the named instruments; they fill ``report``."""
    if not names:  # the timer alone: the common case, and hot in batches of tiny tasks
        timer = Timer(thread_cpu)
        timer.start()
        try:
            return func(*args, **kwargs)
        finally:
            timer.stop(report)
    return run_with(make_instruments(names, func, thread_cpu), func, args, kwargs, report)


def run_with(instruments: Sequence[Instrument], func: Callable[..., Any], args: tuple[Any, ...],
             kwargs: dict[str, Any], report: TaskReport) -> Any:
    """Start ``instruments`` in order, call ``func`` once, stop them in reverse order (even on error)."""
    started: list[Instrument] = []
    try:
        for inst in instruments:
            inst.start()
            started.append(inst)
        return func(*args, **kwargs)
    finally:
        for inst in reversed(started):
            inst.stop(report)
