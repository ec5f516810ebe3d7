"""Tasks as the user sees them: decorated functions and the handles their calls return.

Calling a :class:`TaskFunction` does not run it: it binds the arguments to the
signature (defaults applied, so ``f(64)`` and ``f(N=64)`` are one task) and asks
its pipeline to declare a task, which returns a :class:`TaskHandle`. A handle
anywhere in the arguments (inside lists, tuples, dicts, sets too) is an edge of
the graph and is replaced by its value when the task runs.
"""

from __future__ import annotations

import functools
import inspect
import reprlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol


class Owner(Protocol):
    """What a task function needs of its pipeline (:class:`ndustria.Pipeline`)."""

    name: str

    def declare(self, function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskHandle: ...

    def result_of(self, handle: TaskHandle, *, mmap: bool = False) -> Any: ...

    def look_up(self) -> None: ...


class TaskFunction:
    """A function registered in a pipeline. Calling it declares a task."""

    def __init__(self, func: Callable[..., Any], pipeline: Owner, *, rerun: bool = False,
                 version: str | None = None, name: str | None = None) -> None:
        functools.update_wrapper(self, func)
        self.func = func
        self.pipeline = pipeline
        self.rerun = rerun
        self.version = version
        self.name = name or func.__name__
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters.values())
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params)
        self._fast_names = tuple(p.name for p in params) if simple else None
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self.remembered: Any = None  # the fingerprinter's memo of func's digest (keys.maker.KeyMaker.function_digest)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """(args, kwargs, arguments) bound to the signature with defaults applied; TypeError if they do not fit."""
        names = self._fast_names
        if names is not None and not kwargs and len(args) <= len(names):
            n = len(args)  # (one or two arguments, the usual call, without dict(zip()): 40-70 ns, not 200)
            arguments = ({names[0]: args[0]} if n == 1 else {names[0]: args[0], names[1]: args[1]} if n == 2
                         else dict(zip(names, args)))
            if n < len(names):
                for name in names[len(args):]:
                    if name not in self._defaults:
                        break
                    arguments[name] = self._defaults[name]
                else:
                    return tuple(arguments.values()), {}, arguments
            else:
                return args, {}, arguments
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.args, bound.kwargs, dict(bound.arguments)

    def __call__(self, *args: Any, **kwargs: Any) -> TaskHandle:
        return self.pipeline.declare(self, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Inside a running task (on a worker), a task function is just its function.
        return (_plain_function, (self.func,))

    def __repr__(self) -> str:
        return f"<ndustria task {self.name} of pipeline {self.pipeline.name!r}>"


def _plain_function(func: Callable[..., Any]) -> Callable[..., Any]:
    return func


class TaskHandle:
    """A declared task: its call, its key, and (after a run) its result.

    ``id`` names the call: the code, the arguments and the calls of the tasks it depends on; it
    is known at once and identifies the task in a run. ``key`` names the result in the cache:
    for a task without task inputs it is the ``id``; for a dependent it also names the results
    its inputs actually produced (their content checksums), so that a recomputed input with a
    new result gives its dependents new keys, and one whose result came out byte-identical
    keeps them (early cutoff). It is None until every input's result is known: before run()
    when an input is not cached yet or must run again (``rerun=True``).
    """

    # A script may declare hundreds of thousands: no per-handle __dict__.
    __slots__ = ("function", "args", "_kwargs", "id", "key", "checksum", "deps", "rerun", "seq",
                 "_status", "looked_up", "error", "path", "_call", "written", "fixed", "has_files", "value_digest",
                 "__weakref__")

    def __init__(self, function: TaskFunction, args: tuple[Any, ...], kwargs: dict[str, Any],
                 task_id: str, deps: tuple[TaskHandle, ...], rerun: bool) -> None:
        self.function = function
        self.args = args  # as bound by the signature (defaults applied); may contain handles
        # None for none (the usual call): an empty dict kept per task was a third of the objects a declaration
        # leaves to the garbage collector (3,000 tasks: 14 young collections and a middle one; 10 and none without it)
        self._kwargs = kwargs or None
        self.id = task_id
        self.key: str | None = None if deps else task_id
        self.checksum = ""  # content checksum of the stored result, once it is known
        self.deps = deps
        self.rerun = rerun
        self.seq = 0  # declaration order, across pipelines of this process
        self._status = "declared"  # declared | cached | queued | running | done | failed | skipped
        self.looked_up = True  # False while its pipeline has not looked it up in the cache yet (in bulk)
        self.error: BaseException | None = None
        self.path: str = ""
        self._call = ""
        # the call's arguments as written, when they differ from the bound ones (keyword arguments, defaults)
        self.written: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.fixed: Any = None  # keys.maker.Fixed: what must be unchanged when the task is dispatched
        self.has_files = False  # its arguments hold pinned Files (keys.files.pin_files): checked on the engine
        self.value_digest: bytes | None = None  # the hasher's digest of it as an argument (its id's): made once

    @property
    def status(self) -> str:
        """declared | cached | queued | running | done | failed | skipped (a declared task is looked up in
        the cache in bulk, with the others declared around it, before its status is read)."""
        if not self.looked_up:
            self.function.pipeline.look_up()
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments as bound by the signature (those not passed by position)."""
        return self._kwargs if self._kwargs is not None else {}

    @property
    def arguments(self) -> dict[str, Any]:
        """The arguments by parameter name, defaults applied (made when asked: no dict kept per task)."""
        return self.function.bind(self.args, self.kwargs)[2]

    @property
    def name(self) -> str:
        """The call as it was written, e.g. ``matrix_parameters(matrix_multiplication(N=1024))``."""
        if not self._call:
            self._call = format_call(self.function.name, *(self.written or (self.args, self.kwargs)))
        return self._call

    @property
    def pipeline(self) -> Owner:
        return self.function.pipeline

    def __ndustria_token__(self) -> tuple[str, str]:
        return ("ndustria.TaskHandle", self.id)

    def result(self, *, mmap: bool = False) -> Any:
        """The task's return value, loaded from the cache (``mmap=True`` memory-maps arrays)."""
        return self.pipeline.result_of(self, mmap=mmap)

    def done(self) -> bool:
        """True when the result is stored (computed in this run or found in the cache)."""
        return self.status in ("done", "cached")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        key = self.key[:12] if self.key else "pending"
        return f"<TaskHandle {self.name} key={key} {self.status}>"

    def __reduce__(self) -> tuple[Any, ...]:
        raise TypeError(
            f"the task handle {self.name} cannot be pickled; pass it as an argument of another task "
            "(it is replaced by its value) or call .result() first"
        )


_repr = reprlib.Repr()
_repr.maxstring = 40
_repr.maxother = 40
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6


_PLAIN = (int, float, bool, type(None))


def short_repr(value: Any) -> str:
    """A short, readable rendering of an argument for console lines."""
    if type(value) in _PLAIN or (type(value) is str and len(value) <= 40):
        return repr(value)
    if isinstance(value, TaskHandle):
        return value.name
    if isinstance(value, (list, tuple)) and any(isinstance(v, TaskHandle) for v in value):
        inner = ", ".join(short_repr(v) for v in value[:6]) + (", ..." if len(value) > 6 else "")
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, dict) and any(isinstance(v, TaskHandle) for v in value.values()):
        items = list(value.items())
        inner = ", ".join(f"{k!r}: {short_repr(v)}" for k, v in items[:6]) + (", ..." if len(items) > 6 else "")
        return "{" + inner + "}"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if shape is not None and dtype is not None and type(value).__name__ in ("ndarray", "DataFrame", "Series"):
        return f"{type(value).__name__}(shape={tuple(shape)}, dtype={dtype})"
    try:
        return _repr.repr(value)
    except Exception:  # a broken __repr__ must not break declaring a task
        return f"<{type(value).__name__}>"


