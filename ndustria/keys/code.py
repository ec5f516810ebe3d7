"""What a code object is, read statically: its normalized source or bytecode, and what it loads.

* :func:`static_info` (cached per code object) gives the code's digest -- the AST of its source
  with decorators and docstrings removed (comments and formatting never reach the AST), or, without
  reliable source, the code object minus line numbers -- and the names it reads as globals, the
  attribute chains it reads on them (``settings.SCALE``, ``pkg.sub.func``) and the modules it
  imports inside the function.
* Source read from a file is used only while that file still compiles to the code object in
  memory: a module edited on disk after it was imported is keyed by its loaded bytecode (with a
  :class:`~ndustria.errors.NdustriaWarning`), never by the new text.
* :class:`Stream` is the tagged byte stream every code digest is made of: each item is
  length-prefixed, never plainly concatenated.
"""

from __future__ import annotations

import ast
import contextlib
import dis
import inspect
import linecache
import os
import re
import sys
import textwrap
import threading
import types
import warnings
import weakref
from collections.abc import Iterator
from typing import Any, NamedTuple

import xxhash

from ndustria.errors import NdustriaWarning

_CO_HAS_DOCSTRING = 0x4000000  # Python >= 3.14
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def enc(item: str | bytes) -> bytes:
    b = item if isinstance(item, bytes) else item.encode("utf-8", "surrogatepass")
    return len(b).to_bytes(4, "little") + b


class Stream(list):
    """Tagged byte stream for xxh3_128: every item is length-prefixed, never plainly concatenated."""

    def __init__(self, kind: str) -> None:
        super().__init__((enc(kind),))

    def put(self, *items: str | bytes) -> None:
        self.extend(map(enc, items))

    def digest(self) -> bytes:
        return xxhash.xxh3_128_digest(b"".join(self))



class IdCache:
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



Chain = tuple[str, ...]  # attribute names read after a name, in order: settings.SCALE -> ("SCALE",)


class Static(NamedTuple):
    code_digest: bytes
    global_names: tuple[str, ...]  # sorted
    global_keys: tuple[bytes, ...]  # their pre-encoded stream items
    chains: dict[str, tuple[Chain, ...]]  # global or free variable name -> the attribute chains read on it
    imports: tuple[tuple[str, tuple[Chain, ...]], ...]  # modules imported inside the function, their chains


_STATIC = IdCache()
_LOAD_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
_LOCAL_LOADS = frozenset({"LOAD_FAST", "LOAD_DEREF", "LOAD_CLOSURE", "LOAD_FAST_CHECK"})
_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL"})
NO_CHAINS: tuple[Chain, ...] = ((),)  # no attribute information: the value is used as a whole


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


_DEF_LINE = re.compile(r"^(\s*def\s)|(\s*async\s+def\s)|(.*(?<!\w)lambda(:|\s))|^(\s*@)")


def source_of(code: types.CodeType) -> str:
    """The source text of ``code``: what ``inspect.getsource`` returns, read through ``linecache`` (which
    also holds notebook cells) without ``inspect.getmodule``'s first scan of every loaded module (tens
    of milliseconds per process). OSError when there is none."""
    linecache.checkcache(code.co_filename)  # a file edited (and reloaded) since its lines were cached
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return inspect.getsource(code)  # e.g. a module in a zip file: its loader knows the source
    lnum = code.co_firstlineno - 1
    while lnum > 0:  # inspect.findsource's walk back to the def, lambda or decorator line
        if lnum >= len(lines):
            raise OSError("lineno is out of bounds")
        if _DEF_LINE.match(lines[lnum]):
            break
        lnum -= 1
    end = _block_end(code, lines, lnum)
    if end is not None:
        return "".join(lines[lnum:end])
    return "".join(inspect.getblock(lines[lnum:]))


_INDENT = re.compile(r"[ \t]*")
_DEF_KEYWORD = re.compile(r"\s*(async\s+)?def\s")
_DEF_OR_DECORATOR = re.compile(r"\s*(@|(async\s+)?def\s)")


def _block_end(code: types.CodeType, lines: list[str], lnum: int) -> int | None:
    """Where the ``def`` starting at line index ``lnum`` ends, from the positions of its instructions
    (no tokenizing: Python's tokenizer compiles its patterns at first use, ~7 ms per process), or
    None when they cannot tell: a lambda, or a line after the last instruction still indented
    under the ``def`` (a trailing ``pass`` or string leaves no instruction); then ``inspect.getblock``
    decides, as it always did."""
    positions = getattr(code, "co_positions", None)
    first = lines[lnum]
    if positions is None or code.co_name == "<lambda>" or not _DEF_OR_DECORATOR.match(first):
        return None
    end = max((p[1] for c in _codes(code) for p in c.co_positions() if p[1] is not None), default=None)
    header = next((i for i in range(lnum, len(lines)) if _DEF_KEYWORD.match(lines[i])), None)
    if end is None or header is None or end <= header:  # e.g. a body of one docstring: located at the decorator
        return None
    indent = _INDENT.match(first).group()  # type: ignore[union-attr]
    for line in lines[end:]:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        after = _INDENT.match(line).group()  # type: ignore[union-attr]
        return end if len(after) <= len(indent) and "\t" not in indent + after else None
    return end


def _source_dump(code: types.CodeType) -> str | None:
    """Normalized AST dump of a function's source, or None when it cannot be found reliably
    (no source, or the file on disk no longer holds the code that is loaded)."""
    try:
        tree = _parse_source(source_of(code))
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


def _put_const(s: Stream, const: object) -> None:
    if isinstance(const, types.CodeType):
        _put_code(s, const)
    elif isinstance(const, tuple):
        s.put("tuple", str(len(const)))
        for item in const:
            _put_const(s, item)
    elif isinstance(const, frozenset):
        parts = []
        for item in const:
            sub = Stream("item")
            _put_const(sub, item)
            parts.append(sub.digest())
        s.put("frozenset", *sorted(parts))
    elif isinstance(const, str):
        s.put("str", const)
    elif isinstance(const, bytes):
        s.put("bytes", const)
    else:  # None, bool, int, float, complex, Ellipsis: repr is exact for these
        s.put(type(const).__name__, repr(const))


def _put_code(s: Stream, code: types.CodeType) -> None:
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


def static_info(code: types.CodeType) -> Static:
    hit = _STATIC.get(code)
    if hit is not None:
        return hit
    names, chains, imports = _scan(code)
    dump = _source_dump(code)
    if dump is not None:
        s = Stream("source")
        s.put(dump)
    else:
        s = Stream("bytecode")
        _put_code(s, code)
        s.put("{}.{}".format(*sys.version_info[:2]))
    names_ = tuple(sorted(names))
    keys = tuple(enc("global variable") + enc(n) for n in names_)
    frozen = {n: tuple(sorted(c)) for n, c in chains.items()}
    mods = tuple((m, tuple(sorted(c)) or NO_CHAINS) for m, c in sorted(imports.items()))
    return _STATIC.put(code, Static(s.digest(), names_, keys, frozen, mods))

