"""Content hashing of argument values: equal values give equal 128-bit digests in every process.

Stream format
-------------
A digest is xxh3_128 over one byte stream that starts with ``_FORMAT``. Every item
is a one-byte *tag* naming its kind, then (for variable-size items) a little-endian
8-byte length or element count, then its payload:

* scalars: ``tag + len + payload`` -- int: two's complement little-endian, float:
  IEEE-754 binary64 (every NaN written as one canonical NaN), str: UTF-8 with
  ``surrogatepass``, bytes: raw (>= 1 MiB: ``BIG + len + xxh3_128(buffer)``);
* sequences: ``tag + count`` then each element as an item, in order; fixed-shape
  values (range, datetime, partial, ...) write their tag, then their parts as items;
* dicts and sets: ``tag + count`` then the 16-byte sub-digests of the members
  (key digest + value digest for dicts), sorted, so neither insertion order nor
  ``PYTHONHASHSEED`` matters;
* arrays, frames and generic objects are hashed into a 16-byte sub-digest of
  their own first and enter the stream as ``tag + sub-digest``;
* an object met again while it is still being hashed (a cycle) is written as
  ``REF + its depth on the current stack``, like pickle's memo;
* a data file or folder (``ndustria.File``) is ``FILE + its 16-byte kind-and-content digest``
  (``file_token``, else read now: see ``ndustria.keys.files``); its path never counts.

Because every item is tagged, kinds never collide: 1, 1.0, True, "1", b"1",
(1,) and [1] all differ. ``str()``, ``repr()``, ``id()`` and ``hash()`` never
enter a digest. Tags are part of stored keys: add new ones, never renumber.
"""

from __future__ import annotations

import copyreg
import dataclasses
import datetime as dt
import enum
import functools
import io
import os
import pickle
import struct
import sys
import threading
import types
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable
from decimal import Decimal
from fractions import Fraction
from pathlib import PurePath
from typing import Any

import xxhash

from ndustria.errors import UnhashableError
from ndustria.keys.library import global_name, is_library_module, module_version
from ndustria.task import SCALARS, TaskHandle

__all__ = ["MEMO_MIN_BYTES", "ValueHasher", "hash_value", "register", "register_check", "register_lazy"]

_FORMAT = b"ndustria-value-1\x00"
MEMO_MIN_BYTES = 1 << 20  # bytes this large are memoized by identity; arrays within one digest() call
CHUNK_BYTES = 16 << 20  # a strided array is copied this much at a time
_FIX = ("pass a hashable description instead (a path, parameters), "
        "or give the class a __ndustria_token__() method returning one")
LEN = struct.Struct("<Q").pack
_F64 = struct.Struct("<d").pack
_NAN = _F64(float("nan"))
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes made by a class statement

T_NONE, T_FALSE, T_TRUE, T_INT, T_FLOAT, T_COMPLEX, T_STR = b"N", b"F", b"T", b"i", b"f", b"c", b"s"
T_BYTES, T_BYTEARRAY, T_MEMVIEW, T_BIG, T_BUFFER = b"b", b"a", b"m", b"B", b"2"
T_LIST, T_TUPLE, T_DICT, T_SET, T_FROZENSET = b"l", b"t", b"d", b"e", b"z"
T_RANGE, T_SLICE, T_ELLIPSIS, T_NOTIMPL, T_REF = b"r", b"x", b".", b"!", b"@"
T_TYPE, T_ENUM, T_DATACLASS, T_NAMEDTUPLE, T_TOKEN, T_OBJECT = b"C", b"E", b"D", b"n", b"K", b"O"
T_DATETIME, T_DATE, T_TIME, T_TIMEDELTA, T_DECIMAL, T_FRACTION, T_UUID, T_PATH = (
    b"W", b"Y", b"H", b"J", b"L", b"Q", b"U", b"P")
T_FUNCTOKEN, T_GLOBAL, T_METHOD, T_PARTIAL, T_MODULE = b"V", b"G", b"M", b"R", b"X"
T_NDARRAY, T_NDSUB, T_NPSCALAR, T_DTYPE = b"A", b"S", b"0", b"1"
T_FRAME, T_SERIES, T_INDEX, T_PDARRAY = b"3", b"4", b"5", b"6"
T_USERCLASS = b"7"  # a user class (name + class_token: its code), where a class token is set
T_FILE = b"8"  # an ndustria.File: kind + content digest (file_token, else read now), never its path

