"""Behaviour of the value hasher: equal values share a key, different values never do."""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import functools
import math
import os
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ndustria.errors import UnhashableError
from ndustria.keys import arrays, hashing
from ndustria.keys.hashing import ValueHasher, hash_value

REPO = Path(hashing.__file__).resolve().parents[2]  # ndustria/keys/hashing.py


def distinct(values: list) -> bool:
    digests = [hash_value(v) for v in values]
    return len(set(digests)) == len(digests)


# ----------------------------------------------------------------------------- basics

def test_digest_sizes_and_hexdigest_agree():
    hasher = ValueHasher()
    digest = hasher.digest({"a": [1, 2.5, "x"]})
    assert isinstance(digest, bytes) and len(digest) == 16
    assert hasher.hexdigest({"a": [1, 2.5, "x"]}) == digest.hex() == hash_value({"a": [1, 2.5, "x"]})


def test_equal_values_built_independently_hash_equal():
    def build():
        return {
            "n": [1, 2**80, -7, 3.25, 1 + 2j, "héllo\udc80", b"\x00raw", bytearray(b"ba")],
            "t": (None, True, ..., range(0, 10, 3), slice(1, None)),
            "s": {"x", "y", frozenset({1, 2})},
            "dt": [datetime.datetime(2024, 5, 6, 7, 8, 9, 10), datetime.date(2024, 1, 2),
                   datetime.timedelta(days=3), decimal.Decimal("1.50")],
            "p": Path("data/input.csv"),
            "a": np.arange(24, dtype=np.int32).reshape(4, 6),
        }

    assert hash_value(build()) == hash_value(build())
    assert hash_value(build()) == hash_value(pickle.loads(pickle.dumps(build())))


def test_kinds_never_collide():
    assert distinct([1, 1.0, True, "1", b"1", bytearray(b"1"), (1,), [1], {1}, frozenset({1}), {1: 1},
                     1 + 0j, np.int64(1), np.float64(1.0), np.array(1), np.array([1]), decimal.Decimal(1)])
    assert distinct([None, 0, 0.0, False, "", b"", (), [], {}, set(), frozenset(), range(0), ...])
    assert distinct([[1, 2], [[1], 2], [1, [2]], [[1, 2]], (1, 2), ("1", 2), ["12"], ["1", "2"]])
    assert distinct([2**63, 2**64, -(2**63), 2**1000, -(2**1000), 255, 256, -1, -256])


def test_dict_insertion_order_does_not_matter():
    a = {"x": 1, "y": [2, 3], 3: "z"}
    b = {3: "z", "y": [2, 3], "x": 1}
    assert list(a) != list(b)
    assert hash_value(a) == hash_value(b)
    assert hash_value({"x": 1}) != hash_value({"x": 2}) != hash_value({"y": 1})


def test_set_order_does_not_matter():
    words = [f"word{i}" for i in range(200)]
    assert hash_value(set(words)) == hash_value(set(reversed(words)))
    assert hash_value(frozenset(words)) != hash_value(set(words))
    assert hash_value(set(words)) != hash_value(set(words[:-1]))


def test_every_nan_is_one_key_but_signed_zeros_differ():
    payload_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0]
    assert math.isnan(payload_nan)
    assert hash_value(float("nan")) == hash_value(-float("nan")) == hash_value(payload_nan)
    assert hash_value([float("nan")]) == hash_value([np.nan])
    # 0.0 == -0.0, yet 1/x or copysign tell them apart, so they are different inputs.
    assert hash_value(0.0) != hash_value(-0.0)
    assert hash_value(complex(0.0, -0.0)) != hash_value(complex(0.0, 0.0))


def test_same_hex_digest_under_different_hash_seeds():
    code = textwrap.dedent("""
        import numpy as np
        from ndustria.keys.hashing import hash_value
        value = {"b": {"x", "y", "zz", (1, 2), frozenset({"p", "q"})}, "a": [np.arange(6.0).reshape(2, 3)],
                 "c": {"k%d" % i: {i, str(i)} for i in range(20)}}
        print(hash_value(value))
    """)
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1
    (digest,) = outputs
    assert len(digest) == 32 and int(digest, 16) >= 0


