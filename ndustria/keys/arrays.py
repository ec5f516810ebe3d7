"""Content hashing of numpy arrays and pandas objects (the stream format: :mod:`ndustria.keys.hashing`).

Registered lazily: numpy and pandas are never imported just to hash an int; their handlers are
added once the user's code has imported them.

* arrays: shape, dtype, then the C-order bytes (in place when contiguous, else copied in bounded
  chunks); structured dtypes field by field (padding never counts); object arrays item by item;
  subclasses (masked arrays: mask and fill value too) by their class and their data;
* frames and series: class, columns, index, attrs, then each column's dtype and values;
  indexes and extension arrays by their parts (nullable arrays with NA slots zeroed).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import xxhash

from ndustria.keys.hashing import (
    CHUNK_BYTES,
    LEN,
    MEMO_MIN_BYTES,
    T_BUFFER,
    T_DICT,
    T_DTYPE,
    T_FRAME,
    T_INDEX,
    T_NDARRAY,
    T_NDSUB,
    T_NPSCALAR,
    T_PDARRAY,
    T_SERIES,
    TREE_CHUNK,
    TREE_MIN_BYTES,
    Walk,
    attr_label,
    buffer_digest,
    key_label,
    put,
    put_str,
    register,
    register_check,
    register_lazy,
    tagged,
    tree_digest,
)


def _ndarray(w: Walk, h: Any, a: Any) -> None:
    h.update(T_NDARRAY + w.memo(a, a.nbytes >= MEMO_MIN_BYTES, _array_digest))


def _array_digest(w: Walk, h: Any, a: Any) -> None:
    np, dtype = sys.modules["numpy"], a.dtype
    w.feed(h, a.shape)
    if dtype.names is not None:  # structured: field by field, so padding bytes never count
        w.feed(h, dtype.descr)
        w.items(h, (a[name] for name in dtype.names), lambda i: f"[{dtype.names[i]!r}]")
        return
    put_str(w, h, dtype.str)
    if dtype.hasobject:
        h.update(LEN(a.size))
        w.items(h, a.ravel(order="C"), lambda i: f".flat[{i}]")
    elif dtype.itemsize and a.size:
        h.update(T_BUFFER + _array_bytes_digest(np, a))


def _array_bytes_digest(np: Any, a: Any) -> bytes:
    """xxh3_128 of the C-order bytes of ``a``: in place when contiguous, else copied in bounded
    chunks (streaming xxh3 gives the digest of one pass over a contiguous copy)."""
    if a.flags.c_contiguous:
        return buffer_digest(a.reshape(-1).view(np.uint8), a.itemsize)
    step = max(1, CHUNK_BYTES // (a[0].nbytes or 1))
    blocks = (np.ascontiguousarray(a[start:start + step]).reshape(-1).view(np.uint8)
              for start in range(0, len(a), step))
    if a.nbytes < TREE_MIN_BYTES:
        h = xxhash.xxh3_128()
        for block in blocks:
            h.update(block)
        return h.digest()
    return tree_digest(a.nbytes, _rechunk(np, blocks, TREE_CHUNK // a.itemsize * a.itemsize))


def _rechunk(np: Any, blocks: Iterable[Any], size: int) -> Iterable[bytes]:
    """Digests of fixed-size chunks of a stream of byte blocks (as if it were contiguous)."""
    staging, fill = np.empty(size, np.uint8), 0
    for block in blocks:
        pos = 0
        while pos < len(block):
            take = min(size - fill, len(block) - pos)
            staging[fill : fill + take] = block[pos : pos + take]
            fill, pos = fill + take, pos + take
            if fill == size:
                yield xxhash.xxh3_128_digest(staging)
                fill = 0
    if fill:
        yield xxhash.xxh3_128_digest(staging[:fill])


def _ndarray_subclass(w: Walk, h: Any, a: Any) -> None:
    np, ma = sys.modules["numpy"], sys.modules.get("numpy.ma")
    h.update(T_NDSUB)
    w.items(h, (type(a), a.view(np.ndarray)))
    if ma is not None and isinstance(a, ma.MaskedArray):
        w.items(h, (ma.getmaskarray(a), a.fill_value), (".mask", ".fill_value").__getitem__)
    else:
        w.unordered(h, T_DICT, getattr(a, "__dict__", {}).items(), attr_label)


def _np_scalar(w: Walk, h: Any, x: Any) -> None:
    if x.dtype.names is not None or x.dtype.hasobject:
        h.update(T_NPSCALAR)
        _ndarray(w, h, sys.modules["numpy"].asarray(x))
    else:
        put(h, T_NPSCALAR, x.dtype.str.encode() + b"\0" + x.tobytes())


def register_numpy(np: Any) -> None:
    """numpy's handlers, registered when numpy is imported."""
    register(np.ndarray, _ndarray)
    register(np.memmap, _ndarray)  # a memory-mapped array is its content
    register_check(np.ndarray, _ndarray_subclass)
    register_check(np.generic, _np_scalar)
    register_check(np.dtype, tagged(T_DTYPE, lambda d: (d.descr if d.names is not None else d.str,)))



