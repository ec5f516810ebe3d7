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

Each kind of object read has its own handler (``Fingerprinter._HANDLERS``).

The static part (source parsing, bytecode scan) is cached per code object; the values of
globals, cells and attributes are read again on every call, so changing one changes the digest.

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

import ast
import builtins
import contextlib
import dis
import enum
import functools
import importlib
import importlib.metadata
import importlib.util
import inspect
import linecache
import os
import platform
import site
import sys
import sysconfig
import textwrap
import threading
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import xxhash

from ndustria.errors import NdustriaWarning, UnhashableError

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
    try:  # the usual case, a distribution named like its package: no scan of every installed package
        return f"{top} {importlib.metadata.version(top)}"
    except Exception:  # noqa: BLE001 - broken or missing metadata must not break fingerprints
        pass
    candidates: list[str] = []
    with contextlib.suppress(Exception):
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

Chain = tuple[str, ...]  # attribute names read after a name, in order: settings.SCALE -> ("SCALE",)


class _Static(NamedTuple):
    code_digest: bytes
    global_names: tuple[str, ...]  # sorted
    global_keys: tuple[bytes, ...]  # their pre-encoded stream items
    chains: dict[str, tuple[Chain, ...]]  # global or free variable name -> the attribute chains read on it
    imports: tuple[tuple[str, tuple[Chain, ...]], ...]  # modules imported inside the function, their chains


_STATIC = _IdCache()
_LOAD_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_LOCAL_LOADS = frozenset({"LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_FAST_CHECK"})
_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL"})
_NO_CHAINS: tuple[Chain, ...] = ((),)  # no attribute information: the value is used as a whole


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
    """Normalized AST dump of a function's source, or None when it cannot be found reliably
    (no source, or the file on disk no longer holds the code that is loaded)."""
    try:
        tree = _parse_source(inspect.getsource(code))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    if not _loaded_matches_file(code):
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


# -- the loaded code against the file on disk

_FILE_CODES: dict[str, tuple[tuple[int, int, int], dict[str, list[types.CodeType]]]] = {}
_WARNED: set[tuple[str, tuple[int, int, int]]] = set()
_FILE_LOCK = threading.Lock()


def _file_stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _qualname_of(code: types.CodeType) -> str:
    return getattr(code, "co_qualname", code.co_name)


def _compiled_file(path: str, stamp: tuple[int, int, int]) -> dict[str, list[types.CodeType]]:
    """The code objects the file at ``path`` compiles to now, by qualified name (cached per stamp)."""
    with _FILE_LOCK:
        hit = _FILE_CODES.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
    index: dict[str, list[types.CodeType]] = {}
    try:
        top = compile("".join(linecache.getlines(path)), path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError):
        top = None
    if top is not None:
        for co in _codes(top):
            index.setdefault(_qualname_of(co), []).append(co)
    with _FILE_LOCK:
        _FILE_CODES[path] = (stamp, index)
    return index


