"""The engine side of a batch: results of tiny tasks are made durable once per batch."""

from __future__ import annotations

import os

from ndustria import remote
from ndustria.store import Store
from ndustria.worker import TaskPayload


def double(x):
    return 2 * x


def test_a_batch_syncs_once_instead_of_fsyncing_each_result(cache_dir, monkeypatch):
    payloads = [TaskPayload(key=f"{i:032x}", name=f"double({i})", func=double, args=(i,), kwargs={},
                            store_root=str(cache_dir)) for i in range(5)]
    fsyncs, syncs = [], []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(Store, "sync", lambda self: syncs.append(self.root))
    reports = remote.execute_batch(payloads)
    assert [r.status for r in reports] == ["done"] * 5
    assert fsyncs == [] and len(syncs) == 1  # one flush of the cache's filesystem for the whole batch
    store = Store(cache_dir)
    for i, p in enumerate(payloads):
        store.verify(p.key)
        assert store.load(p.key) == 2 * i


def test_a_single_task_keeps_its_own_fsync(cache_dir, monkeypatch):
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    payload = TaskPayload(key="f" * 32, name="double(1)", func=double, args=(1,), kwargs={},
                          store_root=str(cache_dir))
    assert remote.execute_batch([payload])[0].status == "done"
    assert fsyncs  # the file (and its directory) were fsynced before the rename was reported
