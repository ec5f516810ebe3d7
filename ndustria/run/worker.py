"""The one function that runs a task, wherever it runs (in-process, loky, ipyparallel, MPI).

It loads the task's inputs from the store, calls the function (inside the
requested instruments), writes the result to the store and returns a small
:class:`TaskReport`. Results travel through the store, not through the
scheduler — unless the engines do not share the cache directory, in which case
the value travels back in the report and the scheduler stores it.

``File`` arguments (pinned to the snapshot the key was made from, see :mod:`ndustria.keys.files`)
reach the task as ``pathlib.Path``; they are re-stat'ed just before the call and right after
it, and a changed content fails the task (not run, or its result not stored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import pickle
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ndustria.errors import (
    CacheWriteError,
    CorruptEntryError,
    InputFileChangedError,
    NdustriaError,
    ResultNotPicklableError,
)
from ndustria.keys import files
from ndustria.record import instruments
from ndustria.record.instruments import call_instrumented
from ndustria.records import DepRef, TaskPayload, TaskReport
from ndustria.store.entries import Store
from ndustria.store.locks import KeyLock
from ndustria.store.writer import ResultWriter
from ndustria.task import replace_handles

_ENGINE_ID: str | None = None
_HOST = socket.gethostname()
_STORES: dict[tuple[str, bool], Store] = {}
_STORES_LOCK = threading.Lock()


def set_engine_id(engine_id: str) -> None:
    """Name this process in reports (an MPI rank, an ipyparallel engine id)."""
    global _ENGINE_ID
    _ENGINE_ID = engine_id


def engine_id() -> str:
    return _ENGINE_ID if _ENGINE_ID is not None else f"pid{os.getpid()}"


def get_store(root: str, fsync: bool = True) -> Store:
    with _STORES_LOCK:
        store = _STORES.get((root, fsync))
        if store is None:
            store = _STORES[(root, fsync)] = Store(root, fsync=fsync)
        return store


@dataclass
class Claim:
    """A payload's right to compute: its key's lock (None: it runs unlocked, as without a shared
    cache or with ``rerun``) and the entry another process stored meanwhile, if any."""

    lock: KeyLock | None
    found: Any = None  # an EntryInfo


def claim(payload: TaskPayload, blocking: bool = True) -> Claim | None:
    """Take the payload's compute lock, then look in the store again.

    Without ``blocking``, None when another process or thread holds the lock.
    """
    if not payload.shared_cache or payload.rerun:
        return Claim(None)
    store = get_store(payload.store_root, payload.fsync)
    key = payload.store_key or payload.key
    lock = KeyLock(store.root, key)
    if not lock.acquire(blocking):
        return None
    try:
        return Claim(lock, _stored(store, key))
    except BaseException:
        lock.release()
        raise


# id(claim) -> a claim a batch took ahead of its task (claim_batch), until the task starts. Whoever pops an
# entry owns its lock: the batch when the task starts (start_claimed), a pipeline run starting anywhere in
# this process (give_back_ahead). Keyed by the claim, not by its key: a batch pops only its own claim
# (two batches of one process may list the same key in turn).
_AHEAD: dict[int, Claim] = {}


def claim_batch(payloads: Sequence[TaskPayload]) -> list[Claim | None]:
    """:func:`claim` without waiting for each of ``payloads``, the store looked in once for all of them:
    every free lock is taken first, then one query finds what another process stored
    (a look-up of its own cost a task ~7 us among 300,000 rows, ~4 us among 3,000). None where another
    process or thread holds the key, or the same key came earlier in the batch.

    A claim stays listed as taken ahead until the batch starts its task (:func:`start_claimed`): a
    pipeline run that starts meanwhile in this process (a task of the batch running a pipeline, on any
    backend) gives it back first (:func:`give_back_ahead`), so that it never waits for a lock held by the
    batch that waits for it. Release what is left with :func:`release_claims` (also done here if anything
    raises)."""
    claims: list[Claim | None] = [None] * len(payloads)
    ahead = _AHEAD
    taken: list[KeyLock] = []  # listed before acquire(): a Ctrl-C cannot lose one (release() of a free one is a no-op)
    by_store: dict[tuple[str, bool], list[tuple[int, str]]] = {}
    try:
        for i, payload in enumerate(payloads):
            if not payload.shared_cache or payload.rerun:
                claims[i] = Claim(None)
                continue
            key = payload.store_key or payload.key
            lock = KeyLock(get_store(payload.store_root, payload.fsync).root, key)
            taken.append(lock)
            if lock.acquire(False):
                claims[i] = claimed = Claim(lock)
                ahead[id(claimed)] = claimed
                by_store.setdefault((payload.store_root, payload.fsync), []).append((i, key))
        for (store_root, fsync), items in by_store.items():
            store = get_store(store_root, fsync)
            present = store.known_checksums([key for _, key in items])
            for i, key in items:
                if key in present:
                    claims[i].found = _info(store, key)  # type: ignore[union-attr]
    except BaseException:
        _unlist(claims)  # only this batch's own: a key an enclosing batch took ahead stays listed
        for lock in taken:
            lock.release()
        raise
    return claims


def start_claimed(payload: TaskPayload, claimed: Claim | None) -> Claim | None:
    """The claim task ``payload`` of a batch runs under: the one :func:`claim_batch` took, or, if a pipeline
    run gave it back meanwhile, a claim made now (None: someone holds the key; the batch runs it last)."""
    if claimed is None or claimed.lock is None:
        return claimed
    if _AHEAD.pop(id(claimed), None) is claimed:
        return claimed
    return claim(payload, blocking=False)


def give_back_ahead() -> int:
    """A pipeline run is starting in this process: give back every claim a batch took ahead of a task
    that has not started, so that the run can take any key. A task of a batch that runs a pipeline
    needing a later task of that batch would otherwise wait for a lock its own batch holds, and the
    batch for the task (with the pipeline's tasks on other threads or processes too). The batches claim
    those keys again when they reach them, and find what the run stored. Returns how many."""
    given = 0
    for ident in list(_AHEAD):
        claimed = _AHEAD.pop(ident, None)
        if claimed is not None and claimed.lock is not None:
            claimed.lock.release()
            given += 1
    return given


def release_claims(claims: Sequence[Claim | None]) -> None:
    """At the end of a batch, once what it saved is committed: release every lock of ``claims`` (those
    released already stay released), also of a task that an interrupt stopped between taking its claim
    and the code that releases it."""
    _unlist(claims)
    for claimed in claims:
        if claimed is not None and claimed.lock is not None:
            claimed.lock.release()


@contextlib.contextmanager
def batch_claims(payloads: Sequence[TaskPayload], commit: Callable[[], None],
                 commit_soon: Callable[[Callable[[], None]], None] | None = None
                 ) -> Iterator[Callable[[int], Claim | None]]:
    """A batch's claims (:func:`claim_batch`) for the block; it gets ``start(i)``, the claim task ``i`` runs
    under (:func:`start_claimed`; None: someone else holds the key, run the task after the block). However
    the block ends, ``commit()`` (what was saved becomes visible, which releases those tasks' keys) and
    then every claim is released, also one an interrupt caught between ``start(i)`` and the task's own
    release (the claim ``start`` returns is kept for that). With ``commit_soon``, a block that ends well
    calls ``commit_soon(release)`` instead, which must call ``release()`` once what was saved is visible
    (or at once if it raises)."""
    claims = claim_batch(payloads)

    def start(i: int) -> Claim | None:
        claims[i] = start_claimed(payloads[i], claims[i])
        return claims[i]

    def release() -> None:
        release_claims(claims)

    try:
        yield start
    except BaseException:
        try:
            commit()
        finally:
            release()
        raise
    if commit_soon is None:
        try:
            commit()
        finally:
            release()
    else:
        commit_soon(release)


def _unlist(claims: Sequence[Claim | None]) -> None:
    """Take ``claims`` off the list of claims taken ahead (they are alive: no other object has their id)."""
    for claimed in claims:
        if claimed is not None:
            _AHEAD.pop(id(claimed), None)


def execute(payload: TaskPayload, writer: ResultWriter | None = None, claimed: Claim | None = None) -> TaskReport:
    """Run one task and store its result. Never raises for a task's own failure.

    Unless the payload skips the shared cache or must run whatever is stored (``rerun``), the
    key's compute lock is held from before the store is checked until the result is stored: a
    process that waited for it finds the entry and reports it as found, without recomputing.
    ``claimed``: the lock taken (and the store checked) already, by :func:`claim`. With
    ``writer`` the result is saved on the writer's thread, which then releases the lock; the
    report is complete once the writer is closed.
    """
    store = get_store(payload.store_root, payload.fsync)
    held = claimed if claimed is not None else claim(payload)
    assert held is not None  # a blocking claim always succeeds
    lock = held.lock
    try:
        if held.found is not None:
            return found_report(payload, held.found)
        report, value, ok = _compute(payload, store, thread_cpu=writer is not None)
        if not ok or not payload.shared_cache:
            return report
        if writer is not None:
            writer.submit(functools.partial(_finish_then_release, payload, store, value, report, lock))
            lock = None  # the writer's job releases it once the result is stored
            return report
        return _finish(payload, store, value, report)
    finally:
        if lock is not None:
            _release_when_visible(payload, store, lock)


def _release_when_visible(payload: TaskPayload, store: Store, lock: KeyLock) -> None:
    """Release a key's compute lock once its entry is visible to other processes: a grouped save is
    committed with its batch, and another process taking the lock earlier would compute it again."""
    if payload.grouped:
        store.after_commit(lock.release)
    else:
        lock.release()


def _stored(store: Store, key: str) -> Any:
    """The entry's info if another process stored it (a damaged entry counts as missing: it is replaced)."""
    return _info(store, key) if store.contains(key) else None


def _info(store: Store, key: str) -> Any:
    try:
        return store.info(key)
    except CorruptEntryError:
        return None


def _compute(payload: TaskPayload, store: Store, thread_cpu: bool) -> tuple[TaskReport, Any, bool]:
    """Load the inputs and call the task: (report, value, whether it returned)."""
    report = TaskReport(key=payload.key, status="failed", engine=engine_id(), host=_HOST, pid=os.getpid(),
                        store_key=payload.store_key or payload.key)
    try:
        args, kwargs = _load_inputs(payload, store)
    except _BadInputs as bad:
        report.bad_inputs = bad.keys
        report.error = f"inputs of {payload.name} could not be loaded: {bad}"
        return report, None, False
    pinned = None
    if payload.files:  # File inputs must still hold the content the key names (files.verify)
        pinned = _check_files(payload, report, "before")
        if pinned is None:
            return report, None, False
    try:  # the timer (always) and the requested instruments fill the report's timings and metrics
        value = call_instrumented(payload.instruments, payload.func, args, kwargs, report, thread_cpu=thread_cpu)
    except Exception as exc:
        report.error = _format_exception(exc)
        report.exception = _portable(exc)
        return report, None, False
    if pinned is not None and _check_files(payload, report, "after", pinned) is None:
        return report, None, False  # a File changed while the task read it: its result must not be stored
    if not payload.shared_cache:  # the value travels back in the report; the scheduler stores it
        report.value, report.has_value, report.status = value, True, "done"
    return report, value, True


def found_report(payload: TaskPayload, info: Any) -> TaskReport:
    """The report of a task whose entry another process stored (``info``: its EntryInfo)."""
    return TaskReport(key=payload.key, status="done", engine=engine_id(), host=_HOST,
                      pid=os.getpid(), path=info.where, size=info.size, checksum=info.checksum, found=True,
                      store_key=payload.store_key or payload.key)


def _finish_then_release(payload: TaskPayload, store: Store, value: Any, report: TaskReport,
                         lock: KeyLock | None) -> None:
    """A write-behind job: store the result, record the outcome in the report, release the key."""
    try:
        _finish(payload, store, value, report)
    except BaseException as exc:  # noqa: BLE001 - recorded in the report, which the scheduler reads
        report.status, report.value, report.has_value = "failed", None, False
        report.error = f"the result of {payload.name} could not be stored: {type(exc).__name__}: {exc}"
        report.exception = NdustriaError(report.error)
    finally:
        if lock is not None:
            _release_when_visible(payload, store, lock)


def _finish(payload: TaskPayload, store: Store, value: Any, report: TaskReport) -> TaskReport:
    """Store the result; the report says where, or why it could not be stored."""
    try:
        info = store.save(payload.store_key or payload.key, value, defer=payload.grouped)
    except ResultNotPicklableError as exc:
        report.error = f"the result of {payload.name} cannot be stored: {exc}"
        report.exception = ResultNotPicklableError(report.error)
        return report
    except CacheWriteError as exc:  # disk full, read-only cache: nothing partial was left
        if payload.on_cache_error == "warn":  # the scheduler keeps the value in memory
            report.value, report.has_value, report.status = value, True, "done"
            return report
        report.error = f"the result of {payload.name} cannot be stored: {exc}"
        report.exception = CacheWriteError(report.error, exc.errno, exc.path, exc.reason)
        return report
    report.path, report.size, report.checksum, report.status = info.where, info.size, info.checksum, "done"
    return report


class _BadInputs(Exception):
    def __init__(self, keys: list[str], reason: str) -> None:
        super().__init__(reason)
        self.keys = keys


def _check_files(payload: TaskPayload, report: TaskReport, moment: str,
                 pinned: list[Any] | None = None) -> list[Any] | None:
    """The payload's pinned Files re-checked (``moment``: "before"/"after" the call); None, with the
    report filled, when one no longer holds the content the task's key was made from."""
    try:
        return files.verify(payload.name, files.pinned_files(payload.args, payload.kwargs) if pinned is None
                            else pinned, moment)
    except InputFileChangedError as exc:
        report.error = "".join(traceback.format_exception_only(type(exc), exc))
        report.exception = exc
        return None


def _load_inputs(payload: TaskPayload, store: Store) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if payload.files:  # the task receives a pathlib.Path for each File (DepRefs are resolved below)
        payload = dataclasses.replace(payload, args=files.as_paths(payload.args),
                                      kwargs=files.as_paths(payload.kwargs))
    if not payload.refs:
        return payload.args, payload.kwargs
    values: dict[str, Any] = dict(payload.inputs)
    bad: list[str] = []
    reasons: list[str] = []

    def resolve(ref: DepRef) -> Any:
        if ref.key not in values:
            try:
                values[ref.key] = store.load(ref.key)
            except (KeyError, CorruptEntryError) as exc:
                bad.append(ref.id or ref.key)  # the scheduler knows its inputs by id
                reasons.append(str(exc))
                values[ref.key] = None
        return values[ref.key]

    def is_ref(x: Any) -> bool:
        return isinstance(x, DepRef)

    args = replace_handles(payload.args, resolve, is_ref)
    kwargs = replace_handles(payload.kwargs, resolve, is_ref)
    if bad:
        raise _BadInputs(bad, "; ".join(reasons))
    return args, kwargs


def _format_exception(exc: BaseException) -> str:
    """The task's own traceback, without ndustria's frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in (__file__, instruments.__file__):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _portable(exc: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else an NdustriaError carrying its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return NdustriaError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