# ----------------------------------------------------------------------------- richer values

class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class OtherPoint:
    x: float
    y: float


Pair = collections.namedtuple("Pair", "x y")


class Plain:
    def __init__(self, a, b):
        self.a = a
        self.b = b


def test_structured_values():
    assert hash_value(Color.RED) == hash_value(Color(1))
    assert distinct([Color.RED, Color.BLUE, 1, "RED"])
    assert hash_value(Point(1.0, 2.0)) == hash_value(Point(1.0, 2.0))
    assert distinct([Point(1.0, 2.0), OtherPoint(1.0, 2.0), Point(2.0, 1.0), Pair(1.0, 2.0), (1.0, 2.0)])
    assert hash_value(Plain(1, [2])) == hash_value(Plain(1, [2]))
    assert hash_value(Plain(1, [2])) != hash_value(Plain(1, [3]))
    assert distinct([int, float, Point, OtherPoint, Color])


def test_mapping_subclasses():
    assert hash_value(collections.Counter("abca")) == hash_value(collections.Counter("aacb"))
    od1 = collections.OrderedDict([("a", 1), ("b", 2)])
    od2 = collections.OrderedDict([("b", 2), ("a", 1)])
    assert hash_value(od1) != hash_value(od2)  # OrderedDict equality depends on order
    dd = collections.defaultdict(list, {"a": [1]})
    assert hash_value(dd) != hash_value({"a": [1]}) != hash_value(collections.defaultdict(set, {"a": [1]}))


def test_recursive_containers_terminate_and_are_deterministic():
    def cyclic():
        outer = [1, 2]
        outer.append(outer)
        return outer

    assert hash_value(cyclic()) == hash_value(cyclic())
    assert hash_value(cyclic()) != hash_value([1, 2, [1, 2]])
    d: dict = {"k": 1}
    d["self"] = d
    assert hash_value(d) == hash_value(d)
    obj = Plain(1, None)
    obj.b = [obj]
    assert hash_value(obj) == hash_value(obj)


def test_shared_references_hash_like_copies():
    part = [1, 2]
    assert hash_value([part, part]) == hash_value([[1, 2], [1, 2]])


# ----------------------------------------------------------------------------- numpy

def test_arrays_with_identical_str_differ():
    a = np.zeros(2000)
    b = a.copy()
    b[1000] = 1e-9
    assert str(a) == str(b)
    assert hash_value(a) != hash_value(b)
    assert hash_value(a) == hash_value(np.zeros(2000))


def test_dtype_byte_order_and_shape_distinguish_arrays():
    x = np.arange(12.0).reshape(3, 4)
    assert distinct([x, x.astype(np.float32), x.astype(">f8"), x.reshape(4, 3), x.reshape(12), x.astype(np.int64)])
    assert distinct([np.zeros((0, 3)), np.zeros((3, 0)), np.zeros(0)])
    assert hash_value(np.array(["2024-01-01"], dtype="M8[D]")) != hash_value(np.array(["2024-01-01"], dtype="M8[s]"))


def test_views_hash_like_their_contiguous_copies():
    base = np.random.default_rng(0).random((300, 201))
    for view in (base[:, ::3], base[::2], base.T, base[:, 5], base[::-1], np.asfortranarray(base)):
        assert hash_value(view) == hash_value(view.copy(order="C"))


def test_object_and_structured_arrays_by_content():
    assert hash_value(np.array([1, "a", None], dtype=object)) == hash_value(np.array([1, "a", None], dtype=object))
    assert hash_value(np.array([1, "a"], dtype=object)) != hash_value(np.array(["1", "a"], dtype=object))
    rec = np.zeros(3, dtype=[("a", "i4"), ("b", "f8", (2,))])
    other = rec.copy()
    other["b"][1, 1] = 5
    assert hash_value(rec) == hash_value(rec.copy()) != hash_value(other)


