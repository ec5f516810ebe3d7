"""Steps 3 and 6 of a task's life, **look up** and **store**: results on disk, whole or absent.

- :mod:`~ndustria.store.lookup` says whether a declared task's result is stored (and a dependent's
  cache key, from the checksums of its inputs' results);
- :mod:`~ndustria.store.format` encodes an entry's bytes (framing, checksums, signature) and checks them;
- :mod:`~ndustria.store.entries` reads and writes entries (``Store``: small ones as rows of
  :mod:`~ndustria.store.blobs`, committed in groups; others as files: temp file, rename);
- :mod:`~ndustria.store.wal` sets up ndustria's SQLite files (this one and the catalog) and checkpoints
  their write-ahead logs from a thread of their own;
- :mod:`~ndustria.store.trust` signs entries and decides whose entries may be unpickled;
- :mod:`~ndustria.store.locks` gives each key a compute lock shared by every process;
- :mod:`~ndustria.store.writer` saves results on a background thread with grouped syncs;
- :mod:`~ndustria.store.eviction` removes entries by size, age or damage (``cache gc/verify``).

May import: :mod:`ndustria.keys`, :mod:`ndustria.records`, :mod:`ndustria.errors`, :mod:`ndustria.config`.
Never the catalog, the runner or the views (eviction is handed the catalog it updates).
"""

from ndustria.store.entries import EntryInfo, Store

__all__ = ["EntryInfo", "Store"]
