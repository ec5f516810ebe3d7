"""The original ndustria's import paths, so its users' scripts import unchanged.

The original shipped one module per class (``ndustria/Pipeline.py``, ``Task.py``, ``Cache.py``,
``Logger.py``). Ours are lower case, and files differing only in case would clash on case-insensitive
file systems (macOS, Windows), so the old paths are alias modules registered in ``sys.modules`` when
``ndustria`` is imported (an engine unpickling a task imports ``ndustria`` first, so it has them too):

========================================  ==========================================================
the original's name                       what it is here
========================================  ==========================================================
``ndustria.Pipeline.Pipeline``            :class:`ndustria.Pipeline` (:mod:`ndustria.pipeline`)
``ndustria.Task.Task``                    :class:`ndustria.TaskHandle`: what calling a decorated
                                          function returns (``.result()``, ``.done()``, ``.key``)
``ndustria.Cache.Cache``                  :class:`ndustria.store.Store`: a cache directory of results,
                                          ``Cache(path)``; its methods take result keys, not tasks
``ndustria.Logger.log/debug/warn/error``  the ``logging.getLogger("ndustria")`` methods ``info``,
                                          ``debug``, ``warning``, ``error`` (no exit on ``error``)
========================================  ==========================================================

``Logger.setLogFile`` has no counterpart (the last run's log is kept by ndustria itself) and is left out.

As in the original, the package attributes are the classes: ``ndustria.Pipeline``, ``ndustria.Task`` and
``ndustria.Cache`` are classes and ``ndustria.Logger`` the module; ``import ndustria.Pipeline`` and
``from ndustria.Pipeline import Pipeline`` find the alias module in ``sys.modules`` and leave them so.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types
from typing import Any

from ndustria.pipeline import Pipeline
from ndustria.store.entries import Store
from ndustria.task import TaskHandle

Task = TaskHandle
Cache = Store

_log = logging.getLogger("ndustria")


def _alias(name: str, doc: str, **names: Any) -> types.ModuleType:
    """A module ``ndustria.<name>`` holding ``names``, registered in ``sys.modules``."""
    full = f"{__package__}.{name}"
    module = types.ModuleType(full, doc)
    # A spec makes it an importable module to cloudpickle (pickled by name, not by value) and importlib.
    module.__spec__ = importlib.machinery.ModuleSpec(full, None, origin=__name__)
    module.__package__ = __package__
    module.__all__ = sorted(names)
    vars(module).update(names)
    sys.modules.setdefault(full, module)
    return sys.modules[full]


_alias("Pipeline", "The original's ``ndustria.Pipeline`` module: ``Pipeline`` is :class:`ndustria.Pipeline`.",
       Pipeline=Pipeline)
_alias("Task", "The original's ``ndustria.Task`` module: ``Task`` is :class:`ndustria.TaskHandle`.", Task=Task)
_alias("Cache", "The original's ``ndustria.Cache`` module: ``Cache`` is :class:`ndustria.store.Store`.",
       Cache=Cache)
Logger = _alias("Logger", "The original's ``ndustria.Logger`` functions, on the ``ndustria`` logger of "
                ":mod:`logging`.", log=_log.info, debug=_log.debug, warn=_log.warning, error=_log.error)
