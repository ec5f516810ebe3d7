"""Code fingerprints of task functions (DESIGN.md step 2, "Code fingerprint").

A fingerprint is an xxh3_128 digest of a tagged, length-prefixed byte stream made of

* the function's normalized code: the AST of its source with decorators and docstrings
  removed (comments and formatting never reach the AST), or, without source, its code
  object minus line numbers;
* everything it reads through globals, closure cells and argument defaults: user
  functions recursively, user modules and classes by their normalized source, library
  code by module, qualified name and package version, and other values by content.

The static part (source parsing, bytecode scan) is cached per code object; the values of
globals and cells are read again on every call, so changing a global changes the digest.

Fast path: a full digest records every dynamic read it makes, transitively -- globals (and
the builtins they fall back to), closure cells, each function's ``__code__``, ``__defaults__``,
``__kwdefaults__`` (and its items), ``__wrapped__``, ``__module__`` and ``__qualname__``, the
attributes looked up on user modules, and the stat stamp of user modules' source files. A
later ``digest(fn)`` of the same function object returns the remembered digest when every
read still finds the identical object (``is``) and every stamp still matches. This is exact
only because such a digest never depended on the *content* of a mutable object: whenever a
value's content is hashed (rather than its identity or name: functions, modules, classes,
builtins, library callables), the value must be of an immutable kind (None, bool, int, float,
complex, str, bytes, and tuples/frozensets of these), otherwise that function is never
remembered and is recomputed on every call, so in-place mutation is still seen. Names of
modules, classes and library objects count as part of their identity, as the class and
library caches below already assume.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dis
import functools
import importlib.metadata
import importlib.util
import inspect
import os
import platform
import site
import sys
import sysconfig
import textwrap
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

from ndustria.errors import UnhashableError

if TYPE_CHECKING:
    from ndustria.hashing import ValueHasher

__all__ = ["Fingerprinter", "is_library_module"]

_PY = "python " + platform.python_version()
_MISSING = object()
_EMPTY = object()
_BIG = 1 << 30
_BUILTINS = builtins.__dict__
_CO_HAS_DOCSTRING = 0x4000000  # Python >= 3.14
_MAIN_NAMES = frozenset({"__main__", "__mp_main__"})
_OWN_PACKAGES = frozenset({"ndustria", "ndustria_nb"})
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
_IMMUTABLE = frozenset({type(None), bool, int, float, complex, str, bytes})
_FAST_MAX = 4096  # remembered digests per Fingerprinter (the oldest quarter dropped when full)


def _enc(item: str | bytes) -> bytes:
    b = item if isinstance(item, bytes) else item.encode("utf-8", "surrogatepass")
    return len(b).to_bytes(4, "little") + b


class _Stream(list):
    """Tagged byte stream for xxh3_128: every item is length-prefixed, never plainly concatenated."""

    def __init__(self, kind: str) -> None:
        super().__init__((_enc(kind),))

    def put(self, *items: str | bytes) -> None:
        self.extend(map(_enc, items))

    def digest(self) -> bytes:
        return xxhash.xxh3_128_digest(b"".join(self))


def _int_bytes(v: int) -> bytes:
    return v.to_bytes(v.bit_length() // 8 + 1, "little", signed=True)


# exact types hashed here directly (cheaper than a hasher round trip); the rest go to the hasher
_SIMPLE: dict[type, Callable] = {
    int: _int_bytes,
    bool: str,
    type(None): str,
    float: float.hex,
    str: str,
    bytes: bytes,
}


class _IdCache:
    """Identity-keyed cache whose entries die with their key object."""

    def __init__(self) -> None:
        self._d: dict[int, tuple[weakref.ref, Any]] = {}

    def get(self, obj: object) -> Any:
        hit = self._d.get(id(obj))
        return hit[1] if hit is not None and hit[0]() is obj else None

    def put(self, obj: object, value: Any) -> Any:
        key, d = id(obj), self._d

        def drop(ref: weakref.ref, key: int = key, d: dict = d) -> None:
            entry = d.get(key)
            if entry is not None and entry[0] is ref:
                del d[key]

        with contextlib.suppress(TypeError):  # not weak-referenceable: just don't cache
            d[key] = (weakref.ref(obj, drop), value)
        return value


# ----------------------------------------------------------------------------- library-ness


@functools.cache
def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    with contextlib.suppress(AttributeError):  # some virtualenvs ship an old site.py
        roots.update(site.getsitepackages())
        roots.add(site.getusersitepackages())
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def _is_library_path(path: str) -> bool:
    real = os.path.realpath(path)
    parts = real.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return True
    return real.startswith(_library_roots())


_LIBRARY_CACHE: dict[str, bool] = {}
_STDLIB = frozenset({"builtins", *sys.builtin_module_names, *sys.stdlib_module_names})


def is_library_module(module_name: str) -> bool:
    """True for builtin, stdlib, site-packages modules and ndustria itself; False for user code."""
    if not module_name or module_name in _MAIN_NAMES:
        return False
    hit = _LIBRARY_CACHE.get(module_name)
    if hit is not None:
        return hit
    top = module_name.partition(".")[0]
    if top in _OWN_PACKAGES or top in _STDLIB:
        result = True
    else:
        mod = sys.modules.get(module_name) or sys.modules.get(top)
        paths: list[str] = []
        if mod is not None:
            file = getattr(mod, "__file__", None)
            paths = [file] if file else [p for p in getattr(mod, "__path__", ()) or () if isinstance(p, str)]
        else:
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                located = [spec.origin] if spec.origin and spec.has_location else []
                paths = located or list(spec.submodule_search_locations or ())
        result = bool(paths) and all(_is_library_path(p) for p in paths)
    _LIBRARY_CACHE[module_name] = result
    return result


@functools.cache
def _package_version(top: str) -> str:
    """Distribution name and version of a top-level package (python version for the stdlib)."""
    if not top or top in _STDLIB:
        return _PY
    candidates = [top]
    with contextlib.suppress(Exception):  # broken metadata must not break fingerprints
        candidates += importlib.metadata.packages_distributions().get(top, [])
    for dist in candidates:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except Exception:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top} {version if isinstance(version, str) else 'unknown'}"


@functools.cache
def _lib_token(kind: str, module: str, qualname: str) -> bytes:
    return b"".join(map(_enc, (kind, module, qualname, _package_version(module.partition(".")[0]))))


# ----------------------------------------------------------------------------- static part


class _Static(NamedTuple):
    code_digest: bytes
    global_names: tuple[str, ...]  # sorted
    global_keys: tuple[bytes, ...]  # their pre-encoded stream items
    attr_names: tuple[str, ...]  # sorted attribute names the code uses (module.helper)


_STATIC = _IdCache()
_CLASSES = _IdCache()
_MODULE_FILES: dict[str, tuple[tuple[int, int, int], bytes]] = {}
_LOAD_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (*_DEFS, ast.ClassDef, ast.Module)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str):
                node.body = node.body[1:] or [ast.Pass()]


def _parse_source(src: str) -> ast.Module:
    src = textwrap.dedent(src)
    try:
        return ast.parse(src)
    except SyntaxError:  # e.g. "return lambda x: ..." taken out of its function
        return ast.parse("async def _ndustria_wrapper_():\n" + textwrap.indent(src, " "))


def _arg_names(args: ast.arguments) -> list[str]:
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    names += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
    return names


def _source_dump(code: types.CodeType) -> str | None:
    """Normalized AST dump of a function's source, or None when it cannot be found reliably."""
    try:
        tree = _parse_source(inspect.getsource(code))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    if code.co_name == "<lambda>":
        lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        inner = {id(m) for n in lambdas for m in ast.walk(n.body) if isinstance(m, ast.Lambda)}
        top = [n for n in lambdas if id(n) not in inner]
        if len(top) != 1:  # several lambdas on one line: cannot tell which one this is
            return None
        node: ast.AST = top[0]
    else:
        node = next((n for n in ast.walk(tree) if isinstance(n, _DEFS) and n.name == code.co_name), None)
        if node is None:
            return None
        node.decorator_list = []
    nargs = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & inspect.CO_VARARGS)
    nargs += bool(code.co_flags & inspect.CO_VARKEYWORDS)
    if _arg_names(node.args) != list(code.co_varnames[:nargs]):  # source edited since it was compiled
        return None
    _strip_docstrings(node)
    return ast.dump(node, include_attributes=False)


