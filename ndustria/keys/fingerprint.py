"""Code fingerprints of task functions (DESIGN.md step 2, "Code fingerprint").

A fingerprint is an xxh3_128 digest of a tagged, length-prefixed byte stream made of

* the function's normalized code: the AST of its source with decorators and docstrings
  removed (comments and formatting never reach the AST), or, without source, its code
  object minus line numbers. Source read from a file is used only while that file still
  compiles to the code object in memory: a module edited on disk after it was imported is
  fingerprinted by its loaded bytecode (with a warning), never by the new text;
* everything it reads besides its arguments, each as the code reaches it:
  globals, closure cells, argument defaults and modules imported inside the function, and
  attribute chains through user modules and packages (``pkg.sub.func``, ``settings.SCALE``,
  ``mod.Class``), resolved in memory. User functions count recursively (a decorator's
  wrapper by its own code and closure *and* the function it wraps); a user class by every
  member (methods with what they reach, class attributes) and its bases along the MRO; a
  user module used as a whole (not through attributes) by the functions, classes and plain
  values it defines; library code by module, qualified name and package version; other
  values by content.

Each kind of object read has its own handler (``Fingerprinter._HANDLERS``, by exact type, then
``_kind_of``), in the style of dask's ``normalize_token``: functions, modules, methods,
builtins, classes, other callables (wrappers, partials, ufuncs), plain values.

The static part (:mod:`ndustria.keys.code`) is cached per code object; library code is told apart
by :mod:`ndustria.keys.library`; the values of globals, cells and attributes are read again on
every call, so changing one changes the digest (the reads are recorded by :mod:`ndustria.keys.reads`).

Fast path: a full digest records every dynamic read it makes, transitively -- globals (and
the builtins they fall back to), module and class attributes (and the key sets of modules and
classes hashed as a whole), closure cells, ``sys.modules`` entries of modules imported inside a
function, each function's ``__code__``, ``__defaults__``, ``__kwdefaults__`` (and its items),
``__wrapped__``, ``__module__`` and ``__qualname__``. A later ``digest(fn)`` of the same function
object returns the remembered digest when every read still finds the identical object (``is``).
This is exact only because such a digest never depended on the *content* of a mutable object:
whenever a value's content is hashed (rather than its identity or name: functions, modules,
classes, builtins, library callables), the value must be of an immutable kind (None, bool, int,
float, complex, str, bytes, and tuples/frozensets of these), otherwise that function is never
remembered and is recomputed on every call, so in-place mutation is still seen. Names of
modules, classes and library objects count as part of their identity, as the library caches
below already assume.
"""

from __future__ import annotations

import builtins
import enum
import functools
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ndustria.errors import UnhashableError
from ndustria.keys.code import NO_CHAINS, Chain, Static, Stream, static_info
from ndustria.keys.hashing import immutable, int_bytes
from ndustria.keys.library import is_library_module, library_constant, library_token
from ndustria.keys.reads import (
    BIG,
    EMPTY,
    MISSING,
    Context,
    Memo,
    fn_state,
    home,
    imported,
    is_user_class,
    is_user_function,
    qualified_name,
    unwrap,
)

if TYPE_CHECKING:
    from ndustria.keys.hashing import ValueHasher

__all__ = ["Fingerprinter", "is_library_module"]

_BUILTINS = builtins.__dict__
_FAST_MAX = 4096  # remembered digests per Fingerprinter (the oldest quarter dropped when full)


# exact types hashed here directly (cheaper than a hasher round trip); the rest go to the hasher
_SIMPLE: dict[type, Callable] = {
    int: int_bytes,
    bool: str,
    type(None): str,
    float: float.hex,
    str: str,
    bytes: bytes,
}


