"""Behaviour of the on-disk result store: round trips, integrity, atomicity."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import mmap
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xxhash
from support import Canary, StoredEntry, run_python, spy_fsync

import ndustria.store.entries as store_module
from ndustria.errors import CacheError, CorruptEntryError, ResultNotPicklableError
from ndustria.store import format as entry_format
from ndustria.store.entries import FORMAT_VERSION, EntryInfo, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache", fsync=False)


def assert_same(got: object, want: object) -> None:
    assert type(got) is type(want)
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype.names:
            assert got.tobytes() == want.tobytes()
        else:
            assert np.array_equal(got, want)
    elif isinstance(want, dict):
        assert got.keys() == want.keys()
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert_same(g, w)
    else:
        assert got == want


def file_owner(arr: np.ndarray) -> object:
    """The object at the end of an array's base chain (the memory's owner)."""
    base: object = arr
    while isinstance(base, np.ndarray):
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def walk_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


VALUES = {
    "none": None,
    "empty_str": "",
    "str": "héllo wörld ✓",
    "bytes": b"\x00\x01binary\xff",
    "bytearray": bytearray(b"abc" * 1000),
    "int": 12345678901234567890,
    "float": 3.25,
    "tuple": (1, "two", 3.0),
    "nested": {
        "a": np.arange(1000, dtype=np.int64),
        "b": [np.ones((30, 40), order="F"), {"c": np.linspace(0, 1, 7, dtype=np.float32)}],
        "meta": {"name": "x", "n": 3},
    },
    "zero_d": np.array(3.5),
    "empty_array": np.empty((0, 3)),
    "non_contiguous": np.arange(100.0).reshape(10, 10)[::2, ::3],
    "structured": np.array(
        [(1, 2.5, b"ab"), (3, -1.0, b"cd")], dtype=[("i", "<i4"), ("f", "<f8"), ("s", "S2")]
    ),
    "object_array": np.array([1, "two", None, [3]], dtype=object),
    "complex": np.arange(5) * (1 + 2j),
}


@pytest.mark.parametrize("name", VALUES)
@pytest.mark.parametrize("use_mmap", [False, True])
def test_round_trip(store: Store, name: str, use_mmap: bool) -> None:
    info = store.save("k" + name, VALUES[name])
    assert isinstance(info, EntryInfo) and info.size == StoredEntry(store, "k" + name).size
    assert_same(store.load("k" + name, mmap=use_mmap), VALUES[name])


def test_lambda_round_trip(store: Store) -> None:
    store.save("fn", lambda x: x + 1)
    assert store.load("fn")(2) == 3


@pytest.mark.parametrize("key", ["k", "a" * 32, "Z_-9" * 50])
@pytest.mark.parametrize("n", [0, 1, 37, 300, 4096, 1 << 20])
@pytest.mark.parametrize("created", [0.0, 1764625300.123456, 1764625300.5, 99999999999.999999])
def test_small_entries_are_written_byte_for_byte_as_the_general_layout(store: Store, key: str, n: int,
                                                                       created: float) -> None:
    """Small results skip json.dumps (hand-written header); the file must not differ in one byte."""
    data = bytes(range(256)) * (n // 256) + bytes(n % 256)
    keyring = store.keyring
    fast, checksum = entry_format.small_entry(key, data, keyring, created)
    meta, regions, start = entry_format.layout(key, len(data), [], created)
    block, hdr = entry_format.header_block(key, meta, regions, start, xxhash.xxh3_128_hexdigest(data),
                                           entry_format.EMPTY_DIGEST, hashlib.sha256(data).hexdigest(), keyring)
    assert fast == block + data
    assert checksum == hdr.checksum


@pytest.mark.parametrize("value", [0, -1, 2**70, 1.5, float("nan"), "", "é" * 1000, b"x", True, None])
def test_plain_results_pickle_as_cloudpickle_does(store: Store, value: object) -> None:
    import cloudpickle

    data, views = entry_format.pickle_result("k", value)
    assert data == cloudpickle.dumps(value, protocol=5) and views == []
    store.save("k", value)
    got = store.load("k")
    assert got == value or (got != got and value != value)


@pytest.mark.parametrize("use_mmap", [False, True])
def test_loaded_arrays_are_writable_and_do_not_change_the_entry(store: Store, use_mmap: bool) -> None:
    value = {"a": np.arange(100_000, dtype=np.float64), "b": [np.zeros((5, 5), dtype=np.int8)]}
    store.save("w", value)
    got = store.load("w", mmap=use_mmap)
    for arr in (got["a"], got["b"][0]):
        assert arr.flags.writeable
        arr += 1
    store.verify("w")
    assert_same(store.load("w"), value)


def test_mmap_load_is_backed_by_the_file(store: Store) -> None:
    store.save("m", {"x": np.arange(1 << 20, dtype=np.float64)})
    mapped = store.load("m", mmap=True)["x"]
    assert isinstance(file_owner(mapped), mmap.mmap)
    read = store.load("m")["x"]
    assert not isinstance(file_owner(read), mmap.mmap)
    assert read.ctypes.data % 64 == 0 and mapped.ctypes.data % 64 == 0


# -- integrity: corrupt entries are detected and never unpickled --------------------------------


def regions(path: Path) -> dict:
    raw = path.read_bytes()
    _, version, hlen = struct.unpack_from("<8sII", raw)
    head = json.loads(raw[16 : 16 + hlen])
    head["header"] = (16, hlen)
    return head


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x5A]))


@pytest.fixture
def canary_entry(store: Store, tmp_path: Path) -> tuple[Store, Path, Path]:
    flag = tmp_path / "unpickled.flag"
    value = {"canary": Canary(flag), "arr": np.arange(200_000, dtype=np.float64)}
    store.save("canary", value)
    assert store.load("canary")["canary"] == "unpickled" and flag.exists()  # the canary works
    flag.unlink()
    return store, store.path("canary"), flag


DAMAGE = ["header", "header_digest", "pickle", "buffer", "truncated_buffer", "truncated_header", "empty"]


@pytest.mark.parametrize("threaded", [False, True])
@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_entry_raises_and_is_never_unpickled(
    canary_entry, monkeypatch, damage: str, threaded: bool
) -> None:
    store, path, flag = canary_entry
    monkeypatch.setattr(entry_format, "THREADED", 0 if threaded else 1 << 62)
    head = regions(path)
    (p_off, p_len), ((b_off, b_len),) = head["pickle"], head["buffers"]
    if damage == "header":
        flip(path, 16 + head["header"][1] // 2)
    elif damage == "header_digest":
        flip(path, 16 + head["header"][1] + 3)
    elif damage == "pickle":
        flip(path, p_off + p_len // 2)
    elif damage == "buffer":
        flip(path, b_off + b_len - 10)
    else:
        size = {"truncated_buffer": b_off + b_len // 2, "truncated_header": 30, "empty": 0}[damage]
        os.truncate(path, size)
    with pytest.raises(CorruptEntryError) as exc_info:
        store.load("canary")
    assert exc_info.value.key == "canary" and exc_info.value.path == str(path)
    with pytest.raises(CorruptEntryError):
        store.verify("canary")
    if damage != "buffer":  # mmap loads do not read (so do not verify) array data
        with pytest.raises(CorruptEntryError):
            store.load("canary", mmap=True)
    assert not flag.exists()


@pytest.mark.parametrize("threaded", [False, True])
def test_chunk_boundaries_inside_and_between_regions(store: Store, monkeypatch, threaded: bool) -> None:
    for module in (entry_format, store_module):  # many reads and writes per region
        monkeypatch.setattr(module, "CHUNK", 1000)
    monkeypatch.setattr(entry_format, "THREADED", 0 if threaded else 1 << 62)
    sizes = (0, 1, 100, 1000, 5000)
    value = {
        "arrays": [np.arange(n, dtype=np.float64) for n in sizes],
        "text": "x" * 5000,
        **VALUES["nested"],
    }
    store.save("chunks", value)
    assert_same(store.load("chunks"), value)
    store.verify("chunks")
    flip(store.path("chunks"), store.path("chunks").stat().st_size - 5)
    with pytest.raises(CorruptEntryError, match="array data checksum"):
        store.load("chunks")
    with pytest.raises(CorruptEntryError, match="array data checksum"):
        store.verify("chunks")


def test_newer_format_version_is_reported(canary_entry) -> None:
    store, path, flag = canary_entry
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", FORMAT_VERSION + 1))
    for use_mmap in (False, True):
        with pytest.raises(CorruptEntryError, match=rf"newer ndustria \(format {FORMAT_VERSION + 1}\)"):
            store.load("canary", mmap=use_mmap)
    assert not flag.exists()


def test_entry_under_the_wrong_key_is_rejected(canary_entry) -> None:
    store, path, flag = canary_entry
    other = store.path("other")
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(path.read_bytes())
    with pytest.raises(CorruptEntryError):
        store.load("other")
    assert not flag.exists()


# -- failures while saving leave nothing behind -------------------------------------------------


@pytest.mark.parametrize(
    "value, type_name",
    [
        ((i for i in range(3)), "generator"),
        (threading.Lock(), "lock"),
        ({"ok": 1, "bad": threading.Lock()}, "lock"),
    ],
)
def test_unpicklable_result(store: Store, value: object, type_name: str) -> None:
    with pytest.raises(ResultNotPicklableError) as exc_info:
        store.save("bad", value)
    message = str(exc_info.value)
    assert type_name in message and "picklable" in message and "plain data" in message
    assert not store.contains("bad")
    assert walk_files(store.root / "tmp") == [] and walk_files(store.root / "objects") == []


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_no_partial_entry(store: Store, monkeypatch, error: BaseException) -> None:
    old = np.zeros(10)
    store.save("k", old)
    real_write, calls = os.write, []

    def failing_write(fd: int, data) -> int:
        calls.append(len(data))
        if len(calls) > 1:
            raise error
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(type(error)):
        store.save("k", np.ones(4 << 20))
    monkeypatch.undo()
    assert len(calls) == 2
    assert walk_files(store.root / "tmp") == []
    assert_same(store.load("k"), old)  # the previous entry is untouched
    store.verify("k")


# -- directory, bookkeeping ---------------------------------------------------------------------


def test_root_is_private_and_marked(tmp_path: Path) -> None:
    store = Store(tmp_path / "a" / "cache")
    assert (store.root.stat().st_mode & 0o777) == 0o700
    assert (store.root / "FORMAT").read_text().strip() == f"ndustria-store {FORMAT_VERSION}"
    assert (store.root / "objects").is_dir() and (store.root / "tmp").is_dir()
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    assert (Store(existing).root.stat().st_mode & 0o777) == 0o700
    Store(tmp_path / "a" / "cache")  # reopening works


def test_unusable_root_raises_cache_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(CacheError, match="cannot use cache directory"):
        Store(tmp_path / "file")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "FORMAT").write_text("ndustria-store 99\n")
    with pytest.raises(CacheError, match="newer ndustria"):
        Store(newer)


def test_contains_remove_keys_info(store: Store) -> None:
    assert not store.contains("a1") and store.info("a1") is None and list(store.keys()) == []
    with pytest.raises(KeyError):
        store.load("a1")
    with pytest.raises(KeyError):
        store.verify("a1")
    saved = {k: store.save(k, {"v": np.arange(i + 1)}) for i, k in enumerate(["a1", "a2", "b7", "zz"])}
    assert sorted(store.keys()) == ["a1", "a2", "b7", "zz"]
    assert store.contains("b7") and store.path("b7") == store.root / "objects" / "b7" / "b7"
    info = store.info("b7")
    assert info == saved["b7"] and info.size == StoredEntry(store, "b7").size
    assert store.save("copy", {"v": np.arange(3)}).checksum == info.checksum
    assert info.checksum != saved["a1"].checksum
    assert store.remove("b7") is True and store.remove("b7") is False
    assert not store.contains("b7") and "b7" not in set(store.keys())


def test_saving_again_replaces_the_entry(store: Store) -> None:
    store.save("k", "first")
    store.save("k", np.arange(5))
    assert_same(store.load("k"), np.arange(5))


@pytest.mark.parametrize("key", ["", "../x", "a/b", ".hidden", "x" * 201, 5])
def test_invalid_keys_are_rejected(store: Store, key: object) -> None:
    with pytest.raises(ValueError):
        store.path(key)  # type: ignore[arg-type]


def test_clean_tmp_removes_only_stale_files(store: Store) -> None:
    tmp = store.root / "tmp"
    stale = tmp / "k1.0123abcd-999999-1.tmp"
    fresh = tmp / "k2.4567abcd-999999-1.tmp"
    mine = tmp / f"k3.89abcdef-{os.getpid()}-{threading.get_ident()}.tmp"
    for p in (stale, fresh, mine):
        p.write_bytes(b"partial")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    assert store.clean_tmp() == 1 and not stale.exists() and fresh.exists()
    assert store.clean_tmp(older_than=0) == 1 and not fresh.exists()
    assert mine.exists()  # a live writer of this process is left alone


# -- a writer killed mid-write --------------------------------------------------------------------

CHILD = """
import sys
import numpy as np
from ndustria.store.entries import Store
store = Store(sys.argv[1], fsync=False)
value = np.full(300 * 2**20 // 8, 7.0)
print("ready", flush=True)
while True:
    store.save("killed", value)
"""


def _partial_file_exists(root: Path, full: int) -> bool:
    for p in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):  # renamed into place meanwhile
            if 16 << 20 < p.stat().st_size < full:
                return True
    return False


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_while_writing_leaves_no_partial_entry(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    package_parent = str(Path(store_module.__file__).resolve().parents[2])  # ndustria/store/entries.py
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([package_parent, os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root)], stdout=subprocess.PIPE, env=env, cwd=tmp_path
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 120  # a safety net, not a performance threshold
        while not _partial_file_exists(root, 300 << 20):  # kill while a file is half-written
            assert child.poll() is None, "the writer died on its own"
            assert time.monotonic() < deadline, "no half-written file was ever seen"
            time.sleep(0.001)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    try:
        store = Store(root)
        if store.contains("killed"):
            store.verify("killed")
            got = store.load("killed", mmap=True)
            assert got.shape == (300 * 2**20 // 8,) and got[0] == got[-1] == 7.0
            del got
        store.clean_tmp(older_than=0)  # the dead writer's temp file goes
        assert list((root / "tmp").glob("*.tmp")) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)  # do not keep 300 MB in pytest's retained tmp dirs


@pytest.mark.parametrize("hdr", [
    entry_format.Header((64, 10), [], "ab" * 16, "cd" * 16, "ef" * 32),
    entry_format.Header((128, 7), [(192, 8), (256, 0)], "0" * 32, "f" * 32, "1" * 64),
    entry_format.Header((64, 10), [], 'x", "pickle_sha256": "', "cd" * 16, "ef" * 32),  # an edited header
])
@pytest.mark.parametrize("key", ["k", "a" * 32, "Z_-9" * 50])
def test_the_signed_message_is_the_json_of_what_it_covers(hdr, key) -> None:
    assert entry_format.signed_message(key, hdr) == entry_format.dumps(
        {"format": FORMAT_VERSION, "key": key, "pickle": list(hdr.pickle), "buffers": [list(r) for r in hdr.buffers],
         "pickle_sha256": hdr.pickle_sha256, "pickle_digest": hdr.pickle_digest, "buffers_digest": hdr.buffers_digest})


def test_sync_makes_exactly_what_was_written_durable(tmp_path: Path, monkeypatch) -> None:
    """``sync()`` after deferred saves fsyncs each entry file written since the last sync, its folders
    and the small entries' table, not the whole filesystem (a syncfs also writes out every other
    program's dirty files); past ``SYNC_FILES`` files it syncs the filesystem once instead."""
    store = Store(tmp_path / "cache", fsync=False)
    synced = spy_fsync(monkeypatch)
    filesystem = []
    monkeypatch.setattr(store_module, "_SYNCFS", lambda fd: filesystem.append(fd) or 0)
    big = [np.full(100_000, i, dtype=np.float64) for i in range(3)]
    infos = [store.save(f"{i:032x}", big[i], defer=True) for i in range(3)]
    store.save("a" * 32, 7, defer=True)
    store.sync()
    files = {os.fspath(info.path) for info in infos}
    assert files <= set(synced)
    assert {os.path.dirname(f) for f in files} <= set(synced) and os.fspath(store.root / "objects") in synced
    assert os.fspath(store.root / "objects.sqlite-wal") in synced and filesystem == []
    assert os.fspath(store.root) in synced  # the log's own name (each process makes a new log)
    synced.clear()
    store.sync()  # nothing written since: nothing of the files again
    assert not files & set(synced)
    for i in range(store_module.SYNC_FILES + 1):
        store.save(f"{i + 100:032x}", big[0], defer=True)
    before = len(synced)
    store.sync()
    assert len(filesystem) == 1 and not [f for f in synced[before:] if os.sep + "objects" in f]
    assert store.load("a" * 32) == 7 and all(np.array_equal(store.load(f"{i:032x}"), big[i]) for i in range(3))


@pytest.mark.parametrize("backend", ["serial", "processes"])
def test_run_makes_the_files_its_workers_wrote_durable(tmp_path: Path, monkeypatch, backend: str) -> None:
    """run() syncs every entry file its tasks wrote, whichever store or worker process wrote it (the
    workers of local backends save without syncing; the pipeline's one sync covers them)."""
    from ndustria import Pipeline

    monkeypatch.setattr(store_module, "_SYNCFS", lambda fd: pytest.fail("the whole filesystem was synced"))
    pipe = Pipeline(name="durable", cache_dir=tmp_path / "cache", backend=backend, verbose=False,
                    **({"engines": 2} if backend == "processes" else {}))

    @pipe.AddFunction()
    def big(i):
        return np.full(50_000, i, dtype=np.float64)

    handles = [big(i) for i in range(4)]
    synced = spy_fsync(monkeypatch)
    pipe.run()
    pipe.close()
    files = [h.path for h in handles]
    assert all(os.path.isfile(f) for f in files) and set(files) <= set(synced)
    assert os.fspath(tmp_path / "cache" / "objects.sqlite-wal") in synced or not os.path.exists(
        tmp_path / "cache" / "objects.sqlite-wal")


def test_a_sync_returns_only_once_what_another_sync_took_is_durable(tmp_path: Path, monkeypatch) -> None:
    """Threads sharing a store (a thread-pool executor's batches) each sync before they report: a sync
    that finds the list empty because another sync took it waits for that sync's fsyncs."""
    store = Store(tmp_path / "cache", fsync=False)
    info = store.save("b" * 32, np.zeros(100_000), defer=True)
    done: list[float] = []
    synced = spy_fsync(monkeypatch, delay_for=info.where, done=done)
    first = threading.Thread(target=store.sync)
    first.start()
    deadline = time.monotonic() + 30
    while info.where not in synced:  # the first sync has taken the file and is writing it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    store.sync()  # the file is the first sync's to write: this one must not return before it is
    returned = time.monotonic()
    first.join()
    assert done and returned >= done[0]


def test_an_interrupted_run_makes_what_it_reported_saved_durable(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C during run(): the results the run reported saved before it are synced before it ends
    (no later run syncs them: they are cache hits there)."""
    from ndustria import Pipeline

    pipe = Pipeline(name="interrupted", cache_dir=tmp_path / "cache", verbose=False)

    @pipe.AddFunction()
    def big(i):
        return np.full(50_000, i, dtype=np.float64)

    @pipe.AddFunction()
    def stop(a):
        raise KeyboardInterrupt

    first = big(1)
    stop(first)
    synced = spy_fsync(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        pipe.run()
    pipe.close()
    assert first.status == "done" and os.path.isfile(first.path) and first.path in synced


NUMPY_LATE = '''
import sys
from ndustria import Pipeline

def small(i):
    return i + 1

def big(i):
    return bytes([i]) * 200_000  # more than a small entry holds: a file of its own

pipe = Pipeline(name="late", verbose=False)
small, big = (pipe.AddFunction()(f) for f in (small, big))
handles = [small(i) for i in range(20)]
pipe.run()
print(sum(h.result() for h in handles), "numpy" in sys.modules)
if sys.argv[1] == "big":
    b = big(7)
    pipe.run()
    print(b.result() == bytes([7]) * 200_000, "numpy" in sys.modules)
'''


def test_numpy_is_imported_only_when_a_file_entry_is_loaded(tmp_path: Path) -> None:
    """A script whose results are all small never imports numpy (a worker of tiny tasks started ~0.1 s
    sooner); loading a file entry imports it then and reads the same bytes, in a fresh process too."""
    script = tmp_path / "late.py"
    script.write_text(NUMPY_LATE)
    env = {"NDUSTRIA_CACHE_DIR": str(tmp_path / "cache")}
    outputs = []
    for run in ("small", "small", "big", "big"):  # cold, warm; a file entry computed, then found
        out = run_python(script, run, cwd=tmp_path, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout.split())
    assert outputs[:2] == [["210", "False"]] * 2
    assert outputs[2][:3] == ["210", "False", "True"]  # computed: the value as returned
    assert outputs[3] == ["210", "False", "True", "True"]  # found: read from its file, numpy imported then