def _pd_values(obj: Any) -> Any:
    return obj.to_numpy() if isinstance(obj.dtype, sys.modules["numpy"].dtype) else obj.array


def _frame_digest(w: Walk, h: Any, df: Any) -> None:
    w.items(h, (type(df), df.columns, df.index, df.attrs), ("", ".columns", ".index", ".attrs").__getitem__)
    h.update(LEN(df.shape[1]))
    for i, name in enumerate(df.columns):
        col = df.iloc[:, i]
        w.items(h, (col.dtype, _pd_values(col)), lambda _, name=name: key_label(name))


def _series_digest(w: Walk, h: Any, s: Any) -> None:
    w.items(h, (type(s), s.name, s.index, s.attrs, s.dtype, _pd_values(s)),
            ("", ".name", ".index", ".attrs", ".dtype", ".values").__getitem__)


def _index_parts(idx: Any) -> tuple:
    pd = sys.modules["pandas"]
    if isinstance(idx, pd.RangeIndex):
        return type(idx), idx.name, idx.start, idx.stop, idx.step
    if isinstance(idx, pd.MultiIndex):
        return type(idx), list(idx.names), list(idx.levels), list(idx.codes)
    return type(idx), idx.name, idx.dtype, _pd_values(idx)


def _ext_array_parts(arr: Any) -> tuple:
    np, pd = sys.modules["numpy"], sys.modules["pandas"]
    if isinstance(arr, pd.Categorical):
        return type(arr), arr.dtype, arr.codes, arr.categories, arr.ordered
    data, mask = getattr(arr, "_data", None), getattr(arr, "_mask", None)
    if isinstance(data, np.ndarray) and isinstance(mask, np.ndarray):  # nullable ints, floats, bools:
        return type(arr), arr.dtype, np.where(mask, np.zeros((), data.dtype), data), mask  # NA hides junk
    if isinstance(getattr(arr, "_ndarray", None), np.ndarray):  # datetimes, periods, numpy strings
        return type(arr), arr.dtype, arr._ndarray
    return type(arr), arr.dtype, np.asarray(arr, dtype=object)


def register_pandas(pd: Any) -> None:
    """pandas' handlers, registered when pandas is imported."""
    register_check(pd.DataFrame, lambda w, h, df: h.update(T_FRAME + w.memo(df, True, _frame_digest)))
    register_check(pd.Series, lambda w, h, s: h.update(T_SERIES + w.memo(s, True, _series_digest)))
    register_check(pd.Index, tagged(T_INDEX, _index_parts))
    register_check(pd.api.extensions.ExtensionArray, tagged(T_PDARRAY, _ext_array_parts))


register_lazy("numpy", register_numpy)
register_lazy("pandas", register_pandas)
