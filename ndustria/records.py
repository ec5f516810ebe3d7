"""Plain data records that every layer may import: what the pipeline sends to an engine
(:class:`TaskPayload`, with :class:`DepRef` standing for an input's value), what comes back
(:class:`TaskReport`), and what one ``run()`` did (:class:`RunSummary`).

This module imports nothing from ndustria: records carry data between layers, never behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DepRef:
    """Stands for a dependency's value inside a payload's arguments: its cache key and its task id."""

    key: str
    id: str = ""


@dataclass
class TaskPayload:
    """Everything an engine needs to run one task. ``key`` is the task's id in the run; its result
    is stored under ``store_key`` (the same, for a task without task inputs)."""

    key: str
    name: str
    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    store_root: str
    fsync: bool = True  # the result is durable before the report leaves (engines of another machine)
    grouped: bool = False  # saved in a batch: committed and synced with the batch's others, lock released then
    instruments: tuple[str, ...] = ()
    shared_cache: bool = True
    inputs: dict[str, Any] = field(default_factory=dict)  # dependency values, when the cache is not shared
    rerun: bool = False  # compute even if another process stored the entry meanwhile
    on_cache_error: str = "error"  # "warn": a result that cannot be written travels back in the report
    refs: bool = True  # args/kwargs may hold DepRefs to resolve (False: the task has no inputs)
    store_key: str = ""  # the cache key of the result ("": key)
    files: bool = False  # args/kwargs hold pinned Files: checked before and after the call, passed as Paths


@dataclass
class TaskReport:
    """What one execution of a task produced; travels from the engine to the scheduler."""

    key: str
    status: str  # "done" | "failed"
    engine: str = ""
    host: str = ""
    pid: int = 0
    start: float = 0.0
    end: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    path: str = ""
    size: int = 0
    checksum: str = ""
    error: str = ""
    exception: BaseException | None = None
    bad_inputs: list[str] = field(default_factory=list)  # dependency entries found damaged or missing
    metrics: dict[str, Any] | None = None
    value: Any = None
    has_value: bool = False
    stdout: str = ""  # the task's own output, when the engine captured it (ipyparallel, MPI)
    stderr: str = ""
    found: bool = False  # the entry was in the store when the task was claimed (nothing was computed)
    store_key: str = ""  # the cache key the result is stored under ("": key)


@dataclass
class RunSummary:
    """What one ``run()`` did."""

    run_id: int | None
    executed: int
    cached: int
    failed: int
    skipped: int
    seconds: float