def test_numpy_scalars_and_masked_arrays():
    assert distinct([np.float64(1), np.float32(1), np.int64(1), np.int32(1), np.bool_(True), 1.0, 1])
    assert hash_value(np.float64(2.5)) == hash_value(np.float64(2.5))
    masked = np.ma.array([1, 2], mask=[0, 1])
    assert hash_value(masked) != hash_value(np.ma.array([1, 2], mask=[0, 0])) != hash_value(np.array([1, 2]))


def _count_buffer_digests(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = hashing.buffer_digest

    def counting(buf, itemsize=1):
        calls.append(memoryview(buf).nbytes)
        return real(buf, itemsize)

    for module in (hashing, arrays):  # bytes are hashed in hashing, arrays in arrays
        monkeypatch.setattr(module, "buffer_digest", counting)
    return calls


def test_large_array_changed_in_place_gets_a_new_digest(monkeypatch):
    calls = _count_buffer_digests(monkeypatch)
    array = np.ones(2 * 2**20 // 8)  # 2 MiB: once memoized by identity, now hashed on every call
    hasher = ValueHasher()
    first = hasher.digest(array)
    assert hasher.digest(array) == first
    array[0] = 5
    assert hasher.digest(array) != first
    array[0] = 1
    assert hasher.digest(array) == first
    assert len(calls) == 4
    assert hasher._memo == {}


def test_large_array_met_twice_in_one_value_is_hashed_once(monkeypatch):
    calls = _count_buffer_digests(monkeypatch)
    array = np.ones(2 * 2**20 // 8)
    hasher = ValueHasher()
    assert hasher.digest([array, {"again": array}]) == hasher.digest([array.copy(), {"again": array.copy()}])
    assert len(calls) == 1 + 2  # the first value: once; the copies are two objects


def test_frames_changed_in_place_get_a_new_digest():
    hasher = ValueHasher()
    df = pd.DataFrame({"a": np.arange(5.0)})
    before, series_before = hasher.digest(df), hasher.digest(df["a"])
    df.loc[0, "a"] = 7.0
    assert hasher.digest(df) != before
    assert hasher.digest(df["a"]) != series_before
    assert hasher._memo == {}


def test_large_bytes_are_memoized_until_clear(monkeypatch):
    calls = _count_buffer_digests(monkeypatch)
    blob = bytes(2 * 2**20)  # immutable: an identity memo cannot return a stale digest
    hasher = ValueHasher()
    first = hasher.digest(blob)
    assert hasher.digest({"again": [blob]}) != first
    assert len(calls) == 1
    hasher.clear()
    assert hasher.digest(blob) == first
    assert len(calls) == 2
    grown = bytearray(blob)  # mutable: never memoized across calls
    before = hasher.digest(grown)
    grown[0] = 1
    assert hasher.digest(grown) != before


def test_small_values_are_not_memoized():
    hasher = ValueHasher()
    small = np.ones(10)
    before = hasher.digest(small)
    small[0] = 5
    assert hasher.digest(small) != before
    assert hasher._memo == {}


# ----------------------------------------------------------------------------- pandas

def test_pandas_same_values_different_dtypes_differ():
    ints = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    floats = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    assert (ints == floats).all().all()
    assert hash_value(ints) != hash_value(floats)
    assert hash_value(ints) == hash_value(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    assert distinct([pd.Series([1, 2]), pd.Series([1, 2], dtype="int32"), pd.Series([1, 2], dtype="Int64"),
                     pd.Series(["1", "2"]), pd.Series(["1", "2"], dtype="category")])


def test_pandas_labels_index_and_extension_arrays():
    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    assert distinct([df, df[["b", "a"]], df.rename(columns={"a": "c"}), df.set_index(pd.Index([5, 6]))])
    assert hash_value(pd.Series([1, 2], name="x")) != hash_value(pd.Series([1, 2], name="y"))
    assert distinct([pd.RangeIndex(3), pd.Index([0, 1, 2], dtype="int64"), pd.Index([0.0, 1.0, 2.0]),
                     pd.MultiIndex.from_tuples([(1, "a"), (2, "b")]),
                     pd.MultiIndex.from_tuples([(1, "a"), (2, "c")])])
    assert hash_value(pd.Categorical(["a", "b"])) != hash_value(pd.Categorical(["a", "b"], ordered=True))
    assert hash_value(pd.array([1, None], dtype="Int64")) == hash_value(pd.array([1, None], dtype="Int64"))
    stamps = pd.Series(pd.date_range("2024-01-01", periods=3, tz="UTC"))
    assert hash_value(stamps) == hash_value(stamps.copy()) != hash_value(stamps.dt.tz_convert("Europe/Paris"))


# ----------------------------------------------------------------------------- errors

def test_generator_and_open_file_are_refused_with_location(tmp_path):
    with pytest.raises(UnhashableError) as info:
        hash_value({"rows": [1, (i for i in range(3))]})
    assert info.value.where == "['rows'][1]"
    assert "generator" in str(info.value) and "__ndustria_token__" in str(info.value)

    with open(tmp_path / "f.txt", "w") as handle, pytest.raises(UnhashableError) as info:
        hash_value([0, 1, {"out": handle}])
    assert info.value.where == "[2]['out']"
    assert "TextIOWrapper" in str(info.value)


def test_unpicklable_attribute_is_located():
    import threading

    with pytest.raises(UnhashableError) as info:
        hash_value([Plain(1, threading.Lock())])
    assert info.value.where == "[0].b"
    assert "lock" in str(info.value)


class Counting:
    """Reduces to a fresh counter value each time: its pickle is not deterministic."""

    counter = 0

    def __reduce__(self):
        Counting.counter += 1
        return (Counting, (Counting.counter,))


def test_non_deterministic_reduction_is_refused():
    with pytest.raises(UnhashableError, match="not deterministic"):
        hash_value(Counting())
    with pytest.raises(UnhashableError, match="not deterministic"):
        hash_value({"x": Plain(1, Counting())})


# ----------------------------------------------------------------------------- protocols

class Token:
    calls = 0

    def __init__(self, token, noise):
        self.token = token
        self.noise = noise

    def __ndustria_token__(self):
        Token.calls += 1
        return ("token", self.token)


def test_ndustria_token_replaces_the_object():
    Token.calls = 0
    assert hash_value(Token("k1", object())) == hash_value(Token("k1", [1, 2]))
    assert hash_value(Token("k1", None)) != hash_value(Token("k2", None))
    assert hash_value(Token("k1", None)) != hash_value(("token", "k1"))
    assert Token.calls == 5


def test_function_token_hook_is_used_for_lambdas_and_user_functions():
    seen = []

    def token(fn):
        seen.append(fn)
        return fn.__code__.co_code + repr(fn.__code__.co_consts).encode()

    hasher = ValueHasher(function_token=token)
    square, cube = (lambda x: x * x), (lambda x: x * x * x)
    assert hasher.digest(square) == hasher.digest(lambda x: x * x)
    assert hasher.digest(square) != hasher.digest(cube)
    assert square in seen and cube in seen
    assert hasher.digest(functools.partial(square, 2)) != hasher.digest(functools.partial(square, 3))
    obj = Plain(1, 2)
    other = Plain(1, 3)
    method = Plain.__init__.__get__(obj)
    assert hasher.digest(method) != hasher.digest(Plain.__init__.__get__(other))


def test_functions_without_hook():
    with pytest.raises(UnhashableError, match="lambda"):
        hash_value([lambda: 1])
    assert distinct([len, max, math.sqrt, np.mean, os.path.join, functools.partial(max, 1), math])
    assert hash_value(math.sqrt) == hash_value(math.sqrt)


# ----------------------------------------------------------------------------- properties

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
           | st.binary(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: (st.lists(inner, max_size=4) | st.tuples(inner, inner)
                   | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=4)
                   | st.frozensets(st.integers() | st.text(max_size=5), max_size=4)),
    max_leaves=20,
)


def canonical(x):
    """A strict structural form: type names everywhere, floats by canonical bits, sets unordered."""
    if isinstance(x, float):
        return ("float", b"nan" if x != x else struct.pack("<d", x))
    if isinstance(x, (list, tuple)):
        return (type(x).__name__, tuple(canonical(v) for v in x))
    if isinstance(x, dict):
        return ("dict", frozenset((canonical(k), canonical(v)) for k, v in x.items()))
    if isinstance(x, frozenset):
        return ("frozenset", frozenset(canonical(v) for v in x))
    return (type(x).__name__, x)


@settings(max_examples=200, deadline=None)
@given(values)
def test_independent_copies_hash_equal(value):
    assert hash_value(value) == hash_value(copy.deepcopy(value))
    assert hash_value(value) == hash_value(pickle.loads(pickle.dumps(value)))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=5), values, max_size=6))
