"""Step 3 of a task's life, **look up**: is a declared task's result already stored?

A task without task inputs is looked up by its id. A dependent's cache key names the results its
inputs actually produced (their checksums, read from the entries' headers), so it is known only
once every input is stored; until then it is None and the task is not a hit.
"""

from __future__ import annotations

from ndustria.errors import CorruptEntryError
from ndustria.keys.maker import result_key
from ndustria.store.entries import Store
from ndustria.task import TaskHandle


def dependent_key(handle: TaskHandle, store: Store) -> str | None:
    """A dependent's cache key: its id and the checksums of the results its inputs produced; None
    while an input has no stored result yet (or must run again first). An input whose entry was
    removed or damaged since it was found goes back to ``"declared"``: it runs again."""
    inputs = []
    for dep in handle.deps:
        if dep.status not in ("cached", "done") or dep.key is None:
            return None
        if not dep.checksum:
            try:
                info = store.info(dep.key)
            except CorruptEntryError:
                info = None
            if info is None:
                dep.status = "declared"
                return None
            dep.checksum = info.checksum
        inputs.append((dep.id, dep.checksum))
    return result_key(handle.id, inputs)
