"""The dynamic reads of one digest: what a function or class digest depended on, so that a
remembered digest can be reused while every read still finds the identical object.

A :class:`Context` is the state of one top-level digest: the objects on the stack, finished
sub-digests, and each read made (globals and the builtins they fall back to, module and class
attributes and the key sets of namespaces hashed whole, closure cells, ``sys.modules`` entries,
each function's ``__code__``, defaults, ``__wrapped__``, ``__module__``, ``__qualname__``).
A :class:`Memo` keeps a finished digest with those reads (:meth:`Memo.valid`).

This is exact only because a remembered digest never depended on the *content* of a mutable
object: ``Context.safe`` turns False as soon as one was hashed by content.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
import weakref
from typing import Any

from ndustria.keys.library import is_library_module

MISSING = object()  # a name that is not bound
EMPTY = object()  # an empty closure cell
BIG = 1 << 30  # "no reference back up the stack"


def unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj)
    except (ValueError, TypeError):
        return obj


def qualified_name(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', None) or getattr(obj, '__name__', '?')}"


def home(f: types.FunctionType) -> str:
    """The module a function's code lives in (``functools.wraps`` copies ``__module__``, not globals)."""
    name = f.__globals__.get("__name__")
    return name if isinstance(name, str) else (f.__module__ or "")


def is_user_function(obj: Any) -> bool:
    return isinstance(obj, types.FunctionType) and not is_library_module(home(obj))


def is_user_class(obj: Any) -> bool:
    return isinstance(obj, type) and not is_library_module(getattr(obj, "__module__", "") or "")


def fn_state(f: types.FunctionType) -> tuple:
    """The writable attributes of a function its digest depends on (compared by identity)."""
    kwd = f.__kwdefaults__
    return (
        f.__code__,
        f.__defaults__,
        kwd,
        tuple(kwd.items()) if kwd else (),
        f.__dict__.get("__wrapped__", MISSING),
        f.__module__,
        f.__qualname__,
    )


def same_fn(f: types.FunctionType, state: tuple) -> bool:
    code, defaults, kwd, kwitems, wrapped, module, qualname = state
    if (
        f.__code__ is not code
        or f.__defaults__ is not defaults
        or f.__kwdefaults__ is not kwd
        or f.__module__ is not module
        or f.__qualname__ is not qualname
        or f.__dict__.get("__wrapped__", MISSING) is not wrapped
    ):
        return False
    if kwd:  # the same dict, but its items may have been changed in place
        if len(kwd) != len(kwitems):
            return False
        for k, v in kwitems:
            if kwd.get(k, MISSING) is not v:
                return False
    return True


class Context:
    """State of one top-level digest: the objects being digested, finished results, recorded reads.

    It records the dynamic reads the digest depends on (see the module docstring), and ``safe``
    turns False once the digest depends on the content of a mutable value. ``reentry_low`` is the
    lowest stack depth a digest requested by the value hasher (a function or class inside a value)
    referred back to.
    """

    __slots__ = ("root", "depth", "memo", "dicts", "shapes", "cells", "funcs", "safe", "reentry_low", "seen",
                 "cyclic", "cyclic_ids")

    def __init__(self, root: Any) -> None:
        self.root = root
        self.depth: dict[int, int] = {}  # id(function, class or module on the stack) -> its depth
        self.memo: dict[int, bytes] = {}  # id(object) -> digest independent of the stack
        self.dicts: list[tuple[Any, str, Any]] = []  # (mapping, key, value or MISSING)
        self.shapes: list[tuple[Any, tuple]] = []  # (mapping, its keys) of namespaces hashed whole
        self.cells: list[tuple[types.CellType, Any]] = []  # (cell, contents or EMPTY)
        self.funcs: dict[int, tuple[types.FunctionType, tuple]] = {}  # id -> (function, fn_state)
        self.safe = True
        self.reentry_low = BIG
        self.seen: list[types.FunctionType] = []  # user functions digested, in order (helpers())
        self.cyclic = False  # this digest met an object on the stack (recursion), directly or below
        self.cyclic_ids: set[int] = set()  # finished digests (in memo) that met one

    def sub(self, root: Any) -> Context:
        """A context for one function or class inside this digest: the same stack and finished digests,
        its own reads and safety, so that its digest can be remembered on its own."""
        out = Context(root)
        out.depth, out.memo, out.cyclic_ids = self.depth, self.memo, self.cyclic_ids
        return out

    def absorb(self, sub: Context) -> None:
        """This digest depends on everything ``sub`` read."""
        self.dicts.extend(sub.dicts)
        self.shapes.extend(sub.shapes)
        self.cells.extend(sub.cells)
        for k, v in sub.funcs.items():
            self.funcs.setdefault(k, v)
        self.seen.extend(sub.seen)
        self.safe = self.safe and sub.safe
        self.cyclic = self.cyclic or sub.cyclic

    def note_fn(self, f: types.FunctionType) -> None:
        if id(f) not in self.funcs:
            self.funcs[id(f)] = (f, fn_state(f))

    def read(self, mapping: Any, key: str) -> Any:
        value = mapping.get(key, MISSING)
        self.dicts.append((mapping, key, value))
        return value


