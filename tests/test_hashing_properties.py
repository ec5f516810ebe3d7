"""Property tests of the value hasher: equal values give equal keys, distinct values distinct keys.

"Equal" is structural and type-exact (see ``canon``): 1, 1.0 and True differ; 0.0 and -0.0
differ (documented: functions can tell them apart); every float NaN is one value; dicts and
sets are compared as unordered collections; arrays by dtype (byte order included), shape and
C-order content, whatever their memory layout.
"""

from __future__ import annotations

import copy
import os
import pickle
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ndustria.keys.hashing import ValueHasher, hash_value

REPO = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

nans = st.integers(0, 2**51 - 1).map(lambda m: struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000000 | m))[0])
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), nans, st.sampled_from([0.0, -0.0]))
atoms = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), floats, st.text(max_size=8),
                  st.binary(max_size=8))
hashable_atoms = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), floats, st.text(max_size=4))
values = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashable_atoms, inner, max_size=4),
        st.sets(hashable_atoms, max_size=4),
        st.frozensets(hashable_atoms, max_size=4),
    ),
    max_leaves=20,
)


def canon(x: object) -> object:
    """A structural, type-exact description of ``x``: the hasher's notion of equality."""
    if isinstance(x, float):
        return ("float", "nan" if x != x else struct.pack("<d", x))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(canon(v) for v in x))
    if isinstance(x, dict):  # unordered; a list of pairs, since several NaN keys can coexist
        return ("dict", tuple(sorted(((canon(k), canon(v)) for k, v in x.items()), key=repr)))
    if isinstance(x, (set, frozenset)):
        return (type(x).__name__, tuple(sorted((canon(v) for v in x), key=repr)))
    return (type(x).__name__, x)


def shuffled(x: object, rng: random.Random) -> object:
    """The same value rebuilt with every dict and set filled in another order."""
    if isinstance(x, dict):
        items = [(k, shuffled(v, rng)) for k, v in x.items()]
        rng.shuffle(items)
        return dict(items)
    if isinstance(x, (set, frozenset)):
        items = list(x)
        rng.shuffle(items)
        return type(x)(items)
    if isinstance(x, (list, tuple)):
        return type(x)(shuffled(v, rng) for v in x)
    return x


# -- plain values --------------------------------------------------------------------------------

@FAST
@given(values, st.randoms(use_true_random=False))
def test_equal_values_hash_equal_in_any_insertion_order(value, rng) -> None:
    digest = hash_value(value)
    assert hash_value(copy.deepcopy(value)) == digest
    assert hash_value(pickle.loads(pickle.dumps(value))) == digest
    assert hash_value(shuffled(value, rng)) == digest


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_keys_are_equal_exactly_when_values_are(a, b) -> None:
    assert (hash_value(a) == hash_value(b)) == (canon(a) == canon(b))


@FAST
@given(st.lists(values, min_size=1, max_size=5))
def test_neighbouring_values_do_not_collide(items) -> None:
    """Moving items between nesting levels or containers changes the key (the stream is tagged)."""
    variants = [items, tuple(items), [items], items[:-1], [*items, None], {0: items}, [tuple(items)]]
    keys = {canon(v): hash_value(v) for v in variants}
    assert len(set(keys.values())) == len(keys)


@FAST
@given(nans, nans, st.booleans())
def test_every_nan_is_one_key_but_signed_zeros_differ(x, y, negate) -> None:
    y = -y if negate else y
    assert hash_value(x) == hash_value(y) == hash_value(float("nan"))
    assert hash_value([x, {"k": (x,)}]) == hash_value([y, {"k": (y,)}])
    assert hash_value(0.0) != hash_value(-0.0)
    assert hash_value(complex(0.0, 0.0)) != hash_value(complex(-0.0, 0.0))


@FAST
@given(st.sets(st.text(max_size=6), min_size=2, max_size=12), st.randoms(use_true_random=False))
def test_set_and_dict_order_never_matter(members, rng) -> None:
    order = list(members)
    rng.shuffle(order)
    assert hash_value(set(order)) == hash_value(members) == hash_value(set(reversed(order)))
    assert hash_value(dict.fromkeys(order, 1)) == hash_value(dict.fromkeys(reversed(order), 1))
    assert hash_value(order) != hash_value(list(reversed(order)))  # but a list's order does


@settings(max_examples=2, deadline=None)
@given(st.lists(values, min_size=100, max_size=100))
def test_equal_keys_across_processes_and_hash_seeds(batch) -> None:
    """A batch of generated values hashed in fresh interpreters under different PYTHONHASHSEEDs."""
    batch = [*batch, {str(i): {str(j) for j in range(i)} for i in range(12)},
             np.arange(12.0).reshape(3, 4)[:, ::2], pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})]
    with tempfile.NamedTemporaryFile(suffix=".pkl", delete=False) as fh:
        fh.write(pickle.dumps(batch))
    src = Path(fh.name)
    code = ("import pickle, sys\nfrom ndustria.keys.hashing import hash_value\n"
            "print(' '.join(hash_value(v) for v in pickle.load(open(sys.argv[1], 'rb'))))")
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", code, str(src)], env=env, capture_output=True, text=True,
                              check=True, timeout=120)
        outputs.add(done.stdout.strip())
    src.unlink()
    assert outputs == {" ".join(hash_value(v) for v in batch)}


