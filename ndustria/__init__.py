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

from .errors import (
    CacheError,
    ConfigError,
    CorruptEntryError,
    NdustriaError,
    NdustriaWarning,
    ResultNotPicklableError,
    TaskError,
    TaskFailure,
    TaskNotComputedError,
    UnhashableError,
)
from .pipeline import Pipeline, RunSummary
from .task import TaskFunction, TaskHandle

__version__ = "0.1.0"

__all__ = [
    "CacheError",
    "ConfigError",
    "CorruptEntryError",
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
    "__version__",
    "load_ipython_extension",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext ndustria``: the notebook layer lives in ``ndustria_nb`` (imported only here)."""
    import ndustria_nb

    ndustria_nb.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    import ndustria_nb

    ndustria_nb.unload_ipython_extension(ipython)