_CLASS_SKIP = frozenset({
    "__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__firstlineno__",
    "__static_attributes__", "_abc_impl", "__dataclass_fields__", "__dataclass_params__", "__orig_bases__",
    "__parameters__", "__annotations__", "__annotate__", "__annotate_func__", "__annotations_cache__",
    "_member_map_", "_member_names_", "_value2member_map_", "_unhashable_values_", "_member_type_",
    "_value_repr_", "_new_member_", "_use_args_", "_singles_mask_", "_all_bits_", "_boundary_",
    "_flag_mask_", "_inverted_", "_numeric_repr_", "_hashable_values_",
})
_MODULE_SKIP = frozenset({
    "__name__", "__doc__", "__package__", "__loader__", "__spec__", "__file__", "__cached__",
    "__builtins__", "__path__", "__annotations__", "__all__",
})
_SLOT_TYPES = (types.MemberDescriptorType, types.GetSetDescriptorType)


def _annotation_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)  # typing constructs: their text is their code



class Fingerprinter:
    """Computes code fingerprints of task functions; values are hashed by ``hasher``."""

    def __init__(self, hasher: ValueHasher) -> None:
        self.hasher = hasher
        if getattr(hasher, "function_token", None) is None:
            hasher.function_token = self.digest
        if getattr(hasher, "class_token", None) is None:  # classes in argument values count by their code
            hasher.class_token = self.class_digest
        self._local = threading.local()
        self._fast: dict[int, Memo] = {}  # id(function or class) -> remembered digest (module docstring)

    # public API -------------------------------------------------------------------------
    def digest(self, fn: Callable) -> bytes:
        """16-byte digest of ``fn``'s code identity (code, helpers, globals, closure, libraries)."""
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:  # re-entered through the hasher (a function inside a global value)
            return self._reentered(fn, ctx)
        memo = self._fast.get(id(fn))
        if memo is not None and memo.holds(fn):
            return memo.digest
        self._local.ctx = ctx = Context(fn)
        try:
            out = self._digest(fn, ctx)
        finally:
            self._local.ctx = None
        memo = self._fast.get(id(fn))
        fresh = memo is not None and memo.acyclic and memo.ref() is fn and memo.digest == out
        if ctx.safe and isinstance(fn, types.FunctionType) and not fresh:
            self._remember(fn, out, ctx, ctx.funcs[id(fn)][1] if id(fn) in ctx.funcs else fn_state(fn))
        return out

    def remembered(self, fn: Callable) -> Memo | None:
        """What the last digest of ``fn`` was made from, if it is kept: while ``memo.holds(fn)`` (and not
        :meth:`busy`), ``memo.digest`` is what :meth:`digest` returns."""
        return self._fast.get(id(fn))

    def busy(self) -> bool:
        """Whether a digest is being made in this thread (a call now would be one made inside it)."""
        return getattr(self._local, "ctx", None) is not None

    def hexdigest(self, fn: Callable) -> str:
        """Hex form of :meth:`digest`."""
        return self.digest(fn).hex()

    def class_digest(self, cls: type) -> bytes:
        """16-byte digest of a class's code: its members (methods with what they reach, class
        attributes) and its bases; library classes by module, name and package version."""
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:
            return self._reentered(cls, ctx)
        if not is_user_class(cls):
            s = Stream("class-token")
            self._library(s, "library-class", cls.__module__, cls.__qualname__)
            return s.digest()
        memo = self._fast.get(id(cls))
        if memo is not None and memo.holds(cls):
            return memo.digest
        self._local.ctx = ctx = Context(cls)
        try:
            out, _ = self._class(cls, ctx)
        finally:
            self._local.ctx = None
        assert out is not None  # nothing was on the stack
        memo = self._fast.get(id(cls))
        if ctx.safe and not (memo is not None and memo.acyclic and memo.ref() is cls):
            self._remember(cls, out, ctx, None)
        return out

    def parts(self, fn: Callable) -> dict[str, bytes]:
        """The sub-digests a function's digest is made of, by label: ``"code"``, ``"global variable
        'SCALE'"``, ``"closure variable 'k'"``, ``"default of parameter 'n'"``, ``"module 'm' imported
        inside"``, ``"wrapped function"``. Two calls can be compared to name what changed."""
        if not is_user_function(fn):
            return {"code": self.digest(fn)}
        ctx = Context(fn)
        self._local.ctx = ctx
        try:
            st = static_info(fn.__code__)
            out = {"code": st.code_digest}
            ctx.depth[id(fn)] = 0
            for kind, name, value, chains in self._reads(fn, st, ctx):
                s = Stream("part")
                self._value(s, value, fn, kind, name, chains, ctx)
                out[f"{kind} {name!r}" if name else kind] = s.digest()
        finally:
            self._local.ctx = None
        return out

    def helpers(self, fn: Callable) -> list[Callable]:
        """User functions ``fn`` reaches (through globals, closures, defaults, imports, attribute
        chains, the classes it uses and the functions it wraps), in the order they are met."""
        ctx = Context(fn)
        self._local.ctx = ctx
        try:
            self._digest(fn, ctx)
        finally:
            self._local.ctx = None
        root = fn if isinstance(fn, types.FunctionType) else unwrap(fn)
        out: list[Callable] = []
        for f in ctx.seen:
            if f is not root and f not in out:
                out.append(f)
        return out

    # internals ----------------------------------------------------------------------------
    def _remember(self, obj: Any, out: bytes, ctx: Context, root: tuple | None, acyclic: bool = False) -> None:
        """Keep ``out`` for the fast path; the entry goes when ``obj`` dies (or when evicted)."""
        dicts: dict[tuple[int, str], tuple[Any, str, Any]] = {}
        for read in ctx.dicts:
            first = dicts.setdefault((id(read[0]), read[1]), read)
            if first[2] is not read[2]:  # changed while the digest was computed
                return
        memos, key = self._fast, id(obj)

        def drop(ref: weakref.ref, key: int = key, memos: dict = memos) -> None:
            memo = memos.get(key)
            if memo is not None and memo.ref is ref:
                del memos[key]

        try:
            ref = weakref.ref(obj, drop)
        except TypeError:
            return
        memo = Memo(ref, out, root, ctx, tuple(dicts.values()), acyclic)
        memos.pop(key, None)
        if len(memos) >= _FAST_MAX:  # bounded: functions kept alive by their own reads go too
            for old in list(memos)[: _FAST_MAX // 4]:  # the oldest quarter
                memos.pop(old, None)
        memos[key] = memo

    def _reentered(self, obj: Any, ctx: Context) -> bytes:
        """A function or class the hasher met inside a value, during a digest."""
        if is_user_function(obj) or is_user_class(obj):  # the same bytes as a top-level digest of it
            if isinstance(obj, types.FunctionType):
                ctx.note_fn(obj)
                out, low = self._function(obj, ctx)
            else:
                out, low = self._class(obj, ctx)
            if out is not None:
                ctx.reentry_low = min(ctx.reentry_low, low)
                return out
        s = Stream("callable" if not isinstance(obj, type) else "class-token")
        low = self._value(s, obj, None, "value", "", NO_CHAINS, ctx, top=not isinstance(obj, type))
        ctx.reentry_low = min(ctx.reentry_low, low)
        return s.digest()

    def _digest(self, fn: Callable, ctx: Context) -> bytes:
        if is_user_function(fn):
            ctx.note_fn(fn)
            out, _ = self._function(fn, ctx)
            if out is not None:
                return out
        s = Stream("callable")
        self._value(s, fn, None, "value", "", NO_CHAINS, ctx, top=True)
        return s.digest()

    @staticmethod
    def _reads(fn: types.FunctionType, st: Static, ctx: Context,
               with_globals: bool = True) -> Iterator[tuple[str, str, Any, tuple[Chain, ...]]]:
        """(kind, name, value, attribute chains) of everything ``fn`` reads besides its arguments."""
        if with_globals:
            g = fn.__globals__
            for name in st.global_names:
                value = ctx.read(g, name)
                if value is MISSING:
                    value = ctx.read(_BUILTINS, name)
                yield "global variable", name, value, st.chains.get(name, NO_CHAINS)
        code = fn.__code__
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                value = EMPTY
            ctx.cells.append((cell, value))
            yield "closure variable", name, value, st.chains.get(name, NO_CHAINS)
        if fn.__defaults__:
            params = code.co_varnames[: code.co_argcount][-len(fn.__defaults__) :]
            for p, v in zip(params, fn.__defaults__):
                yield "default of parameter", p, v, NO_CHAINS
        if fn.__kwdefaults__:
            for p, v in sorted(fn.__kwdefaults__.items()):
                yield "default of parameter", p, v, NO_CHAINS
        for module, chains in st.imports:
            yield f"module {module!r} imported inside", "", imported(module, ctx), chains
        wrapped = fn.__dict__.get("__wrapped__", MISSING)
        if wrapped is not MISSING:
            yield "wrapped function", "", wrapped, NO_CHAINS

    def _isolated(self, obj: Any, ctx: Context, body: Callable[[Any, Context], tuple[bytes, int]],
                  root: tuple | None) -> tuple[bytes | None, int]:
        """Digest of a user function or class (None: it is on the stack) and the lowest stack depth it
        referred back to, computed in a sub-context, so that it is remembered on its own (the fast
        path) when it depends on nothing further up the stack and on no mutable content."""
        key = id(obj)
        depth = ctx.depth.get(key)
        if depth is not None:
            ctx.cyclic = True
            return None, depth
        hit = ctx.memo.get(key)
        if hit is not None:
            ctx.cyclic = ctx.cyclic or key in ctx.cyclic_ids
            return hit, BIG
        memo = self._fast.get(key)
        if memo is not None and memo.acyclic and memo.holds(obj):
            memo.replay(ctx)
            if isinstance(obj, types.FunctionType):
                ctx.seen.append(obj)
            ctx.memo[key] = memo.digest
            return memo.digest, BIG
        depth = ctx.depth[key] = len(ctx.depth)
        sub = ctx.sub(obj)
        saved, self._local.ctx = self._local.ctx, sub
        try:
            out, low = body(obj, sub)
        finally:
            self._local.ctx = saved
            del ctx.depth[key]
        ctx.absorb(sub)
        if low >= depth:  # no reference to an object further up the stack: reusable in this digest
            ctx.memo[key] = out
            if sub.cyclic:
                ctx.cyclic_ids.add(key)
            elif sub.safe:  # and in every later one, while its reads find the same objects
                self._remember(obj, out, sub, root, acyclic=True)
        return out, low

    def _function(self, fn: types.FunctionType, ctx: Context) -> tuple[bytes | None, int]:
        """Digest of a user function and the lowest stack depth it referred back to (None: on the stack)."""
        return self._isolated(fn, ctx, self._function_body, ctx.funcs[id(fn)][1] if id(fn) in ctx.funcs
                              else fn_state(fn))

    def _function_body(self, fn: types.FunctionType, ctx: Context) -> tuple[bytes, int]:
        ctx.seen.append(fn)
        low = BIG
        st = static_info(fn.__code__)
        s = Stream("function")
        s.put(st.code_digest)
        g, kind, reads, chains = fn.__globals__, "global variable", ctx.dicts, st.chains
        for name, item in zip(st.global_names, st.global_keys):  # the hot loop, kept inline
            s.append(item)
            value = g.get(name, MISSING)
            if value is MISSING:
                reads.append((g, name, MISSING))
                value = _BUILTINS.get(name, MISSING)
                reads.append((_BUILTINS, name, value))
            else:
                reads.append((g, name, value))
            r = self._value(s, value, fn, kind, name, chains.get(name, NO_CHAINS), ctx)
            if r < low:
                low = r
        if fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__ or st.imports or "__wrapped__" in fn.__dict__:
            for kind_, name, value, chains_ in self._reads(fn, st, ctx, with_globals=False):
                s.put(kind_, name)
                low = min(low, self._value(s, value, fn, kind_, name, chains_, ctx))
        return s.digest(), low

    def _library(self, s: Stream, kind: str, module: str, qualname: str) -> None:
        s.append(library_token(kind, module, qualname))

    # -- one handler per kind of value (dispatched by _value) --------------------------------
    def _value(self, s: Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
               ctx: Context, top: bool = False) -> int:
        """Write the token of one value read by ``owner``; return the lowest stack depth it referred back to."""
        simple = _SIMPLE.get(type(value))
        if simple is not None:
            s.put(type(value).__name__, simple(value))
            return BIG
        if value is MISSING or value is EMPTY:
            s.put("missing" if value is MISSING else "empty")
            return BIG
        handler = self._HANDLERS.get(type(value))
        if handler is None:
            handler = _kind_of(value)
        return handler(self, s, value, owner, kind, name, chains, ctx, top)

    def _v_function(self, s: Stream, fn: types.FunctionType, owner: Any, kind: str, name: str,
                    chains: tuple[Chain, ...], ctx: Context, top: bool) -> int:
        ctx.note_fn(fn)
        if not is_user_function(fn):
            self._library(s, "library-function", home(fn), fn.__qualname__)
            wrapped = fn.__dict__.get("__wrapped__", MISSING)  # a library decorator around user code
            if wrapped is MISSING:
                return BIG
            s.put("wrapped")
            return self._value(s, wrapped, owner, kind, f"{name}.__wrapped__", NO_CHAINS, ctx)
        out, low = self._function(fn, ctx)
        if out is None:
            s.put("recursive", fn.__module__ or "", fn.__qualname__)
        else:
            s.put("function", out)
        return low

    def _v_module(self, s: Stream, mod: types.ModuleType, owner: Any, kind: str, name: str,
                  chains: tuple[Chain, ...], ctx: Context, top: bool) -> int:
        if is_library_module(mod.__name__):
            self._library(s, "library-module", mod.__name__, "")
            return BIG
        s.put("user-module", mod.__name__)
        d, low = vars(mod), BIG
        if any(not c for c in chains):  # used as a whole (passed on, getattr(mod, ...)): all it defines
            low = self._namespace(s, mod, owner, kind, name, ctx)
        for attr in sorted({c[0] for c in chains if c}):
            value = ctx.read(d, attr)
            if value is MISSING and "__getattr__" in d:  # PEP 562: an attribute made on request
                ctx.safe = False
                value = getattr(mod, attr, MISSING)
            rest = tuple(c[1:] for c in chains if c and c[0] == attr)
            s.put("attribute", attr)
            low = min(low, self._value(s, value, owner, kind, f"{name}.{attr}", rest, ctx))
        return low

    def _namespace(self, s: Stream, mod: types.ModuleType, owner: Any, kind: str, name: str, ctx: Context) -> int:
        """A user module as a whole: the functions and classes it defines and its plain values."""
        key = id(mod)
        if key in ctx.depth:
            s.put("recursive-module", mod.__name__)
            ctx.cyclic = True
            return ctx.depth[key]
        ctx.depth[key] = len(ctx.depth)
        d, low = vars(mod), BIG
        try:
            ctx.shapes.append((d, tuple(d)))
            for attr in sorted(a for a in d if isinstance(a, str) and a not in _MODULE_SKIP):
                value = ctx.read(d, attr)
                if isinstance(value, types.FunctionType):
                    if home(value) != mod.__name__:
                        continue  # imported: it counts where it is used
                elif isinstance(value, type):
                    if value.__module__ != mod.__name__:
                        continue
                elif isinstance(value, types.ModuleType) or callable(value) or not immutable(value):
                    continue  # other modules and objects count where they are read
                s.put("member", attr)
                low = min(low, self._value(s, value, owner, kind, f"{name}.{attr}", NO_CHAINS, ctx))
        finally:
            del ctx.depth[key]
        return low

    def _v_class(self, s: Stream, cls: type, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                 ctx: Context, top: bool) -> int:
        if not is_user_class(cls):
            self._library(s, "library-class", cls.__module__, cls.__qualname__)
            return BIG
        out, low = self._class(cls, ctx)
        if out is None:
            s.put("recursive-class", cls.__module__, cls.__qualname__)
        else:
            s.put("user-class", out)
        return low

    def _class(self, cls: type, ctx: Context) -> tuple[bytes | None, int]:
        """Digest of a user class: qualified name, metaclass, bases, every member (sorted by name)."""
        return self._isolated(cls, ctx, self._class_body, None)

    def _class_body(self, cls: type, ctx: Context) -> tuple[bytes, int]:
        low = BIG
        s = Stream("class")
        s.put(cls.__qualname__)
        label = cls.__qualname__
        meta = type(cls)
        if meta is not type:
            s.put("metaclass")
            low = min(low, self._value(s, meta, cls, "metaclass of", label, NO_CHAINS, ctx))
        for base in cls.__bases__:
            s.put("base")
            low = min(low, self._value(s, base, cls, "base class of", label, NO_CHAINS, ctx))
        d = cls.__dict__
        ctx.shapes.append((d, tuple(d)))
        annotations = d.get("__annotations__")
        if isinstance(annotations, dict) and annotations:
            s.put("annotations", *(f"{k}:{_annotation_text(v)}" for k, v in sorted(annotations.items())))
        is_enum = isinstance(cls, enum.EnumMeta)
        for attr in sorted(a for a in d if a not in _CLASS_SKIP):
            value = ctx.read(d, attr)
            s.put("member", attr)
            if is_enum and isinstance(value, cls):
                s.put("enum-member")
                value = value._value_  # type: ignore[attr-defined]
            low = min(low, self._member(s, value, cls, f"{label}.{attr}", ctx))
        return s.digest(), low

    def _member(self, s: Stream, value: Any, cls: type, name: str, ctx: Context) -> int:
        """One entry of a class namespace: descriptors by the functions they hold."""
        kind = "class attribute"
        if isinstance(value, (staticmethod, classmethod)):
            s.put(type(value).__name__)
            return self._value(s, value.__func__, cls, kind, name, NO_CHAINS, ctx)
        if isinstance(value, property):
            s.put("property")
            return min(self._value(s, f, cls, kind, name, NO_CHAINS, ctx) for f in (value.fget, value.fset, value.fdel))
        if isinstance(value, (functools.cached_property, functools.partialmethod)):
            s.put(type(value).__name__)
            low = self._value(s, value.func, cls, kind, name, NO_CHAINS, ctx)
            if isinstance(value, functools.partialmethod):
                low = min(low, self._v_plain(s, (value.args, value.keywords), cls, kind, name, NO_CHAINS, ctx, False))
            return low
        if isinstance(value, _SLOT_TYPES):  # __slots__ entries: their names are in __slots__
            s.put("slot")
            return BIG
        try:
            return self._value(s, value, cls, kind, name, NO_CHAINS, ctx)
        except UnhashableError:
            if callable(value) or isinstance(value, type):
                raise
            # runtime state kept on the class (a lock, a connection): not code, and not hashable
            s.put("opaque class attribute", qualified_name(type(value)))
            ctx.safe = False
            return BIG

    def _v_method(self, s: Stream, value: types.MethodType, owner: Any, kind: str, name: str,
                  chains: tuple[Chain, ...], ctx: Context, top: bool) -> int:
        s.put("method")
        low = self._value(s, value.__func__, owner, kind, name, NO_CHAINS, ctx)
        return min(low, self._value(s, value.__self__, owner, kind, f"{name}.__self__", NO_CHAINS, ctx))

    def _v_builtin(self, s: Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                   ctx: Context, top: bool) -> int:
        bound = value.__self__
        module = value.__module__ or getattr(bound, "__name__", None) or type(bound).__module__ or "builtins"
        self._library(s, "builtin", module, value.__qualname__)
        if bound is None or isinstance(bound, types.ModuleType):
            return BIG
        return self._value(s, bound, owner, kind, f"{name}.__self__", NO_CHAINS, ctx)

    def _v_callable(self, s: Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                    ctx: Context, top: bool) -> int:
        """A callable object that is not a function: library ones by name and version (and what they
        wrap), others by content (their class's code counts, as for any instance)."""
        module = getattr(value, "__module__", None) or type(value).__module__
        label = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        wrapped = getattr(value, "__wrapped__", MISSING)
        if isinstance(label, str) and isinstance(module, str) and (
            is_library_module(module) or (wrapped is not MISSING and not is_user_class(type(value)))
        ):
            tmod = type(value).__module__  # functools.wraps copies __module__: the type tells the library
            self._library(s, "library-callable", module if is_library_module(module) else tmod, label)
            if wrapped is MISSING:
                return BIG  # ufuncs, dispatchers, descriptors
            s.put("wrapped")
            ctx.safe = False  # the link is an attribute of an arbitrary object: not a recorded read
            return self._value(s, wrapped, owner, kind, f"{name}.__wrapped__", NO_CHAINS, ctx)
        ctx.safe = False  # an arbitrary callable object: its attributes are not recorded
        if top:  # digest() of a non-function: the hasher called us for it, do not loop back
            inner = unwrap(value)
            if inner is not value:
                return self._value(s, inner, owner, kind, name, chains, ctx)
            raise UnhashableError(
                f"cannot fingerprint the callable {value!r} of type {type(value).__qualname__}"
            )
        return self._v_plain(s, value, owner, kind, name, chains, ctx, top)

    def _v_plain(self, s: Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                 ctx: Context, top: bool) -> int:
        """Any other value, by content (an instance of a user class also by its class's code)."""
        if top:
            raise UnhashableError(f"cannot fingerprint {value!r} of type {type(value).__qualname__}: not callable")
        cls, low = type(value), BIG
        if not immutable(value):  # the digest depends on content that may change in place
            constant = library_constant(value)
            if constant is not None:  # a library's module-level singleton (dataclasses.MISSING): by name
                self._library(s, "library-constant", *constant)
                return BIG
            ctx.safe = False
        if is_user_class(cls):  # an instance of a user class: its code counts too
            out, low = self._class(cls, ctx)
            s.put("instance-of", out if out is not None else f"recursive {cls.__qualname__}".encode())
        saved, ctx.reentry_low = ctx.reentry_low, BIG
        try:
            s.put("value", self.hasher.digest(value))
        except UnhashableError as e:
            if getattr(e, "_ndustria_fingerprint", False):
                raise
            where = qualified_name(owner) if owner is not None else "?"
            root = ctx.root if isinstance(ctx.root, (types.FunctionType, type)) else unwrap(ctx.root)
            via = "" if owner is root else f" (reached from {qualified_name(root)})"
            err = UnhashableError(
                f"{where}{via} reads {kind} {name!r}, a {type(value).__qualname__}, which cannot be "
                f"fingerprinted: {e}. Pass it to the task as an argument instead, give it a "
                f"__ndustria_token__, or declare the task with an explicit version=...",
                where=e.where,
            )
            err._ndustria_fingerprint = True  # type: ignore[attr-defined]
            raise err from e
        finally:
            low, ctx.reentry_low = min(low, ctx.reentry_low), saved
        return low

    _HANDLERS: dict[type, Callable[..., int]] = {}


Fingerprinter._HANDLERS.update({
    types.FunctionType: Fingerprinter._v_function,
    types.ModuleType: Fingerprinter._v_module,
    types.MethodType: Fingerprinter._v_method,
    types.BuiltinFunctionType: Fingerprinter._v_builtin,
    type: Fingerprinter._v_class,
})


def _kind_of(value: Any) -> Callable[..., int]:
    """The handler of a value whose exact type has no entry in ``Fingerprinter._HANDLERS``."""
    if isinstance(value, type):
        return Fingerprinter._v_class
    if isinstance(value, types.ModuleType):
        return Fingerprinter._v_module
    if callable(value):
        return Fingerprinter._v_callable
    return Fingerprinter._v_plain