def _const_equal(a: object, b: object) -> bool:
    if isinstance(a, types.CodeType):
        return isinstance(b, types.CodeType) and _same_code(a, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, (tuple, frozenset)):
        return len(a) == len(b) and all(_const_equal(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, float):  # 0.0 == -0.0 and nan != nan: compare the bits
        return a.hex() == b.hex()  # type: ignore[attr-defined]
    return a == b


def _same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Same bytecode, names and constants (line numbers aside): the same code."""
    return (
        a.co_code == b.co_code
        and a.co_names == b.co_names
        and a.co_varnames == b.co_varnames
        and a.co_freevars == b.co_freevars
        and a.co_cellvars == b.co_cellvars
        and a.co_flags == b.co_flags
        and a.co_argcount == b.co_argcount
        and a.co_kwonlyargcount == b.co_kwonlyargcount
        and a.co_posonlyargcount == b.co_posonlyargcount
        and len(a.co_consts) == len(b.co_consts)
        and all(_const_equal(x, y) for x, y in zip(a.co_consts, b.co_consts))
    )


def _loaded_matches_file(code: types.CodeType) -> bool:
    """False when ``code`` comes from a file on disk that no longer compiles to it (edited after import).

    Code without a file (notebook cells, which IPython keeps in linecache, ``exec`` of strings)
    is taken as its registered source. A mismatch warns once per file version.
    """
    path = code.co_filename
    stamp = _file_stamp(path)
    if stamp is None:
        return True
    candidates = _compiled_file(path, stamp).get(_qualname_of(code), ())
    if any(_same_code(code, other) for other in candidates):
        return True
    if (path, stamp) not in _WARNED:
        _WARNED.add((path, stamp))
        warnings.warn(
            f"{path} changed on disk after it was imported: ndustria keys the code that is loaded (its "
            f"bytecode), not the new text. Restart the kernel or process, importlib.reload() the module or "
            f"use %autoreload to run the edited code.", NdustriaWarning, stacklevel=2)
    return False


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


def _chain_after(ins: list[dis.Instruction], j: int) -> Chain:
    chain = []
    while j < len(ins) and ins[j].opname in _ATTR_OPS:
        chain.append(ins[j].argval)
        j += 1
    return tuple(chain)


def _scan(code: types.CodeType) -> tuple[set[str], dict[str, set[Chain]], dict[str, set[Chain]]]:
    """Names read as globals; the attribute chains read on globals and free variables; on modules
    imported inside the code (``import m`` / ``from m import f``), by the module's name."""
    names: set[str] = set()
    chains: dict[str, set[Chain]] = {}
    imports: dict[str, set[Chain]] = {}
    bound: dict[str, tuple[str, Chain]] = {}  # local name -> (module, chain prefix) of an import
    free = set(code.co_freevars)
    for co in _codes(code):
        ins = list(dis.get_instructions(co))
        stored = {i.argval for i in ins if i.opname == "STORE_NAME"}  # class bodies: their own names
        for k, i in enumerate(ins):
            op = i.opname
            if op == "IMPORT_NAME":
                _bind_import(ins, k, bound, imports)
            elif op in _LOAD_OPS:
                if op == "LOAD_NAME" and i.argval in stored:
                    continue
                names.add(i.argval)
                chains.setdefault(i.argval, set()).add(_chain_after(ins, k + 1))
            elif op in _LOCAL_LOADS:
                if i.argval in bound:
                    module, prefix = bound[i.argval]
                    imports.setdefault(module, set()).add(prefix + _chain_after(ins, k + 1))
                elif i.argval in free:
                    chains.setdefault(i.argval, set()).add(_chain_after(ins, k + 1))
    return names, chains, imports


def _bind_import(ins: list[dis.Instruction], k: int, bound: dict[str, tuple[str, Chain]],
                 imports: dict[str, set[Chain]]) -> None:
    """Note what the local names bound by the import at ``ins[k]`` stand for."""
    fromlist = ins[k - 1].argval if k and ins[k - 1].opname == "LOAD_CONST" else None
    name = ins[k].argval
    if not isinstance(name, str) or (k >= 2 and ins[k - 2].opname == "LOAD_CONST" and ins[k - 2].argval):
        return  # a relative import inside a function: rare, left to the module's own fingerprint
    module = name if fromlist else name.partition(".")[0]  # `import a.b` binds a
    imports.setdefault(module, set())
    j = k + 1
    if j < len(ins) and ins[j].opname in _STORES:
        bound[ins[j].argval] = (module, ())
        return
    while j + 1 < len(ins) and ins[j].opname == "IMPORT_FROM":
        attr = ins[j].argval
        if ins[j + 1].opname in _STORES:
            bound[ins[j + 1].argval] = (module, (attr,))
        imports[module].add((attr,))
        j += 2


def _static(code: types.CodeType) -> _Static:
    hit = _STATIC.get(code)
    if hit is not None:
        return hit
    names, chains, imports = _scan(code)
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
    frozen = {n: tuple(sorted(c)) for n, c in chains.items()}
    mods = tuple((m, tuple(sorted(c)) or _NO_CHAINS) for m, c in sorted(imports.items()))
    return _STATIC.put(code, _Static(s.digest(), names_, keys, frozen, mods))


# ----------------------------------------------------------------------------- dynamic part


def _unwrap(obj: Any) -> Any:
    try:
        return inspect.unwrap(obj)
    except (ValueError, TypeError):
        return obj


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None) or '?'}.{getattr(obj, '__qualname__', None) or getattr(obj, '__name__', '?')}"