def _put_const(s: _Stream, const: object) -> None:
    if isinstance(const, types.CodeType):
        _put_code(s, const)
    elif isinstance(const, tuple):
        s.put("tuple", str(len(const)))
        for item in const:
            _put_const(s, item)
    elif isinstance(const, frozenset):
        parts = []
        for item in const:
            sub = _Stream("item")
            _put_const(sub, item)
            parts.append(sub.digest())
        s.put("frozenset", *sorted(parts))
    elif isinstance(const, str):
        s.put("str", const)
    elif isinstance(const, bytes):
        s.put("bytes", const)
    else:  # None, bool, int, float, complex, Ellipsis: repr is exact for these
        s.put(type(const).__name__, repr(const))


def _put_code(s: _Stream, code: types.CodeType) -> None:
    consts = code.co_consts
    if sys.version_info >= (3, 14):
        if code.co_flags & _CO_HAS_DOCSTRING:
            consts = consts[1:]
    elif not code.co_name.startswith("<") and consts and (consts[0] is None or isinstance(consts[0], str)):
        consts = consts[1:]  # docstring slot of a def (None when there is no docstring)
    s.put("code", code.co_name, str(code.co_argcount), str(code.co_posonlyargcount))
    s.put(str(code.co_kwonlyargcount), str(code.co_flags), code.co_code)
    _put_const(s, consts)
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        s.put(str(len(names)), *names)


