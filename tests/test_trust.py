"""Signed entries: a shared cache cannot make a user unpickle bytes no trusted key signed."""

from __future__ import annotations

import json
import pickle
import stat
import struct
from pathlib import Path

import numpy as np
import pytest
import xxhash
from support import Canary, StoredEntry

from ndustria import NdustriaWarning, Pipeline
from ndustria.errors import UntrustedEntryError
from ndustria.store.entries import Store
from ndustria.store.trust import key_id, load_keyring, read_key


@pytest.fixture
def mallory(tmp_path: Path, monkeypatch) -> Store:
    """A store on the same cache directory, writing with another user's key."""
    with monkeypatch.context() as m:
        m.setenv("NDUSTRIA_SECRET_KEY_FILE", str(tmp_path / "mallory.key"))
        keyring = load_keyring()
    return Store(tmp_path / "cache", fsync=False, keyring=keyring)


def rewrite_header(path: Path, edit, version: int | None = None) -> None:
    """Change an entry's header JSON and fix its (unkeyed) header checksum, as an attacker can."""
    raw = bytearray(path.read_bytes())
    magic, old_version, hlen = struct.unpack_from("<8sII", raw)
    head = json.loads(raw[16 : 16 + hlen])
    edit(head)
    new = json.dumps(head, separators=(",", ":"), sort_keys=True).encode()
    block = struct.pack("<8sII", magic, version or old_version, len(new)) + new
    block += xxhash.xxh3_128_digest(block)
    start = head["pickle"][0]
    assert len(block) <= start
    raw[:start] = block + bytes(start - len(block))
    path.write_bytes(bytes(raw))


def test_secret_key_is_private_and_outside_the_cache(cache_dir: Path, tmp_path: Path, monkeypatch) -> None:
    key_file = tmp_path / "keys" / "me.key"
    monkeypatch.setenv("NDUSTRIA_SECRET_KEY_FILE", str(key_file))
    store = Store(cache_dir)
    store.save("a", 1)
    assert key_file.exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not str(key_file).startswith(str(cache_dir))
    assert store.load("a") == 1
    assert Store(cache_dir).keyring.signer == key_id(read_key(key_file))  # the same key next time


def test_entry_of_an_unknown_key_is_never_unpickled(tmp_path: Path, mallory: Store) -> None:
    flag = tmp_path / "flag"
    mallory.save("evil", {"x": Canary(flag)})
    mine = Store(tmp_path / "cache", fsync=False)
    with pytest.raises(UntrustedEntryError, match="a key you do not trust"):
        mine.load("evil")
    with pytest.raises(UntrustedEntryError):
        mine.load("evil", mmap=True)
    mine.verify("evil")  # its checksums are fine: it is not damaged, only untrusted
    assert not flag.exists()


def test_forged_signer_is_never_unpickled(tmp_path: Path, mallory: Store) -> None:
    flag = tmp_path / "flag"
    mine = Store(tmp_path / "cache", fsync=False)
    mine.save("good", [1, 2, 3])
    mallory.save("good", {"x": Canary(flag)})  # replaces my entry, then claims to be me
    rewrite_header(StoredEntry(mine, "good"), lambda h: h.update(signer=mine.keyring.signer))
    with pytest.raises(UntrustedEntryError, match="bad signature"):
        mine.load("good")
    assert not flag.exists()


def test_swapped_pickle_under_a_valid_signature_is_rejected(tmp_path: Path) -> None:
    """Only the SHA-256 of the pickle could stop this: the xxh3 digests are recomputed too."""
    flag = tmp_path / "flag"
    mine = Store(tmp_path / "cache", fsync=False)
    mine.save("v", "x" * 40)
    path = StoredEntry(mine, "v")
    raw = bytearray(path.read_bytes())
    _, _, hlen = struct.unpack_from("<8sII", raw)
    head = json.loads(raw[16 : 16 + hlen])
    off, n = head["pickle"]
    evil = pickle.dumps(Canary(flag), protocol=5)
    assert len(evil) >= n
    raw[off:] = evil
    path.write_bytes(bytes(raw))
    rewrite_header(path, lambda h: h.update(pickle=[off, len(evil)],
                                            pickle_digest=xxhash.xxh3_128_hexdigest(evil)))
    with pytest.raises(UntrustedEntryError, match="SHA-256"):
        mine.load("v")
    assert not flag.exists()


def test_unsigned_format_1_entry_is_a_miss(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache", fsync=False)
    store.save("old", 42)
    rewrite_header(StoredEntry(store, "old"), lambda h: [h.pop(k) for k in ("signer", "signature", "pickle_sha256")],
                   version=1)
    store.verify("old")  # a well-formed format-1 entry
    with pytest.raises(UntrustedEntryError, match="no signature"):
        store.load("old")


def test_trusted_keys_from_the_config_file(tmp_path: Path, mallory: Store, monkeypatch) -> None:
    mallory.save("shared", np.arange(5))
    mine = Store(tmp_path / "cache", fsync=False)
    with pytest.raises(UntrustedEntryError):
        mine.load("shared")
    team = tmp_path / "team"
    team.mkdir()
    (team / "mallory.key").write_text((tmp_path / "mallory.key").read_text())
    config = tmp_path / "config" / "config.toml"
    config.parent.mkdir()
    for value in (f'"{team}"', f'["{team / "mallory.key"}"]'):  # a directory, or a list of key files
        config.write_text(f"trusted_keys = {value}\n")
        assert list(Store(tmp_path / "cache", fsync=False).load("shared")) == [0, 1, 2, 3, 4]


class _CallLog(list):
    """A side-effect log the tasks append to; its token keeps it out of their code fingerprints (a plain
    list they read would count as an input, and appending to it would change their keys)."""

    def __ndustria_token__(self) -> str:
        return "call-log"


def test_pipeline_recomputes_an_untrusted_entry_with_a_warning(tmp_path: Path, cache_dir: Path,
                                                               monkeypatch) -> None:
    calls = _CallLog()
    pipe = Pipeline(name="trust", verbose=False)

    @pipe.AddFunction()
    def value(i):
        calls.append(i)
        return i * 10

    @pipe.AddFunction()
    def plus_one(v):
        calls.append(("plus", v))
        return v + 1

    handle = plus_one(value(4))
    with monkeypatch.context() as m:
        m.setenv("NDUSTRIA_SECRET_KEY_FILE", str(tmp_path / "other.key"))
        Store(cache_dir).save(handle.deps[0].key, 666)  # another user's (untrusted) result
    with pytest.warns(NdustriaWarning, match="damaged"):
        pipe.run()
    assert handle.result() == 41
    assert calls == [4, ("plus", 40)]  # recomputed; 666 was never loaded
    assert Store(cache_dir).contains(handle.key)
