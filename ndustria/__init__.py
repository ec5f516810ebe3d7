"""ndustria: cached, code-aware, parallel and profiled pipelines.

>>> from ndustria import Pipeline
>>> pipe = Pipeline()
>>> @pipe.AddFunction()
... def square(x):
...     return x * x
>>> h = square(4)      # declares a task; nothing runs yet
>>> pipe.run()         # runs what is not cached
>>> h.result()
16
"""

from __future__ import annotations

from typing import Any

from ndustria.compat import Cache, Logger, Task  # noqa: F401 - the original's names and import paths (see compat)
from ndustria.errors import (
    CacheError,
    CacheWriteError,
    ConfigError,
    CorruptEntryError,
    InputChangedError,
    InputFileChangedError,
    InputFileError,
    NdustriaError,
    NdustriaWarning,
    ResultNotPicklableError,
    TaskError,
    TaskFailure,
    TaskNotComputedError,
    UnhashableError,
    UntrustedEntryError,
)
from ndustria.keys.files import File
from ndustria.pipeline import Pipeline
from ndustria.records import RunSummary
from ndustria.task import TaskFunction, TaskHandle
from ndustria.version import __version__

__all__ = [
    "CacheError",
    "CacheWriteError",
    "ConfigError",
    "CorruptEntryError",
    "File",
    "InputChangedError",
    "InputFileChangedError",
    "InputFileError",
    "NdustriaError",
    "NdustriaWarning",
    "Pipeline",
    "ResultNotPicklableError",
    "RunSummary",
    "TaskError",
    "TaskFailure",
    "TaskFunction",
    "TaskHandle",
    "TaskNotComputedError",
    "UnhashableError",
    "UntrustedEntryError",
    "__version__",
    "default_pipeline",
    "set_default_pipeline",
    "load_ipython_extension",
    "task",
    "unload_ipython_extension",
]


_default_pipeline: Pipeline | None = None


def default_pipeline() -> Pipeline:
    """The pipeline ``@task`` registers into: the kernel's under ``%load_ext ndustria``, else a module-level one."""
    global _default_pipeline
    if _default_pipeline is None:
        _default_pipeline = Pipeline()
    return _default_pipeline


def set_default_pipeline(pipe: Pipeline | None) -> Pipeline | None:
    """Make ``pipe`` the pipeline ``@task`` registers into (``%load_ext ndustria`` makes it the kernel's);
    ``None`` forgets it. Returns the one it replaces (None if there was none)."""
    global _default_pipeline
    previous, _default_pipeline = _default_pipeline, pipe
    return previous


def task(func: Any = None, *, rerun: bool = False, version: str | None = None, name: str | None = None) -> Any:
    """``@task`` / ``@task(rerun=True)``: ``AddFunction`` of :func:`default_pipeline` (in a script, run it
    with ``ndustria.default_pipeline().run()``; in a notebook, with ``%%ndustria`` or ``%ndustria run``)."""
    return default_pipeline().AddFunction(func, rerun=rerun, version=version, name=name)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ndustria``: the notebook layer lives in ``ndustria_nb`` (imported only here)."""
    import ndustria_nb

    ndustria_nb.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    import ndustria_nb

    ndustria_nb.unload_ipython_extension(ipython)