Handler = Callable[["Walk", Any, Any], None]


def put(h: Any, tag: bytes, payload: bytes) -> None:
    h.update(tag + LEN(len(payload)) + payload)


def int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)


def immutable(value: Any, depth: int = 0) -> bool:
    """True for values whose content cannot change: scalars, str, bytes, and tuples/frozensets of them
    (task handles too: a handle is replaced by its stored result, which the store checks)."""
    t = type(value)
    if t in SCALARS or t is TaskHandle:
        return True
    if (t is tuple or t is frozenset) and depth < 32:
        return all(immutable(v, depth + 1) for v in value)
    return False


def _float_bytes(x: float) -> bytes:
    # -0.0 and 0.0 stay different keys: they compare equal, but functions can tell them
    # apart (1/x, math.copysign, np.signbit), so one must not reuse the other's result.
    return _NAN if x != x else _F64(x)


TREE_MIN_BYTES = 64 << 20  # from this size on, bulk data is hashed as a tree of chunks
TREE_CHUNK = 16 << 20
_POOL: Any = None


def buffer_digest(buf: Any, itemsize: int = 1) -> bytes:
    """Digest of a contiguous buffer, read in place: the one loop over bulk data.

    Large buffers are cut into fixed chunks (a whole number of items) hashed on two
    threads (xxhash releases the GIL), then the chunk digests are hashed: the digest
    depends on the bytes only, never on the number of threads.
    """
    view = memoryview(buf).cast("B")
    if view.nbytes < TREE_MIN_BYTES:
        return xxhash.xxh3_128_digest(view)
    step = TREE_CHUNK // itemsize * itemsize
    chunks = [view[i : i + step] for i in range(0, view.nbytes, step)]
    return tree_digest(view.nbytes, _pool().map(xxhash.xxh3_128_digest, chunks))


def tree_digest(nbytes: int, digests: Iterable[bytes]) -> bytes:
    h = xxhash.xxh3_128(b"tree\x00" + nbytes.to_bytes(8, "little"))
    for d in digests:
        h.update(d)
    return h.digest()


def _pool() -> Any:
    global _POOL
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="ndustria-hash")
    return _POOL


def _qualname(cls: type) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', cls.__name__)}"


def _unhashable(obj: object, why: str) -> UnhashableError:
    return UnhashableError(f"cannot hash a value of type {_qualname(type(obj))}: {why}; {_FIX}")


def key_label(key: object) -> str:
    text = repr(key)  # only ever shown in an error message
    return f"[{text[:37]}...]" if len(text) > 40 else f"[{text}]"


def attr_label(name: object) -> str:
    return f".{name}"


def _index_label(i: int) -> str:
    return f"[{i}]"


class Walk:
    """State of one top-level ``digest()`` call: the stack of containers being hashed, and the
    sub-digests of large mutable objects met in this call (``local``, shared with nested walks)."""

    __slots__ = ("owner", "stack", "generic_depth", "local")

    def __init__(self, owner: ValueHasher, local: dict[int, tuple[object, bytes]] | None = None) -> None:
        self.owner = owner
        self.stack: dict[int, int] = {}
        self.generic_depth = 0
        self.local: dict[int, tuple[object, bytes]] = {} if local is None else local

    def feed(self, h: Any, obj: object) -> None:
        cls = type(obj)
        (_DISPATCH.get(cls) or _resolve(cls))(self, h, obj)

    def sub(self, handler: Handler, obj: object) -> bytes:
        h = xxhash.xxh3_128()
        handler(self, h, obj)
        return h.digest()

    def memo(self, obj: object, big: bool, handler: Handler, immutable: bool = False) -> bytes:
        """Sub-digest of ``obj``; a big one is memoized by identity (strong reference kept, so the id is
        not reused): an ``immutable`` one (bytes) across digest() calls, any other only within this
        call -- its content may change between two calls, so a memo must never outlive the call."""
        if not big:
            return self.sub(handler, obj)
        memo = self.owner._memo if immutable else self.local
        hit = memo.get(id(obj))
        if hit is None:  # a fresh stack keeps the memoized digest independent of context
            hit = memo[id(obj)] = (obj, Walk(self.owner, self.local).sub(handler, obj))
        return hit[1]

    def items(self, h: Any, seq: Iterable[object], label: Callable[[int], str] = _index_label) -> None:
        for i, x in enumerate(seq):
            try:
                self.feed(h, x)
            except UnhashableError as exc:
                exc.where = label(i) + exc.where
                raise

    def unordered(self, h: Any, tag: bytes, members: Iterable[tuple[object, ...]],
                  label: Callable[[object], str] = key_label) -> None:
        """Dict items or set elements: each member's digests, sorted (by key digest first)."""
        out = []
        for member in members:
            try:
                out.append(b"".join([self.sub(Walk.feed, x) for x in member]))
            except UnhashableError as exc:
                exc.where = label(member[0]) + exc.where
                raise
        out.sort()
        h.update(tag + LEN(len(out)) + b"".join(out))