# -- recursion -----------------------------------------------------------------------------------

def cyclic(payload: object, kind: str) -> object:
    if kind == "list":
        outer: list = [payload]
        outer.append(outer)
        return outer
    if kind == "dict":
        d: dict = {"payload": payload}
        d["self"] = d
        return d
    inner: list = [payload]
    outer2 = [inner, (inner,)]
    inner.append(outer2)  # a cycle through two containers and a tuple
    return outer2


@FAST
@given(values, values, st.sampled_from(["list", "dict", "deep"]))
def test_recursive_values_are_keyed_by_shape_and_content(a, b, kind) -> None:
    key = hash_value(cyclic(a, kind))
    assert hash_value(cyclic(copy.deepcopy(a), kind)) == key  # built independently: same key
    assert (hash_value(cyclic(b, kind)) == key) == (canon(a) == canon(b))


# -- numpy ---------------------------------------------------------------------------------------

dtypes = st.one_of(hnp.integer_dtypes(endianness="="), hnp.unsigned_integer_dtypes(endianness="="),
                   hnp.floating_dtypes(endianness="=", sizes=(32, 64)), hnp.boolean_dtypes(),
                   hnp.complex_number_dtypes(endianness="="))
arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)))


@FAST
@given(arrays)
def test_arrays_hash_by_content_not_layout(a) -> None:
    key = hash_value(a)
    assert hash_value(a.copy()) == key
    assert hash_value(np.asfortranarray(a)) == key  # another memory layout, same value
    assert hash_value(pickle.loads(pickle.dumps(a))) == key
    view = a[::2]
    assert hash_value(view) == hash_value(np.ascontiguousarray(view))
    if a.ndim >= 2:
        assert hash_value(a.T) == hash_value(a.T.copy())
        assert hash_value(a.T) != key or a.shape == a.T.shape


@FAST
@given(arrays)
def test_dtype_byte_order_and_shape_are_part_of_the_key(a) -> None:
    key = hash_value(a)
    if a.dtype.itemsize > 1:
        swapped = a.astype(a.dtype.newbyteorder())  # same values, other byte order
        assert hash_value(swapped) != key
        assert hash_value(swapped) == hash_value(swapped.copy())
    other = np.int8 if a.dtype != np.int8 else np.int16
    if a.dtype.kind == "c":
        other = np.complex64 if a.dtype != np.complex64 else np.complex128
    with np.errstate(invalid="ignore", over="ignore"):
        assert hash_value(a.astype(other)) != key
    assert hash_value(a.reshape(-1)) != key or a.ndim == 1
    assert hash_value(a.tolist()) != key  # an array is not the list of its values


@FAST
@given(arrays, arrays)
def test_distinct_arrays_have_distinct_keys(a, b) -> None:
    same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    assert (hash_value(a) == hash_value(b)) == same


def test_array_nans_are_keyed_by_their_bits() -> None:
    """Documented: float *arrays* are hashed by their bytes, so NaNs with different bits
    (np.nan vs 0 * inf, which is -nan on x86) give different keys — a cache miss, never a
    wrong hit. Scalars canonicalize NaN."""
    a = np.array([np.nan, 1.0])
    assert hash_value(a) == hash_value(np.array([float("nan"), 1.0]))
    b = a.copy()
    b[0] = -np.nan
    assert hash_value(a) != hash_value(b)


# -- pandas --------------------------------------------------------------------------------------

frames = st.integers(1, 6).flatmap(lambda n: st.fixed_dictionaries({
    "i": st.lists(st.integers(-1000, 1000), min_size=n, max_size=n),
    "f": st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n),
    "s": st.lists(st.text(max_size=4), min_size=n, max_size=n),
})).map(pd.DataFrame)


@FAST
@given(frames)
def test_frames_equal_by_value_and_dtype(df) -> None:
    key = hash_value(df)
    assert hash_value(df.copy()) == key
    assert hash_value(pd.DataFrame({c: list(df[c]) for c in df.columns})) == key  # rebuilt from scratch
    assert hash_value(pickle.loads(pickle.dumps(df))) == key
    assert hash_value(df.astype({"i": "int32"})) != key  # same values, another dtype
    assert hash_value(df.astype({"i": "float64"})) != key
    assert hash_value(df.astype({"i": "Int64"})) != key
    assert hash_value(df[list(reversed(df.columns))]) != key  # column order is part of a frame


@FAST
@given(frames, frames)
def test_distinct_frames_have_distinct_keys(a, b) -> None:
    if not a.equals(b):  # (equal frames may still differ in key: 0.0 and -0.0 are equal, not the same)
        assert hash_value(a) != hash_value(b)
    if hash_value(a) == hash_value(b):
        assert a.equals(b)


def test_memo_does_not_leak_between_hashers() -> None:
    big = np.zeros(1 << 18)
    h = ValueHasher()
    before = h.digest(big)
    big[0] = 1.0  # mutated in place
    assert ValueHasher().digest(big) != before
    assert h.digest(big) != before  # nor within one hasher: arrays are never memoized across calls