def _static(code: types.CodeType) -> _Static:
    hit = _STATIC.get(code)
    if hit is not None:
        return hit
    names: set[str] = set()
    attrs: set[str] = set()
    for co in _codes(code):
        loaded, stored = set(), set()
        for ins in dis.get_instructions(co):
            if ins.opname in _LOAD_OPS:
                loaded.add(ins.argval)
            elif ins.opname == "STORE_NAME":  # class bodies: their own names are not globals
                stored.add(ins.argval)
        names |= loaded - stored if stored else loaded
        attrs.update(co.co_names)
    dump = _source_dump(code)
    if dump is not None:
        s = _Stream("source")
        s.put(dump)
    else:
        s = _Stream("bytecode")
        _put_code(s, code)
        s.put("{}.{}".format(*sys.version_info[:2]))
    names_ = tuple(sorted(names))
    keys = tuple(_enc("global variable") + _enc(n) for n in names_)
    return _STATIC.put(code, _Static(s.digest(), names_, keys, tuple(sorted(attrs))))


def _class_digest(cls: type) -> bytes:
    """Normalized source of a user class; without source, its methods' code."""
    hit = _CLASSES.get(cls)
    if hit is not None:
        return hit
    node = None
    try:
        tree = _parse_source(inspect.getsource(cls))
        node = next(
            (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__), None
        )
    except (OSError, TypeError, SyntaxError, IndentationError):
        pass
    if node is not None:
        _strip_docstrings(node)
        s = _Stream("class-source")
        s.put(ast.dump(node, include_attributes=False))
    else:
        s = _Stream("class-code")
        s.put(cls.__module__, cls.__qualname__, *(b.__qualname__ for b in cls.__bases__))
        for name, attr in sorted(vars(cls).items()):
            f = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
            f = f.fget if isinstance(f, property) else f
            if isinstance(f, types.FunctionType):
                s.put(name, _static(f.__code__).code_digest)
    return _CLASSES.put(cls, s.digest())


def _file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _module_file_digest(mod: types.ModuleType, stats: list | None = None) -> bytes:
    """Normalized AST of a user module's source file, cached until the file changes.

    ``stats`` collects the (path, stamp) checked, for the digest memo to check again.
    """
    path = getattr(mod, "__file__", None)
    if not path or not path.endswith(".py"):
        return b"no-source"
    stamp = _file_stamp(path)
    if stats is not None:
        stats.append((path, stamp))
    if stamp is None:
        return b"no-source"
    hit = _MODULE_FILES.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())
        _strip_docstrings(tree)
        digest = xxhash.xxh3_128(ast.dump(tree, include_attributes=False).encode()).digest()
    except (OSError, SyntaxError, ValueError):
        return b"no-source"
    _MODULE_FILES[path] = (stamp, digest)
    return digest