def _cyclic(body: Handler) -> Handler:
    """Wrap the handler of a kind that can take part in a reference cycle."""
    def handler(w: Walk, h: Any, obj: Any) -> None:
        depth = w.stack.get(id(obj))
        if depth is not None:
            h.update(T_REF + LEN(depth))
            return
        w.stack[id(obj)] = len(w.stack)
        try:
            body(w, h, obj)
        finally:
            del w.stack[id(obj)]
    return handler


def tagged(tag: bytes, parts: Callable[[Any], Iterable[object]], labels: tuple[str, ...] = ()) -> Handler:
    """Handler for a fixed-shape kind: ``tag`` then ``parts(obj)`` as items."""
    label = labels.__getitem__ if labels else _index_label

    def handler(w: Walk, h: Any, obj: Any) -> None:
        h.update(tag)
        w.items(h, parts(obj), label)
    return handler


def put_str(w: Walk, h: Any, obj: str) -> None:
    put(h, T_STR, obj.encode("utf-8", "surrogatepass"))


def _type(w: Walk, h: Any, cls: type) -> None:
    """A class by name; a user class (made by a class statement outside library code) also by its
    code when the hasher has a ``class_token``, so that editing the class changes the digest of the
    class and of its instances (their pickle reductions name the class)."""
    name = f"{cls.__module__}\0{cls.__qualname__}".encode("utf-8", "surrogatepass")
    token = w.owner.class_token
    if token is not None and cls.__flags__ & _HEAPTYPE and not is_library_module(cls.__module__):
        put(h, T_USERCLASS, name + b"\0" + bytes(token(cls)))
    else:
        put(h, T_TYPE, name)


def _bytes_like(tag: bytes, memoize: bool) -> Handler:
    def handler(w: Walk, h: Any, obj: Any) -> None:
        n = memoryview(obj).nbytes
        if n < MEMO_MIN_BYTES:
            put(h, tag, bytes(obj) if isinstance(obj, memoryview) else obj)
        else:
            h.update(tag + T_BIG + LEN(n) + w.memo(obj, True, lambda w, h, b: h.update(buffer_digest(b)),
                                                    immutable=memoize))
    return handler


def _memoryview(w: Walk, h: Any, mv: memoryview) -> None:
    h.update(T_MEMVIEW)
    w.items(h, (mv.format, mv.shape))
    _bytes_like(T_BUFFER, False)(w, h, mv if mv.c_contiguous else memoryview(mv.tobytes()))


