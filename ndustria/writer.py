"""Write-behind: results of a batch are saved on a background thread while the next task runs.

A batch of tiny tasks (:func:`ndustria.remote.execute_batch`) would otherwise spend a
good part of each task's time pickling, checksumming, signing and renaming its result.
:class:`ResultWriter` runs those saves on one thread, overlapping them with the next
task wherever that task releases the GIL (sleeps, I/O, numpy); at most ``depth``
results wait in memory, so a batch of large results cannot pile up. ``close()`` waits
for every save, so a batch's reports leave the engine only after its results are stored.

With ``flush`` (the store's filesystem sync), the writer also makes what it saved durable
every ``every`` seconds while the batch runs, so the one sync a batch must end with
(before its reports leave) finds little left to write: a sync costs ~30 µs per dirty
file here, 2-10 ms at the end of a batch of tiny tasks when nothing was flushed before.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger("ndustria")


class ResultWriter:
    """One background thread running save jobs in order; ``submit`` blocks while ``depth`` are pending."""

    def __init__(self, depth: int = 16, flush: Callable[[], None] | None = None, every: float = 0.02) -> None:
        self._flush, self._every = flush, every
        self._slots = threading.Semaphore(depth)
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="ndustria-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job()`` on the writer thread; it must record its own errors (they are only logged here)."""
        self._slots.acquire()
        self._jobs.put(job)

    def close(self) -> None:
        """Wait for every submitted job to finish."""
        self._jobs.put(None)
        self._thread.join()

    def _loop(self) -> None:
        flushed = time.monotonic()
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException:  # noqa: BLE001 - a job's bug must not stop the saves behind it
                log.exception("a write-behind save failed")
            finally:
                self._slots.release()
            if self._flush is not None and time.monotonic() - flushed >= self._every:
                try:
                    self._flush()
                except OSError as exc:  # the batch's own final sync reports a real problem
                    log.debug("background sync failed: %s", exc)
                flushed = time.monotonic()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