def _home(f: types.FunctionType) -> str:
    """The module a function's code lives in (``functools.wraps`` copies ``__module__``, not globals)."""
    name = f.__globals__.get("__name__")
    return name if isinstance(name, str) else (f.__module__ or "")


def _is_user_function(obj: Any) -> bool:
    return isinstance(obj, types.FunctionType) and not is_library_module(_home(obj))


def _is_user_class(obj: Any) -> bool:
    return isinstance(obj, type) and not is_library_module(getattr(obj, "__module__", "") or "")


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
        self.dicts: list[tuple[Any, str, Any]] = []  # (mapping, key, value or _MISSING)
        self.shapes: list[tuple[Any, tuple]] = []  # (mapping, its keys) of namespaces hashed whole
        self.cells: list[tuple[types.CellType, Any]] = []  # (cell, contents or _EMPTY)
        self.funcs: dict[int, tuple[types.FunctionType, tuple]] = {}  # id -> (function, _fn_state)
        self.safe = True
        self.reentry_low = _BIG
        self.seen: list[types.FunctionType] = []  # user functions digested, in order (helpers())
        self.cyclic = False  # this digest met an object on the stack (recursion), directly or below
        self.cyclic_ids: set[int] = set()  # finished digests (in memo) that met one

    def sub(self, root: Any) -> _Ctx:
        """A context for one function or class inside this digest: the same stack and finished digests,
        its own reads and safety, so that its digest can be remembered on its own."""
        out = _Ctx(root)
        out.depth, out.memo, out.cyclic_ids = self.depth, self.memo, self.cyclic_ids
        return out

    def absorb(self, sub: _Ctx) -> None:
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
            self.funcs[id(f)] = (f, _fn_state(f))

    def read(self, mapping: Any, key: str) -> Any:
        value = mapping.get(key, _MISSING)
        self.dicts.append((mapping, key, value))
        return value