# ----------------------------------------------------------------------------- dynamic part


def _unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj)
    except (ValueError, TypeError):
        return obj


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', None) or getattr(obj, '__name__', '?')}"


def _is_user_function(obj: Any) -> bool:
    return isinstance(obj, types.FunctionType) and not is_library_module(obj.__module__)


def _immutable(value: Any, depth: int = 0) -> bool:
    """True for values whose content cannot change: scalars and tuples/frozensets of them."""
    t = type(value)
    if t in _IMMUTABLE:
        return True
    if (t is tuple or t is frozenset) and depth < 32:
        return all(_immutable(v, depth + 1) for v in value)
    return False


def _fn_state(f: types.FunctionType) -> tuple:
    """The writable attributes of a function its digest depends on (compared by identity)."""
    kwd = f.__kwdefaults__
    return (
        f.__code__,
        f.__defaults__,
        kwd,
        tuple(kwd.items()) if kwd else (),
        f.__dict__.get("__wrapped__", _MISSING),
        f.__module__,
        f.__qualname__,
    )


def _same_fn(f: types.FunctionType, state: tuple) -> bool:
    code, defaults, kwd, kwitems, wrapped, module, qualname = state
    if (
        f.__code__ is not code
        or f.__defaults__ is not defaults
        or f.__kwdefaults__ is not kwd
        or f.__module__ is not module
        or f.__qualname__ is not qualname
        or f.__dict__.get("__wrapped__", _MISSING) is not wrapped
    ):
        return False
    if kwd:  # the same dict, but its items may have been changed in place
        if len(kwd) != len(kwitems):
            return False
        for k, v in kwitems:
            if kwd.get(k, _MISSING) is not v:
                return False
    return True


class _Ctx:
    """State of one top-level digest() call: the functions being digested and finished results.

    It also records the dynamic reads the digest depends on (see the module docstring), and
    ``safe`` turns False once the digest depends on the content of a mutable value.
    """

    __slots__ = ("root", "depth", "memo", "dicts", "cells", "funcs", "stats", "safe")

    def __init__(self, root: Callable) -> None:
        self.root = root
        self.depth: dict[int, int] = {}  # id(function on the stack) -> its depth
        self.memo: dict[int, bytes] = {}  # id(function) -> digest independent of the stack
        self.dicts: list[tuple[dict, str, Any]] = []  # (mapping, key, value or _MISSING)
        self.cells: list[tuple[types.CellType, Any]] = []  # (cell, contents or _EMPTY)
        self.funcs: dict[int, tuple[types.FunctionType, tuple]] = {}  # id -> (function, _fn_state)
        self.stats: list[tuple[str, Any]] = []  # (user module file, stamp or None)
        self.safe = True

    def note_fn(self, f: types.FunctionType) -> None:
        if id(f) not in self.funcs:
            self.funcs[id(f)] = (f, _fn_state(f))

    def unwrap(self, fn: types.FunctionType) -> Any:
        """``_unwrap(fn)``, noting the state of every function along the ``__wrapped__`` chain."""
        f = fn
        for _ in range(100):
            self.note_fn(f)
            inner = f.__dict__.get("__wrapped__", _MISSING)
            if inner is _MISSING:
                return f
            if not isinstance(inner, types.FunctionType):
                break
            f = inner
        self.safe = False  # a non-function link or a very long (or cyclic) chain: not recorded
        return _unwrap(fn)


