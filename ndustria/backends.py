"""Where tasks run: every backend is a ``concurrent.futures.Executor`` plus a little metadata.

``serial`` runs in this process; ``processes`` uses a reusable loky pool; any
executor the user hands in (``executor=``) is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

BACKENDS = ("serial", "processes")


class SerialExecutor(Executor):
    """Runs each call at submit time, in this process (Ctrl-C propagates at once)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


@dataclass
class Backend:
    """An executor, how many tasks it runs at once, and how to release it."""

    name: str
    executor: Executor
    workers: int
    shared_cache: bool = True
    closer: Callable[[], None] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.closer is not None:
            self.closer()
            self.closer = None


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def resolve_backend(*, parallel: bool, backend: str | None, engines: int | None,
                    executor: Executor | None = None, shared_cache: bool = True) -> Backend:
    """Choose the backend by the documented rules (explicit ``executor``/``backend`` first)."""
    if engines is not None and (not isinstance(engines, int) or engines < 1):
        raise ConfigError(f"engines must be a positive integer, not {engines!r}")
    if executor is not None:
        workers = engines or getattr(executor, "_max_workers", None) or default_workers()
        return Backend("executor", executor, int(workers), shared_cache)
    name = backend or ("processes" if parallel else "serial")
    if name == "serial":
        return Backend("serial", SerialExecutor(), 1)
    if name == "processes":
        return _processes(engines or default_workers())
    raise ConfigError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)} or pass executor=")


def _processes(workers: int) -> Backend:
    from loky import get_reusable_executor

    executor = get_reusable_executor(max_workers=workers, timeout=300)
    return Backend("processes", executor, workers)