def _dataclass_fields(obj: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def _fields(tag: bytes, names: Callable[[Any], Iterable[str]]) -> Handler:
    """Dataclasses and namedtuples: class identity + (field name, value) in field order."""
    def body(w: Walk, h: Any, obj: Any) -> None:
        h.update(tag)
        _type(w, h, type(obj))
        fields = list(names(obj))
        h.update(LEN(len(fields)))
        for name in fields:
            put_str(w, h, name)
            w.items(h, (getattr(obj, name),), lambda i, name=name: f".{name}")
    return _cyclic(body)


def _refuse(why: str) -> Handler:
    def handler(w: Walk, h: Any, obj: object) -> None:
        raise _unhashable(obj, why)
    return handler


# ----------------------------------------------------------------------------- code

def _library_function(w: Walk, h: Any, fn: Any) -> None:
    name = global_name(fn)
    if name is None or not is_library_module(fn.__module__):
        raise UnhashableError(
            f"cannot hash the function {getattr(fn, '__qualname__', fn)!r}: it is not an importable library "
            "function, so its code cannot be identified without a code fingerprint; hash it through a "
            f"pipeline (which fingerprints code), or {_FIX}")
    put(h, T_GLOBAL, f"{name}\0{module_version(fn.__module__)}".encode())


def _function(w: Walk, h: Any, fn: Any) -> None:
    token = w.owner.function_token
    if token is None:
        _library_function(w, h, fn)
    else:
        put(h, T_FUNCTOKEN, bytes(token(fn)))


def _builtin(w: Walk, h: Any, fn: Any) -> None:
    owner = getattr(fn, "__self__", None)
    if (owner is None or isinstance(owner, types.ModuleType)) and global_name(fn):
        _library_function(w, h, fn)
    else:  # a method bound to an object ([].append): pickle reduces it to getattr(obj, name)
        _generic(w, h, fn)


# ----------------------------------------------------------------------------- generic objects

@_cyclic
def _generic(w: Walk, h: Any, obj: object) -> None:
    """Any other object, through its pickle reduction. The outermost one is reduced twice to
    catch reductions that are not deterministic (the check covers the objects inside it)."""
    digest = w.sub(_reduction, obj)
    if w.generic_depth == 0 and w.sub(_reduction, obj) != digest:
        raise _unhashable(obj, "its pickle is not deterministic (two reductions of it differ)")
    h.update(T_OBJECT + digest)


def _reduction(w: Walk, h: Any, obj: object) -> None:
    cls = type(obj)
    reducer = copyreg.dispatch_table.get(cls)
    try:
        rv = reducer(obj) if reducer is not None else obj.__reduce_ex__(5)
    except Exception as exc:
        raise _unhashable(obj, f"it cannot be pickled ({exc})") from exc
    if isinstance(rv, str):  # a module-level singleton, pickled by name
        mod = getattr(obj, "__module__", None) or pickle.whichmodule(obj, rv)
        return put(h, T_GLOBAL, f"{mod}\0{rv}".encode())
    if not isinstance(rv, tuple) or not 2 <= len(rv) <= 6:
        raise _unhashable(obj, f"its __reduce_ex__ returned a {type(rv).__name__}")
    func, args, state, listitems, dictitems = (*rv, None, None, None)[:5]
    if (func is copyreg.__newobj__ and state is None and isinstance(args, tuple) and len(args) == 1
            and args[0] is cls is not object and not cls.__flags__ & _HEAPTYPE):
        raise _unhashable(obj, "it is an opaque C object (pickling it records only its type)")
    w.generic_depth += 1
    try:
        name = None if isinstance(func, type) else global_name(func)
        if name:
            put(h, T_GLOBAL, name.encode())
        else:
            w.feed(h, func)
        w.items(h, (args,), lambda i: "(reduce args)")
        _state(w, h, state)
        w.items(h, (None if listitems is None else list(listitems),), lambda i: "(list items)")
        if dictitems is None or isinstance(obj, OrderedDict):
            w.items(h, (None if dictitems is None else list(dictitems),), lambda i: "(dict items)")
        else:
            w.unordered(h, T_DICT, list(dictitems))
    finally:
        w.generic_depth -= 1


def _state(w: Walk, h: Any, state: object) -> None:
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or type(s) is dict for s in state):
        h.update(T_TUPLE + LEN(2))  # (__dict__, __slots__ values)
        for part in state:
            _state(w, h, part)
    elif type(state) is dict:
        w.unordered(h, T_DICT, state.items(), attr_label)
    else:
        w.items(h, (state,), lambda i: ".__getstate__()")


# ----------------------------------------------------------------------------- dispatch

def _const(tag: bytes) -> Handler:
    return lambda w, h, obj: h.update(tag)


def _sequence(tag: bytes) -> Handler:
    def body(w: Walk, h: Any, obj: Any) -> None:
        h.update(tag + LEN(len(obj)))
        w.items(h, obj)
    return _cyclic(body)


def _set(tag: bytes) -> Handler:
    return _cyclic(lambda w, h, obj: w.unordered(h, tag, ((x,) for x in obj), lambda x: "{<element>}"))


def _datetime_parts(d: dt.datetime) -> tuple:
    return d.year, d.month, d.day, d.hour, d.minute, d.second, d.microsecond, d.fold, d.tzinfo