def format_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [short_repr(a) for a in args] + [f"{k}={short_repr(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


_CONTAINERS = (list, tuple, dict, set, frozenset)


SCALARS = frozenset({int, float, str, bytes, bool, type(None), complex})  # values that cannot change in place


def iter_handles(value: Any) -> Iterator[TaskHandle]:
    """Every task handle inside a value (positional/keyword args, nested builtin containers)."""
    if type(value) in SCALARS:
        return
    if isinstance(value, TaskHandle):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_handles(item)
    elif isinstance(value, _CONTAINERS):
        for item in value:
            yield from iter_handles(item)


def replace_handles(value: Any, resolve: Callable[[Any], Any], is_leaf: Callable[[Any], bool]) -> Any:
    """Copy ``value`` with every leaf (``is_leaf(x)``) replaced by ``resolve(x)``; other objects kept as they are."""
    if is_leaf(value):
        return resolve(value)
    if isinstance(value, dict):
        mapping = {k: replace_handles(v, resolve, is_leaf) for k, v in value.items()}
        return mapping if type(value) is dict else _rebuild(value, mapping)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # namedtuple
        return type(value)(*(replace_handles(v, resolve, is_leaf) for v in value))
    if isinstance(value, _CONTAINERS):
        items = [replace_handles(v, resolve, is_leaf) for v in value]
        return _rebuild(value, items)
    return value


def _rebuild(original: Any, items: Any) -> Any:
    try:
        return type(original)(items)
    except Exception:  # a container subclass with an unusual constructor: fall back to the builtin
        for base in (dict, list, tuple, set, frozenset):
            if isinstance(original, base):
                return base(items)
        raise


def unfinished(handles: Iterable[TaskHandle]) -> list[TaskHandle]:
    """The handles neither done nor cached (the status as stored where a handle was looked up already, as a
    run's are: the property's call cost 0.1 ms per 3,000 tasks)."""
    return [h for h in handles if (h._status if h.looked_up else h.status) not in ("done", "cached")]


def task_closure(roots: list[TaskHandle]) -> dict[str, TaskHandle]:
    """The roots and every task they depend on, by id, in declaration order."""
    out: dict[str, TaskHandle] = {h.id: h for h in roots}
    stack = [d for h in roots for d in h.deps if d.id not in out]
    extra = bool(stack)
    while stack:
        handle = stack.pop()
        if handle.id not in out:
            out[handle.id] = handle
            stack.extend(handle.deps)
    seqs = [h.seq for h in roots]
    if not extra and seqs == sorted(seqs):  # the usual case: every input was declared since the last run()
        return out
    return dict(sorted(out.items(), key=lambda item: item[1].seq))
