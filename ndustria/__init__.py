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

from .compat import Cache, Logger, Task  # noqa: F401 - the original's names and import paths (see compat)
from .errors import (
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
from .files import File
from .pipeline import Pipeline, RunSummary
from .task import TaskFunction, TaskHandle

__version__ = "0.1.0"

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