def test_dict_order_never_matters(d):
    assert hash_value(d) == hash_value(dict(reversed(list(d.items()))))


@settings(max_examples=300, deadline=None)
@given(values, values)
def test_structurally_different_values_hash_differently(a, b):
    if canonical(a) != canonical(b):
        assert hash_value(a) != hash_value(b)
    else:
        assert hash_value(a) == hash_value(b)


def test_large_buffers_hash_as_a_tree_that_ignores_layout():
    from ndustria.keys.hashing import TREE_MIN_BYTES

    base = np.random.default_rng(3).random((2 * TREE_MIN_BYTES // 8 // 1000 + 10, 1000))
    view = base[:, ::2]  # non-contiguous, above the tree threshold
    assert view.nbytes >= TREE_MIN_BYTES
    assert ValueHasher().digest(view) == ValueHasher().digest(np.ascontiguousarray(view))
    changed = base.copy()
    changed[-1, -2] += 1.0  # in the last chunk
    assert ValueHasher().digest(changed[:, ::2]) != ValueHasher().digest(view)
    assert ValueHasher().digest(base) != ValueHasher().digest(changed)


def test_a_class_token_makes_user_classes_and_their_instances_count_by_code():
    @dataclasses.dataclass
    class Point:
        x: int

    class Box:
        def __init__(self, n):
            self.n = n

    plain = ValueHasher()
    v1 = ValueHasher(class_token=lambda cls: b"code-v1")
    v2 = ValueHasher(class_token=lambda cls: b"code-v2")
    for value in (Point, Point(1), Box(2), [Box(2)]):
        assert len({v1.digest(value), v2.digest(value), plain.digest(value)}) == 3
        assert v1.digest(value) == ValueHasher(class_token=lambda cls: b"code-v1").digest(value)
    for library_value in (collections.OrderedDict, decimal.Decimal("1.5"), Path("a"), int, 3):
        assert v1.digest(library_value) == v2.digest(library_value) == plain.digest(library_value)


def test_task_handles_hash_as_their_token_does(monkeypatch, tmp_path):
    """The one-step handler for task handles writes exactly the bytes of the generic token path."""
    from ndustria import Pipeline
    from ndustria.task import TaskHandle

    pipe = Pipeline(name="tokens", cache_dir=tmp_path / "cache", verbose=False)
    square = pipe.AddFunction()(lambda x: x * x)
    handles = [square(i) for i in range(3)]
    values = [handles[0], [handles[1], {"k": handles[2]}], (1, handles[0])]
    fast = [ValueHasher().digest(v) for v in values]
    monkeypatch.delitem(hashing._DISPATCH, TaskHandle)
    monkeypatch.setattr(hashing, "_RESOLVED", type(hashing._RESOLVED)())

    def generic(value):  # the walk, without digest()'s shortcuts
        h = hashing.xxhash.xxh3_128(hashing._FORMAT)
        hashing.Walk(ValueHasher()).feed(h, value)
        return h.digest()

    assert [generic(v) for v in values] == fast


@pytest.mark.parametrize("value", [0, 1, -1, 127, 128, -129, 255, 2**63 - 1, -(2**63), 2**127, -(2**127) - 1,
                                   2**200 + 12345, -(2**300), "", "a", "é", "\ud800-surrogate", "x" * 10_000])
def test_digest_shortcuts_for_ints_and_strings_write_the_walks_bytes(value):
    """digest() hashes an int or a str in one call: the same digest as the generic walk, at every size."""
    h = hashing.xxhash.xxh3_128(hashing._FORMAT)
    hashing.Walk(ValueHasher()).feed(h, value)
    assert ValueHasher().digest(value) == h.digest()
