"""cloudpickle for calls sent to other processes, keeping the source file of code shipped by value.

cloudpickle ships functions it cannot import by name (those of ``__main__``, notebook
cells, functions defined inside functions) with their code, and names that code's file
``<dynamic-code>`` so that its pickles do not depend on where the function was defined.
A task failing on an engine then showed ``File "<dynamic-code>", line 7, in work`` with
no source line, where a serial run shows the script's path and the line that raised.
:func:`dumps` pickles code objects with their own file name, so tracebacks read the same
on every backend (the engine reads the line from that file when it can see it).

ndustria's keys do not come from these pickles (:mod:`ndustria.keys.fingerprint` computes
them), so their determinism does not matter here.
"""

from __future__ import annotations

import io
import types
from collections import ChainMap
from typing import Any

import cloudpickle

try:  # cloudpickle's own reducer gives the constructor's arguments on every Python it supports
    from cloudpickle.cloudpickle import _code_reduce
except ImportError:  # pragma: no cover - a cloudpickle without it: keep its "<dynamic-code>" names
    _code_reduce = None


def _code_in_file(args: tuple[Any, ...], filename: str) -> types.CodeType:
    """Rebuild a code object pickled by :func:`dumps`, under its own file name."""
    return types.CodeType(*args).replace(co_filename=filename)


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    _, args = _code_reduce(code)
    return _code_in_file, (args, code.co_filename)


class _Pickler(cloudpickle.Pickler):
    if _code_reduce is not None:
        dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def dumps(obj: Any) -> bytes:
    """``cloudpickle.dumps(obj)``, with code shipped by value keeping its file name."""
    with io.BytesIO() as out:
        _Pickler(out, protocol=cloudpickle.DEFAULT_PROTOCOL).dump(obj)
        return out.getvalue()