class _Memo:
    """A remembered digest of one function or class and the reads it was computed from."""

    __slots__ = ("ref", "digest", "root", "funcs", "dicts", "shapes", "cells", "seen", "acyclic")

    def __init__(self, ref: weakref.ref, digest: bytes, root: tuple | None, ctx: _Ctx, dicts: tuple,
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

    def replay(self, ctx: _Ctx) -> None:
        """Record this digest's reads in ``ctx``, whose digest now depends on them too."""
        ctx.dicts.extend(self.dicts)
        ctx.shapes.extend(self.shapes)
        ctx.cells.extend(self.cells)
        for f, state in self.funcs:
            ctx.funcs.setdefault(id(f), (f, state))
        ctx.seen.extend(self.seen)

    def valid(self, obj: Any) -> bool:
        """True while every recorded read still finds the identical object."""
        if self.root is not None and not _same_fn(obj, self.root):
            return False
        for f, state in self.funcs:
            if not _same_fn(f, state):
                return False
        for d, k, v in self.dicts:
            if d.get(k, _MISSING) is not v:
                return False
        for d, keys in self.shapes:
            if len(d) != len(keys) or tuple(d) != keys:
                return False
        for cell, v in self.cells:
            try:
                if cell.cell_contents is not v:
                    return False
            except ValueError:
                if v is not _EMPTY:
                    return False
        return True


# members of a class namespace that are not its code or data (or are covered by other members)
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
        self._fast: dict[int, _Memo] = {}  # id(function or class) -> remembered digest (module docstring)

    # public API -------------------------------------------------------------------------
    def digest(self, fn: Callable) -> bytes:
        """16-byte digest of ``fn``'s code identity (code, helpers, globals, closure, libraries)."""
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:  # re-entered through the hasher (a function inside a global value)
            return self._reentered(fn, ctx)
        memo = self._fast.get(id(fn))
        if memo is not None and memo.ref() is fn and memo.valid(fn):
            return memo.digest
        self._local.ctx = ctx = _Ctx(fn)
        try:
            out = self._digest(fn, ctx)
        finally:
            self._local.ctx = None
        memo = self._fast.get(id(fn))
        fresh = memo is not None and memo.acyclic and memo.ref() is fn and memo.digest == out
        if ctx.safe and isinstance(fn, types.FunctionType) and not fresh:
            self._remember(fn, out, ctx, ctx.funcs[id(fn)][1] if id(fn) in ctx.funcs else _fn_state(fn))
        return out

    def hexdigest(self, fn: Callable) -> str:
        """Hex form of :meth:`digest`."""
        return self.digest(fn).hex()

    def class_digest(self, cls: type) -> bytes:
        """16-byte digest of a class's code: its members (methods with what they reach, class
        attributes) and its bases; library classes by module, name and package version."""
        ctx = getattr(self._local, "ctx", None)
        if ctx is not None:
            return self._reentered(cls, ctx)
        if not _is_user_class(cls):
            s = _Stream("class-token")
            self._library(s, "library-class", cls.__module__, cls.__qualname__)
            return s.digest()
        memo = self._fast.get(id(cls))
        if memo is not None and memo.ref() is cls and memo.valid(cls):
            return memo.digest
        self._local.ctx = ctx = _Ctx(cls)
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
        if not _is_user_function(fn):
            return {"code": self.digest(fn)}
        ctx = _Ctx(fn)
        self._local.ctx = ctx
        try:
            st = _static(fn.__code__)
            out = {"code": st.code_digest}
            ctx.depth[id(fn)] = 0
            for kind, name, value, chains in self._reads(fn, st, ctx):
                s = _Stream("part")
                self._value(s, value, fn, kind, name, chains, ctx)
                out[f"{kind} {name!r}" if name else kind] = s.digest()
        finally:
            self._local.ctx = None
        return out

    def helpers(self, fn: Callable) -> list[Callable]:
        """User functions ``fn`` reaches (through globals, closures, defaults, imports, attribute
        chains, the classes it uses and the functions it wraps), in the order they are met."""
        ctx = _Ctx(fn)
        self._local.ctx = ctx
        try:
            self._digest(fn, ctx)
        finally:
            self._local.ctx = None
        root = fn if isinstance(fn, types.FunctionType) else _unwrap(fn)
        out: list[Callable] = []
        for f in ctx.seen:
            if f is not root and f not in out:
                out.append(f)
        return out

    # internals ----------------------------------------------------------------------------
    def _remember(self, obj: Any, out: bytes, ctx: _Ctx, root: tuple | None, acyclic: bool = False) -> None:
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
        memo = _Memo(ref, out, root, ctx, tuple(dicts.values()), acyclic)
        memos.pop(key, None)
        if len(memos) >= _FAST_MAX:  # bounded: functions kept alive by their own reads go too
            for old in list(memos)[: _FAST_MAX // 4]:  # the oldest quarter
                memos.pop(old, None)
        memos[key] = memo

    def _reentered(self, obj: Any, ctx: _Ctx) -> bytes:
        """A function or class the hasher met inside a value, during a digest."""
        if _is_user_function(obj) or _is_user_class(obj):  # the same bytes as a top-level digest of it
            if isinstance(obj, types.FunctionType):
                ctx.note_fn(obj)
                out, low = self._function(obj, ctx)
            else:
                out, low = self._class(obj, ctx)
            if out is not None:
                ctx.reentry_low = min(ctx.reentry_low, low)
                return out
        s = _Stream("callable" if not isinstance(obj, type) else "class-token")
        low = self._value(s, obj, None, "value", "", _NO_CHAINS, ctx, top=not isinstance(obj, type))
        ctx.reentry_low = min(ctx.reentry_low, low)
        return s.digest()

    def _digest(self, fn: Callable, ctx: _Ctx) -> bytes:
        if _is_user_function(fn):
            ctx.note_fn(fn)
            out, _ = self._function(fn, ctx)
            if out is not None:
                return out
        s = _Stream("callable")
        self._value(s, fn, None, "value", "", _NO_CHAINS, ctx, top=True)
        return s.digest()

    @staticmethod
    def _reads(fn: types.FunctionType, st: _Static, ctx: _Ctx,
               with_globals: bool = True) -> Iterator[tuple[str, str, Any, tuple[Chain, ...]]]:
        """(kind, name, value, attribute chains) of everything ``fn`` reads besides its arguments."""
        if with_globals:
            g = fn.__globals__
            for name in st.global_names:
                value = ctx.read(g, name)
                if value is _MISSING:
                    value = ctx.read(_BUILTINS, name)
                yield "global variable", name, value, st.chains.get(name, _NO_CHAINS)
        code = fn.__code__
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                value = _EMPTY
            ctx.cells.append((cell, value))
            yield "closure variable", name, value, st.chains.get(name, _NO_CHAINS)
        if fn.__defaults__:
            params = code.co_varnames[: code.co_argcount][-len(fn.__defaults__) :]
            for p, v in zip(params, fn.__defaults__):
                yield "default of parameter", p, v, _NO_CHAINS
        if fn.__kwdefaults__:
            for p, v in sorted(fn.__kwdefaults__.items()):
                yield "default of parameter", p, v, _NO_CHAINS
        for module, chains in st.imports:
            yield f"module {module!r} imported inside", "", _imported(module, ctx), chains
        wrapped = fn.__dict__.get("__wrapped__", _MISSING)
        if wrapped is not _MISSING:
            yield "wrapped function", "", wrapped, _NO_CHAINS

    def _isolated(self, obj: Any, ctx: _Ctx, body: Callable[[Any, _Ctx], tuple[bytes, int]],
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
            return hit, _BIG
        memo = self._fast.get(key)
        if memo is not None and memo.acyclic and memo.ref() is obj and memo.valid(obj):
            memo.replay(ctx)
            if isinstance(obj, types.FunctionType):
                ctx.seen.append(obj)
            ctx.memo[key] = memo.digest
            return memo.digest, _BIG
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

    def _function(self, fn: types.FunctionType, ctx: _Ctx) -> tuple[bytes | None, int]:
        """Digest of a user function and the lowest stack depth it referred back to (None: on the stack)."""
        return self._isolated(fn, ctx, self._function_body, ctx.funcs[id(fn)][1] if id(fn) in ctx.funcs
                              else _fn_state(fn))

    def _function_body(self, fn: types.FunctionType, ctx: _Ctx) -> tuple[bytes, int]:
        ctx.seen.append(fn)
        low = _BIG
        st = _static(fn.__code__)
        s = _Stream("function")
        s.put(st.code_digest)
        g, kind, reads, chains = fn.__globals__, "global variable", ctx.dicts, st.chains
        for name, item in zip(st.global_names, st.global_keys):  # the hot loop, kept inline
            s.append(item)
            value = g.get(name, _MISSING)
            if value is _MISSING:
                reads.append((g, name, _MISSING))
                value = _BUILTINS.get(name, _MISSING)
                reads.append((_BUILTINS, name, value))
            else:
                reads.append((g, name, value))
            r = self._value(s, value, fn, kind, name, chains.get(name, _NO_CHAINS), ctx)
            if r < low:
                low = r
        if fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__ or st.imports or "__wrapped__" in fn.__dict__:
            for kind_, name, value, chains_ in self._reads(fn, st, ctx, with_globals=False):
                s.put(kind_, name)
                low = min(low, self._value(s, value, fn, kind_, name, chains_, ctx))
        return s.digest(), low

    def _library(self, s: _Stream, kind: str, module: str, qualname: str) -> None:
        s.append(_lib_token(kind, module, qualname))

    # -- one handler per kind of value (dispatched by _value) --------------------------------
    def _value(self, s: _Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
               ctx: _Ctx, top: bool = False) -> int:
        """Write the token of one value read by ``owner``; return the lowest stack depth it referred back to."""
        simple = _SIMPLE.get(type(value))
        if simple is not None:
            s.put(type(value).__name__, simple(value))
            return _BIG
        if value is _MISSING or value is _EMPTY:
            s.put("missing" if value is _MISSING else "empty")
            return _BIG
        handler = self._HANDLERS.get(type(value))
        if handler is None:
            handler = _kind_of(value)
        return handler(self, s, value, owner, kind, name, chains, ctx, top)

    def _v_function(self, s: _Stream, fn: types.FunctionType, owner: Any, kind: str, name: str,
                    chains: tuple[Chain, ...], ctx: _Ctx, top: bool) -> int:
        ctx.note_fn(fn)
        if not _is_user_function(fn):
            self._library(s, "library-function", _home(fn), fn.__qualname__)
            wrapped = fn.__dict__.get("__wrapped__", _MISSING)  # a library decorator around user code
            if wrapped is _MISSING:
                return _BIG
            s.put("wrapped")
            return self._value(s, wrapped, owner, kind, f"{name}.__wrapped__", _NO_CHAINS, ctx)
        out, low = self._function(fn, ctx)
        if out is None:
            s.put("recursive", fn.__module__ or "", fn.__qualname__)
        else:
            s.put("function", out)
        return low

    def _v_module(self, s: _Stream, mod: types.ModuleType, owner: Any, kind: str, name: str,
                  chains: tuple[Chain, ...], ctx: _Ctx, top: bool) -> int:
        if is_library_module(mod.__name__):
            self._library(s, "library-module", mod.__name__, "")
            return _BIG
        s.put("user-module", mod.__name__)
        d, low = vars(mod), _BIG
        if any(not c for c in chains):  # used as a whole (passed on, getattr(mod, ...)): all it defines
            low = self._namespace(s, mod, owner, kind, name, ctx)
        for attr in sorted({c[0] for c in chains if c}):
            value = ctx.read(d, attr)
            if value is _MISSING and "__getattr__" in d:  # PEP 562: an attribute made on request
                ctx.safe = False
                value = getattr(mod, attr, _MISSING)
            rest = tuple(c[1:] for c in chains if c and c[0] == attr)
            s.put("attribute", attr)
            low = min(low, self._value(s, value, owner, kind, f"{name}.{attr}", rest, ctx))
        return low

    def _namespace(self, s: _Stream, mod: types.ModuleType, owner: Any, kind: str, name: str, ctx: _Ctx) -> int:
        """A user module as a whole: the functions and classes it defines and its plain values."""
        key = id(mod)
        if key in ctx.depth:
            s.put("recursive-module", mod.__name__)
            ctx.cyclic = True
            return ctx.depth[key]
        ctx.depth[key] = len(ctx.depth)
        d, low = vars(mod), _BIG
        try:
            ctx.shapes.append((d, tuple(d)))
            for attr in sorted(a for a in d if isinstance(a, str) and a not in _MODULE_SKIP):
                value = ctx.read(d, attr)
                if isinstance(value, types.FunctionType):
                    if _home(value) != mod.__name__:
                        continue  # imported: it counts where it is used
                elif isinstance(value, type):
                    if value.__module__ != mod.__name__:
                        continue
                elif isinstance(value, types.ModuleType) or callable(value) or not _immutable(value):
                    continue  # other modules and objects count where they are read
                s.put("member", attr)
                low = min(low, self._value(s, value, owner, kind, f"{name}.{attr}", _NO_CHAINS, ctx))
        finally:
            del ctx.depth[key]
        return low

    def _v_class(self, s: _Stream, cls: type, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                 ctx: _Ctx, top: bool) -> int:
        if not _is_user_class(cls):
            self._library(s, "library-class", cls.__module__, cls.__qualname__)
            return _BIG
        out, low = self._class(cls, ctx)
        if out is None:
            s.put("recursive-class", cls.__module__, cls.__qualname__)
        else:
            s.put("user-class", out)
        return low

    def _class(self, cls: type, ctx: _Ctx) -> tuple[bytes | None, int]:
        """Digest of a user class: qualified name, metaclass, bases, every member (sorted by name)."""
        return self._isolated(cls, ctx, self._class_body, None)

    def _class_body(self, cls: type, ctx: _Ctx) -> tuple[bytes, int]:
        low = _BIG
        s = _Stream("class")
        s.put(cls.__qualname__)
        label = cls.__qualname__
        meta = type(cls)
        if meta is not type:
            s.put("metaclass")
            low = min(low, self._value(s, meta, cls, "metaclass of", label, _NO_CHAINS, ctx))
        for base in cls.__bases__:
            s.put("base")
            low = min(low, self._value(s, base, cls, "base class of", label, _NO_CHAINS, ctx))
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

    def _member(self, s: _Stream, value: Any, cls: type, name: str, ctx: _Ctx) -> int:
        """One entry of a class namespace: descriptors by the functions they hold."""
        kind = "class attribute"
        if isinstance(value, (staticmethod, classmethod)):
            s.put(type(value).__name__)
            return self._value(s, value.__func__, cls, kind, name, _NO_CHAINS, ctx)
        if isinstance(value, property):
            s.put("property")
            return min(self._value(s, f, cls, kind, name, _NO_CHAINS, ctx) for f in (value.fget, value.fset, value.fdel))
        if isinstance(value, (functools.cached_property, functools.partialmethod)):
            s.put(type(value).__name__)
            low = self._value(s, value.func, cls, kind, name, _NO_CHAINS, ctx)
            if isinstance(value, functools.partialmethod):
                low = min(low, self._v_plain(s, (value.args, value.keywords), cls, kind, name, _NO_CHAINS, ctx, False))
            return low
        if isinstance(value, _SLOT_TYPES):  # __slots__ entries: their names are in __slots__
            s.put("slot")
            return _BIG
        try:
            return self._value(s, value, cls, kind, name, _NO_CHAINS, ctx)
        except UnhashableError:
            if callable(value) or isinstance(value, type):
                raise
            # runtime state kept on the class (a lock, a connection): not code, and not hashable
            s.put("opaque class attribute", _qualname(type(value)))
            ctx.safe = False
            return _BIG

    def _v_method(self, s: _Stream, value: types.MethodType, owner: Any, kind: str, name: str,
                  chains: tuple[Chain, ...], ctx: _Ctx, top: bool) -> int:
        s.put("method")
        low = self._value(s, value.__func__, owner, kind, name, _NO_CHAINS, ctx)
        return min(low, self._value(s, value.__self__, owner, kind, f"{name}.__self__", _NO_CHAINS, ctx))

    def _v_builtin(self, s: _Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                   ctx: _Ctx, top: bool) -> int:
        bound = value.__self__
        module = value.__module__ or getattr(bound, "__name__", None) or type(bound).__module__ or "builtins"
        self._library(s, "builtin", module, value.__qualname__)
        if bound is None or isinstance(bound, types.ModuleType):
            return _BIG
        return self._value(s, bound, owner, kind, f"{name}.__self__", _NO_CHAINS, ctx)

    def _v_callable(self, s: _Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                    ctx: _Ctx, top: bool) -> int:
        """A callable object that is not a function: library ones by name and version (and what they
        wrap), others by content (their class's code counts, as for any instance)."""
        module = getattr(value, "__module__", None) or type(value).__module__
        label = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        wrapped = getattr(value, "__wrapped__", _MISSING)
        if isinstance(label, str) and isinstance(module, str) and (
            is_library_module(module) or (wrapped is not _MISSING and not _is_user_class(type(value)))
        ):
            tmod = type(value).__module__  # functools.wraps copies __module__: the type tells the library
            self._library(s, "library-callable", module if is_library_module(module) else tmod, label)
            if wrapped is _MISSING:
                return _BIG  # ufuncs, dispatchers, descriptors
            s.put("wrapped")
            ctx.safe = False  # the link is an attribute of an arbitrary object: not a recorded read
            return self._value(s, wrapped, owner, kind, f"{name}.__wrapped__", _NO_CHAINS, ctx)
        ctx.safe = False  # an arbitrary callable object: its attributes are not recorded
        if top:  # digest() of a non-function: the hasher called us for it, do not loop back
            inner = _unwrap(value)
            if inner is not value:
                return self._value(s, inner, owner, kind, name, chains, ctx)
            raise UnhashableError(
                f"cannot fingerprint the callable {value!r} of type {type(value).__qualname__}"
            )
        return self._v_plain(s, value, owner, kind, name, chains, ctx, top)

    def _v_plain(self, s: _Stream, value: Any, owner: Any, kind: str, name: str, chains: tuple[Chain, ...],
                 ctx: _Ctx, top: bool) -> int:
        """Any other value, by content (an instance of a user class also by its class's code)."""
        if top:
            raise UnhashableError(f"cannot fingerprint {value!r} of type {type(value).__qualname__}: not callable")
        cls, low = type(value), _BIG
        if not _immutable(value):  # the digest depends on content that may change in place
            constant = _library_constant(value)
            if constant is not None:  # a library's module-level singleton (dataclasses.MISSING): by name
                self._library(s, "library-constant", *constant)
                return _BIG
            ctx.safe = False
        if _is_user_class(cls):  # an instance of a user class: its code counts too
            out, low = self._class(cls, ctx)
            s.put("instance-of", out if out is not None else f"recursive {cls.__qualname__}".encode())
        saved, ctx.reentry_low = ctx.reentry_low, _BIG
        try:
            s.put("value", self.hasher.digest(value))
        except UnhashableError as e:
            if getattr(e, "_ndustria_fingerprint", False):
                raise
            where = _qualname(owner) if owner is not None else "?"
            root = ctx.root if isinstance(ctx.root, (types.FunctionType, type)) else _unwrap(ctx.root)
            via = "" if owner is root else f" (reached from {_qualname(root)})"
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


_CONSTANTS: dict[int, tuple[Any, tuple[str, str] | None]] = {}


def _library_constant(value: Any) -> tuple[str, str] | None:
    """(module, name) when ``value`` is an instance of a library class bound to a name in that class's
    module (a sentinel such as ``dataclasses.MISSING``), which is how pickle would refer to it."""
    cls = type(value)
    module = getattr(cls, "__module__", None)
    if not isinstance(module, str) or not is_library_module(module):
        return None
    hit = _CONSTANTS.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    found = None
    mod = sys.modules.get(module)
    if mod is not None:
        found = next(((module, k) for k, v in vars(mod).items() if v is value), None)
    if len(_CONSTANTS) < 4096:
        _CONSTANTS[id(value)] = (value, found)  # kept alive: an id is never reused for another object
    return found


def _imported(module: str, ctx: _Ctx) -> Any:
    """The module a function imports when it runs (imported now if nothing has yet, as the task would)."""
    value = ctx.read(sys.modules, module)
    if value is _MISSING:
        try:
            value = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - the task itself will report it when it runs
            return _MISSING
        ctx.safe = False
    return value