class _Memo:
    """A remembered digest of one function and the reads it was computed from."""

    __slots__ = ("ref", "digest", "root", "funcs", "dicts", "cells", "stats")

    def __init__(self, ref: weakref.ref, digest: bytes, root: tuple, ctx: _Ctx, dicts: tuple) -> None:
        self.ref = ref
        self.digest = digest
        self.root = root  # the function's own state, checked against the function passed in
        fn = ref()
        self.funcs = tuple(entry for entry in ctx.funcs.values() if entry[0] is not fn)
        self.dicts = dicts
        self.cells = tuple(ctx.cells)
        self.stats = tuple(ctx.stats)

    def valid(self, fn: types.FunctionType) -> bool:
        """True while every recorded read still finds the identical object."""
        if not _same_fn(fn, self.root):
            return False
        for f, state in self.funcs:
            if not _same_fn(f, state):
                return False
        for d, k, v in self.dicts:
            if d.get(k, _MISSING) is not v:
                return False
        for cell, v in self.cells:
            try:
                if cell.cell_contents is not v:
                    return False
            except ValueError:
                if v is not _EMPTY:
                    return False
        return not self.stats or all(_file_stamp(path) == stamp for path, stamp in self.stats)


class Fingerprinter:
    """Computes code fingerprints of task functions; values are hashed by ``hasher``."""

    def __init__(self, hasher: ValueHasher) -> None:
        self.hasher = hasher
        if getattr(hasher, "function_token", None) is None:
            hasher.function_token = self.digest
        if getattr(hasher, "class_token", None) is None:  # classes in argument values count by their code
            hasher.class_token = _class_digest
        self._local = threading.local()
        self._fast: dict[int, _Memo] = {}  # id(function) -> remembered digest (module docstring)

    # public API -------------------------------------------------------------------------
    def digest(self, fn: Callable) -> bytes:
        """16-byte digest of ``fn``'s code identity (code, helpers, globals, closure, libraries)."""
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:  # re-entered through the hasher (a function inside a global value)
            return self._digest(fn, ctx)
        memo = self._fast.get(id(fn))
        if memo is not None and memo.ref() is fn and memo.valid(fn):
            return memo.digest
        self._local.ctx = ctx = _Ctx(fn)
        try:
            out = self._digest(fn, ctx)
        finally:
            self._local.ctx = None
        if ctx.safe and isinstance(fn, types.FunctionType):
            self._remember(fn, out, ctx)
        return out

    def hexdigest(self, fn: Callable) -> str:
        """Hex form of :meth:`digest`."""
        return self.digest(fn).hex()

    def helpers(self, fn: Callable) -> list[Callable]:
        """User functions ``fn`` reaches through globals, closures, defaults, user modules and classes."""
        root = _unwrap(fn)
        found: dict[int, Callable] = {id(root): root}
        todo = [root] if isinstance(root, types.FunctionType) else []
        while todo:
            f = todo.pop()
            st = _static(f.__code__)
            for _kind, _name, value in self._refs(f, st):
                for g in self._reachable(value, st.attr_names):
                    if id(g) not in found:
                        found[id(g)] = g
                        todo.append(g)
        del found[id(root)]
        return list(found.values())

    # internals ----------------------------------------------------------------------------
    def _remember(self, fn: types.FunctionType, out: bytes, ctx: _Ctx) -> None:
        """Keep ``out`` for the fast path; the entry goes when ``fn`` dies (or when evicted)."""
        dicts: dict[tuple[int, str], tuple[dict, str, Any]] = {}
        for read in ctx.dicts:
            first = dicts.setdefault((id(read[0]), read[1]), read)
            if first[2] is not read[2]:  # changed while the digest was computed
                return
        memos, key = self._fast, id(fn)

        def drop(ref: weakref.ref, key: int = key, memos: dict = memos) -> None:
            memo = memos.get(key)
            if memo is not None and memo.ref is ref:
                del memos[key]

        root = ctx.funcs[key][1]  # digest() noted it first; kept apart so fn is not held strongly
        memo = _Memo(weakref.ref(fn, drop), out, root, ctx, tuple(dicts.values()))
        memos.pop(key, None)
        if len(memos) >= _FAST_MAX:  # bounded: functions kept alive by their own reads go too
            for old in list(memos)[: _FAST_MAX // 4]:  # the oldest quarter
                memos.pop(old, None)
        memos[key] = memo

    def _digest(self, fn: Callable, ctx: _Ctx) -> bytes:
        target = ctx.unwrap(fn) if isinstance(fn, types.FunctionType) else _unwrap(fn)
        if _is_user_function(target):
            out, _ = self._function(target, ctx)
            if out is not None:
                return out
        s = _Stream("callable")
        self._value(s, fn, None, "value", "", (), ctx, top=True)
        return s.digest()

    @staticmethod
    def _refs(
        fn: types.FunctionType, st: _Static, with_globals: bool = True, cells: list | None = None
    ) -> Iterator[tuple[str, str, Any]]:
        """(kind, name, value) of everything ``fn`` reads besides its arguments (cell reads into ``cells``)."""
        if with_globals:
            g = fn.__globals__
            for name in st.global_names:
                value = g.get(name, _MISSING)
                yield "global variable", name, _BUILTINS.get(name, _MISSING) if value is _MISSING else value
        code = fn.__code__
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                value = _EMPTY
            if cells is not None:
                cells.append((cell, value))
            yield "closure variable", name, value
        if fn.__defaults__:
            params = code.co_varnames[: code.co_argcount][-len(fn.__defaults__) :]
            yield from (("default of parameter", p, v) for p, v in zip(params, fn.__defaults__))
        if fn.__kwdefaults__:
            yield from (("default of parameter", p, v) for p, v in sorted(fn.__kwdefaults__.items()))

    def _reachable(self, value: Any, attrs: tuple[str, ...]) -> Iterator[types.FunctionType]:
        if isinstance(value, types.MethodType):
            value = value.__func__
        if isinstance(value, types.ModuleType) and not is_library_module(value.__name__):
            d = vars(value)
            yield from (d[a] for a in attrs if a in d and _is_user_function(d[a]))
        elif isinstance(value, type) and not is_library_module(value.__module__):
            for a in attrs:
                f = inspect.getattr_static(value, a, None)
                f = f.__func__ if isinstance(f, (staticmethod, classmethod)) else f
                if _is_user_function(f):
                    yield f
        elif callable(value) and not isinstance(value, type):
            value = _unwrap(value.func if isinstance(value, functools.partial) else value)
            if _is_user_function(value):
                yield value

    def _function(self, fn: types.FunctionType, ctx: _Ctx) -> tuple[bytes | None, int]:
        """Digest of a user function and the lowest stack depth it referred back to (None: on the stack)."""
        key = id(fn)
        depth = ctx.depth.get(key)
        if depth is not None:
            return None, depth
        hit = ctx.memo.get(key)
        if hit is not None:
            return hit, _BIG
        depth = ctx.depth[key] = len(ctx.depth)
        low = _BIG
        try:
            st = _static(fn.__code__)
            s = _Stream("function")
            s.put(st.code_digest)
            g, attrs, kind, reads = fn.__globals__, st.attr_names, "global variable", ctx.dicts
            for name, item in zip(st.global_names, st.global_keys):  # the hot loop, kept inline
                s.append(item)
                value = g.get(name, _MISSING)
                if value is _MISSING:
                    reads.append((g, name, _MISSING))
                    value = _BUILTINS.get(name, _MISSING)
                    reads.append((_BUILTINS, name, value))
                else:
                    reads.append((g, name, value))
                r = self._value(s, value, fn, kind, name, attrs, ctx)
                if r < low:
                    low = r
            if fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__:  # noted by ctx.note_fn
                for kind, name, value in self._refs(fn, st, with_globals=False, cells=ctx.cells):
                    s.put(kind, name)
                    low = min(low, self._value(s, value, fn, kind, name, attrs, ctx))
            out = s.digest()
        finally:
            del ctx.depth[key]
        if low >= depth:  # no reference to a function further up the stack: reusable
            ctx.memo[key] = out
        return out, low

    def _library(self, s: _Stream, kind: str, module: str, qualname: str) -> None:
        s.append(_lib_token(kind, module, qualname))

    def _value(
        self, s: _Stream, value: Any, owner: Any, kind: str, name: str, attrs: tuple, ctx: _Ctx, top=False
    ) -> int:
        """Write the token of one referenced value; return the lowest stack depth it referred back to."""
        simple = _SIMPLE.get(type(value))
        if simple is not None:
            s.put(type(value).__name__, simple(value))
            return _BIG
        if value is _MISSING or value is _EMPTY:
            s.put("missing" if value is _MISSING else "empty")
            return _BIG
        if isinstance(value, types.FunctionType):
            value = ctx.unwrap(value)  # notes the state of the function(s) for the memo
        if isinstance(value, types.FunctionType):
            if is_library_module(value.__module__):
                self._library(s, "library-function", value.__module__, value.__qualname__)
                return _BIG
            out, low = self._function(value, ctx)
            if out is None:
                s.put("recursive", value.__module__ or "", value.__qualname__)
            else:
                s.put("function", out)
            return low
        if isinstance(value, types.ModuleType):
            if is_library_module(value.__name__):
                self._library(s, "library-module", value.__name__, "")
                return _BIG
            d, reads = vars(value), ctx.dicts
            file = d.get("__file__", _MISSING)
            reads.append((d, "__file__", file))
            if getattr(value, "__file__", None) is not (None if file is _MISSING else file):
                ctx.safe = False  # served by a module __getattr__: not a recorded read
            s.put("user-module", value.__name__, _module_file_digest(value, ctx.stats))
            low = _BIG
            for a in attrs:  # functions used as module.attr: follow them too
                f = d.get(a, _MISSING)
                reads.append((d, a, f))
                if isinstance(f, types.FunctionType):
                    ctx.note_fn(f)  # its __module__ decides whether it is followed
                if _is_user_function(f):
                    s.put("attribute", a)
                    low = min(low, self._value(s, f, owner, kind, f"{name}.{a}", (), ctx))
            return low
        if isinstance(value, type):
            if is_library_module(value.__module__):
                self._library(s, "library-class", value.__module__, value.__qualname__)
            else:
                s.put("user-class", _class_digest(value))
            return _BIG
        if isinstance(value, types.MethodType):
            s.put("method")
            low = self._value(s, value.__func__, owner, kind, name, attrs, ctx)
            return min(low, self._value(s, value.__self__, owner, kind, f"{name}.__self__", attrs, ctx))
        if isinstance(value, types.BuiltinFunctionType):
            bound = value.__self__
            module = (
                value.__module__ or getattr(bound, "__name__", None) or type(bound).__module__ or "builtins"
            )
            self._library(s, "builtin", module, value.__qualname__)
            if bound is None or isinstance(bound, types.ModuleType):
                return _BIG
            return self._value(s, bound, owner, kind, f"{name}.__self__", attrs, ctx)
        if callable(value):
            module = getattr(value, "__module__", None) or type(value).__module__
            label = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
            if isinstance(label, str) and isinstance(module, str) and is_library_module(module):
                self._library(s, "library-callable", module, label)  # ufuncs, dispatchers, descriptors
                return _BIG
            ctx.safe = False  # an arbitrary callable object: its attributes are not recorded
            inner = _unwrap(value)
            if inner is not value:
                return self._value(s, inner, owner, kind, name, attrs, ctx)
        if top:  # digest() of a non-function: the hasher called us for it, do not loop back
            raise UnhashableError(
                f"cannot fingerprint the callable {value!r} of type {type(value).__qualname__}"
            )
        if not _immutable(value):  # the digest depends on content that may change in place
            ctx.safe = False
        cls = type(value)
        if not is_library_module(cls.__module__):  # an instance of a user class: its code counts too
            s.put("instance-of", _class_digest(cls))
        try:
            s.put("value", self.hasher.digest(value))
        except UnhashableError as e:
            if getattr(e, "_ndustria_fingerprint", False):
                raise
            where = _qualname(owner) if owner is not None else "?"
            via = "" if owner is _unwrap(ctx.root) else f" (reached from {_qualname(_unwrap(ctx.root))})"
            err = UnhashableError(
                f"function {where}{via} reads {kind} {name!r}, a {type(value).__qualname__}, which cannot be "
                f"fingerprinted: {e}. Pass it to the task as an argument instead, give it a "
                f"__ndustria_token__, or declare the task with an explicit version=...",
                where=e.where,
            )
            err._ndustria_fingerprint = True  # type: ignore[attr-defined]
            raise err from e
        return _BIG
