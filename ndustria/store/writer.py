"""Background work of a batch: results saved behind the tasks, on threads that outlive the batch.

A batch of tiny tasks (:func:`ndustria.run.remote.execute_batch`) would otherwise spend a
good part of each task's time pickling, checksumming, signing and renaming its result.
:class:`ResultWriter` runs those saves in order on a background :class:`Lane`,
overlapping them with the next task wherever that task releases the GIL (sleeps, I/O,
numpy); at most ``depth`` results wait in memory, so a batch of large results cannot
pile up. ``close()`` waits for every save, so a batch's reports leave the engine only
after its results are stored.

With ``flush`` (the store's sync of what it wrote), the writer also makes what it saved durable
every ``every`` seconds while the batch runs, so the one sync a batch must end with
(before its reports leave) finds little left to write: a sync costs ~30 µs per dirty
file here, 2-10 ms at the end of a batch of tiny tasks when nothing was flushed before.
Syncs are not free for the tasks either, although they release the GIL: with one every
20 ms, the 1 ms sleeps of a batch took 1.15-1.18 ms on average, against 1.12-1.14 ms
with one every 0.1 s (and 1,000 such tasks on 2 engines ran ~3 % longer).

A lane's thread is started once per process and kept: ``Thread.start()`` waits until the
new thread runs, which took up to 12 ms per thread on a busy engine, at every batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger("ndustria")


class Lane:
    """One daemon thread running jobs in the order they were put, started on first use in each process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._mutex = threading.Lock()
        self._pid = -1
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def put(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the lane's thread; it must handle its own errors (they are only logged)."""
        with self._mutex:
            if self._pid != os.getpid():  # first use, or a forked child (threads do not survive fork)
                self._pid = os.getpid()
                self._jobs = queue.SimpleQueue()
                threading.Thread(target=self._loop, args=(self._jobs,), name=self.name, daemon=True).start()
            self._jobs.put(job)

    def wait(self) -> None:
        """Return once every job put before this call has finished."""
        done: queue.SimpleQueue[None] = queue.SimpleQueue()  # not an Event: see ResultWriter's slots
        self.put(lambda: done.put(None))
        done.get()

    @staticmethod
    def _loop(jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            job = jobs.get()
            try:
                job()
            except BaseException:  # noqa: BLE001 - a job's bug must not stop the jobs behind it
                log.exception("a background job of a batch failed")


SYNC_EVERY = 0.1  # seconds between the background syncs of a batch's results
SAVES = Lane("ndustria-writer")


class ResultWriter:
    """Runs save jobs in order on the :data:`SAVES` lane; ``submit`` blocks while ``depth`` are pending."""

    def __init__(self, depth: int = 16, flush: Callable[[], None] | None = None, every: float | None = None,
                 lane: Lane = SAVES) -> None:
        self._flush, self._every, self._lane = flush, SYNC_EVERY if every is None else every, lane
        # Free slots as tokens in a C-level queue, not a threading.Semaphore: a Ctrl-C landing inside the
        # Semaphore's pure-Python acquire could leave its lock held, and the lane's thread, shared by every
        # later batch of this process, would then wait for it for good in release(). Here an interrupt can
        # at worst lose one token (one slot less for the rest of this batch).
        self._slots: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(depth):
            self._slots.put(None)
        self._flushed = time.monotonic()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the writer's lane; it must record its own errors (they are only logged here)."""
        self._slots.get()
        self._lane.put(lambda: self._run(job))

    def flush_soon(self) -> None:
        """Sync after the next save, whenever the last sync was: the batch is about to end, and the
        sync it must end with (on its engine's critical path) then has only the last few results to write."""
        self._flushed = float("-inf")

    def close(self) -> None:
        """Wait for every submitted job to finish."""
        self._lane.wait()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException:  # noqa: BLE001 - a job's bug must not stop the saves behind it
            log.exception("a write-behind save failed")
        finally:
            self._slots.put(None)
        if self._flush is not None and time.monotonic() - self._flushed >= self._every:
            try:
                self._flush()
            except OSError as exc:  # the batch's own final sync reports a real problem
                log.debug("background sync failed: %s", exc)
            self._flushed = time.monotonic()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