_DISPATCH: dict[type, Handler] = {
    type(None): _const(T_NONE), type(Ellipsis): _const(T_ELLIPSIS), type(NotImplemented): _const(T_NOTIMPL),
    bool: lambda w, h, obj: h.update(T_TRUE if obj else T_FALSE),
    int: lambda w, h, obj: put(h, T_INT, int_bytes(obj)),
    float: lambda w, h, obj: h.update(T_FLOAT + _float_bytes(obj)),
    complex: lambda w, h, obj: h.update(T_COMPLEX + _float_bytes(obj.real) + _float_bytes(obj.imag)),
    str: put_str, type: _type,
    bytes: _bytes_like(T_BYTES, True), bytearray: _bytes_like(T_BYTEARRAY, False), memoryview: _memoryview,
    list: _sequence(T_LIST), tuple: _sequence(T_TUPLE), set: _set(T_SET), frozenset: _set(T_FROZENSET),
    dict: _cyclic(lambda w, h, obj: w.unordered(h, T_DICT, obj.items())),
    range: tagged(T_RANGE, lambda r: (r.start, r.stop, r.step)),
    slice: tagged(T_SLICE, lambda s: (s.start, s.stop, s.step)),
    dt.datetime: tagged(T_DATETIME, _datetime_parts),
    dt.date: tagged(T_DATE, lambda d: (d.year, d.month, d.day)),
    dt.time: tagged(T_TIME, lambda t: (t.hour, t.minute, t.second, t.microsecond, t.fold, t.tzinfo)),
    dt.timedelta: tagged(T_TIMEDELTA, lambda d: (d.days, d.seconds, d.microseconds)),
    Decimal: tagged(T_DECIMAL, lambda d: tuple(d.as_tuple())),  # Decimal("1.0") != Decimal("1.00") as keys
    Fraction: tagged(T_FRACTION, lambda f: (f.numerator, f.denominator)),
    uuid.UUID: tagged(T_UUID, lambda u: (u.bytes,)),
    types.FunctionType: _function, types.BuiltinFunctionType: _builtin,
    types.MethodType: tagged(T_METHOD, lambda m: (m.__func__, m.__self__), (".__func__", ".__self__")),
    functools.partial: tagged(T_PARTIAL, lambda p: (p.func, p.args, p.keywords), (".func", ".args", ".keywords")),
    types.ModuleType: lambda w, h, m: put(h, T_MODULE, f"{m.__name__}\0{module_version(m.__name__)}".encode()),
}
_CHECKS: list[tuple[type | tuple[type, ...], Handler]] = [
    (type, _type),
    (enum.Enum, tagged(T_ENUM, lambda e: (type(e), e.name, e.value if isinstance(e, enum.Flag) else None))),
    (PurePath, tagged(T_PATH, lambda p: (type(p), p.parts))),
    ((types.GeneratorType, types.CoroutineType, types.AsyncGeneratorType),
     _refuse("a generator or coroutine is consumed by iterating it, so it has no content to hash")),
    (io.IOBase, _refuse("an open file or stream is not a value (its content can change)")),
]
_LAZY: dict[str, Callable[[Any], None]] = {}  # module name -> registers its handlers once it is imported
_LAZY_LOCK = threading.Lock()
_RESOLVED: weakref.WeakKeyDictionary[type, Handler] = weakref.WeakKeyDictionary()


def register(cls: type, handler: Handler) -> None:
    """Hash values of exactly type ``cls`` with ``handler(walk, h, obj)``: it writes a tag, then the
    value's parts through ``walk.feed`` / ``walk.items`` (or a sub-digest from ``walk.memo``)."""
    _DISPATCH[cls] = handler
    _RESOLVED.clear()


def register_check(base: type | tuple[type, ...], handler: Handler) -> None:
    """Hash instances of ``base`` (subclasses too) without an exact entry with ``handler``."""
    _CHECKS.append((base, handler))
    _RESOLVED.clear()


def register_lazy(module: str, registers: Callable[[Any], None]) -> None:
    """Call ``registers(module)`` once ``module`` is imported (numpy, pandas: never imported just to
    hash an int), before the next value of a type without an entry is hashed."""
    _LAZY[module] = registers


def _task_handle(w: Walk, h: Any, handle: TaskHandle) -> None:
    """A task handle (an input of a task) by its id: the bytes its ``__ndustria_token__`` gives through
    the generic token path (T_TOKEN, its class by name, the token tuple), written in one go: keying
    a task with thousands of inputs must not pay a walk per input."""
    h.update(_handle_bytes(handle))


def _handle_bytes(handle: TaskHandle) -> bytes:
    ident = handle.id.encode()
    return _HANDLE_TOKEN + T_STR + LEN(len(ident)) + ident