class Memo:
    """A remembered digest of one function or class and the reads it was computed from."""

    __slots__ = ("ref", "digest", "root", "funcs", "dicts", "shapes", "cells", "seen", "acyclic", "reads")

    def __init__(self, ref: weakref.ref, digest: bytes, root: tuple | None, ctx: Context, dicts: tuple,
                 acyclic: bool) -> None:
        self.ref = ref
        # Met no object on the stack (no recursion below it): the digest is the same wherever the object
        # is reached from, so it may stand in for it inside other digests, not only as a root.
        self.acyclic = acyclic
        self.digest = digest
        self.root = root  # a function's own state, checked against the function passed in
        obj = ref()
        self.funcs = tuple(entry for entry in ctx.funcs.values() if entry[0] is not obj)
        self.dicts = dicts
        self.shapes = tuple(ctx.shapes)
        self.cells = tuple(ctx.cells)
        self.seen = tuple(f for f in ctx.seen if f is not obj)  # not itself: the memo must not keep it alive
        self.reads = bool(self.funcs or self.dicts or self.shapes or self.cells)  # else only the root is checked

    def replay(self, ctx: Context) -> None:
        """Record this digest's reads in ``ctx``, whose digest now depends on them too."""
        ctx.dicts.extend(self.dicts)
        ctx.shapes.extend(self.shapes)
        ctx.cells.extend(self.cells)
        for f, state in self.funcs:
            ctx.funcs.setdefault(id(f), (f, state))
        ctx.seen.extend(self.seen)

    def holds(self, obj: Any) -> bool:
        """Whether :attr:`digest` is ``obj``'s now: the memo is of ``obj`` (not of an object since gone whose
        id it reuses) and every read it was made from still finds the identical object."""
        return self.ref() is obj and self.valid(obj)

    def valid(self, obj: Any) -> bool:
        """True while every recorded read still finds the identical object."""
        if self.root is not None and not same_fn(obj, self.root):
            return False
        if not self.reads:  # a function reading no global, closure or other function (checked every call)
            return True
        for f, state in self.funcs:
            if not same_fn(f, state):
                return False
        for d, k, v in self.dicts:
            if d.get(k, MISSING) is not v:
                return False
        for d, keys in self.shapes:
            if len(d) != len(keys) or tuple(d) != keys:
                return False
        for cell, v in self.cells:
            try:
                if cell.cell_contents is not v:
                    return False
            except ValueError:
                if v is not EMPTY:
                    return False
        return True


def imported(module: str, ctx: Context) -> Any:
    """The module a function imports when it runs (imported now if nothing has yet, as the task would)."""
    value = ctx.read(sys.modules, module)
    if value is MISSING:
        try:
            value = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the task itself will report it when it runs
            return MISSING
        ctx.safe = False
    return value