_INT_HEADS = [_FORMAT + T_INT + LEN(size) for size in range(17)]  # what precedes an int of each size in bytes
_HANDLE_NAME = f"{TaskHandle.__module__}\0{TaskHandle.__qualname__}".encode()
_HANDLE_TOKEN = (T_TOKEN + T_TYPE + LEN(len(_HANDLE_NAME)) + _HANDLE_NAME + T_TUPLE + LEN(2)
                 + T_STR + LEN(len(b"ndustria.TaskHandle")) + b"ndustria.TaskHandle")
_DISPATCH[TaskHandle] = _task_handle


def _resolve(cls: type) -> Handler:
    """Handler for a type without an exact entry; registers numpy/pandas once they are imported."""
    if any(name in sys.modules for name in _LAZY):
        with _LAZY_LOCK:
            for name in [n for n in _LAZY if n in sys.modules]:
                _LAZY.pop(name)(sys.modules[name])
    handler = _DISPATCH.get(cls) or _RESOLVED.get(cls)
    if handler is None:
        handler = _RESOLVED[cls] = _pick(cls)
    return handler


def _pick(cls: type) -> Handler:
    if callable(getattr(cls, "__ndustria_token__", None)):
        return tagged(T_TOKEN, lambda obj: (type(obj), obj.__ndustria_token__()))
    for base, handler in _CHECKS:
        if issubclass(cls, base):
            return handler
    if dataclasses.is_dataclass(cls):
        return _fields(T_DATACLASS, _dataclass_fields)
    if issubclass(cls, tuple) and isinstance(getattr(cls, "_fields", None), tuple):
        return _fields(T_NAMEDTUPLE, lambda obj: obj._fields)
    return _generic


# ----------------------------------------------------------------------------- public API

class ValueHasher:
    """Hashes argument values by content into 16-byte xxh3_128 digests.

    ``function_token`` (settable) maps a user function or lambda found inside a
    value to bytes identifying its code; without it only library functions hash.
    ``class_token`` (settable) maps a user class to bytes identifying its code; without
    it classes, also those of instances, count by name only.
    ``file_token`` (settable) maps an ``ndustria.File`` to its 16-byte kind-and-content digest
    (a pipeline sets a memo: ``files.FileDigests``); without it the file is read on every digest.

    Only immutable values are memoized across calls: ``bytes`` of 1 MiB or more, by
    identity (a reference is kept until ``clear()``, which only frees memory). Arrays,
    DataFrames and Series are hashed again on every ``digest()`` call, so a change made
    in place is always seen; within one call, the same large object met twice is
    hashed once.
    """

    def __init__(self, function_token: Callable[[Callable], bytes] | None = None,
                 class_token: Callable[[type], bytes] | None = None) -> None:
        self.function_token = function_token
        self.class_token = class_token
        self.file_token: Callable[[Any], bytes] | None = None
        self._memo: dict[int, tuple[object, bytes]] = {}

    def digest(self, obj: object) -> bytes:
        """The 16-byte digest of ``obj``; UnhashableError (with ``where``) if it has no stable content."""
        cls = type(obj)
        if cls is int:  # the usual arguments: the same bytes as the walk, in one call
            payload = int_bytes(obj)  # type: ignore[arg-type]
            size = len(payload)
            head = _INT_HEADS[size] if size < len(_INT_HEADS) else _FORMAT + T_INT + LEN(size)
            return xxhash.xxh3_128_digest(head + payload)
        if cls is str:
            payload = obj.encode("utf-8", "surrogatepass")  # type: ignore[attr-defined]
            return xxhash.xxh3_128_digest(_FORMAT + T_STR + LEN(len(payload)) + payload)
        if cls is TaskHandle:  # a task's input: the same bytes as the walk, in one call, once per handle
            digest = obj.value_digest  # type: ignore[attr-defined]
            if digest is None:
                digest = obj.value_digest = xxhash.xxh3_128_digest(_FORMAT + _handle_bytes(obj))  # type: ignore
            return digest
        h = xxhash.xxh3_128(_FORMAT)
        try:
            Walk(self).feed(h, obj)
        except RecursionError as exc:
            raise _unhashable(obj, "it is nested too deeply") from exc
        return h.digest()

    def hexdigest(self, obj: object) -> str:
        """The digest of ``obj`` as 32 hex characters."""
        return self.digest(obj).hex()

    def clear(self) -> None:
        """Release the memoized ``bytes`` digests and the references they hold (frees memory only)."""
        self._memo.clear()


def hash_value(obj: object) -> str:
    """Hex digest of ``obj`` with a fresh ValueHasher (no function_token, no memo carried over)."""
    return ValueHasher().hexdigest(obj)
