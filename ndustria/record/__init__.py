"""Step 7 of a task's life, **record**: what ran, where, for how long and with how much memory.

- :mod:`~ndustria.record.catalog` is the SQLite catalog of runs, tasks, entries and metrics,
  the one source of truth for every view; :mod:`~ndustria.record.schema` holds its tables,
  :mod:`~ndustria.record.held` the rows it writes in groups;
- :mod:`~ndustria.record.recorder` writes what the scheduler reports during a run (task states,
  rows, metrics, failures) and tells the console;
- :mod:`~ndustria.record.instruments` measures a task while it runs (timer, heap, RSS,
  line profiler) and puts the figures in its report;
- :mod:`~ndustria.record.bundle` carries results with their records to another machine
  (``pack`` / ``unpack``), :mod:`~ndustria.record.exchange` the catalog rows it takes and adds.

May import: :mod:`ndustria.store`, :mod:`ndustria.keys` and the records below them. Never the
runner or the views.
"""

from ndustria.record.catalog import Catalog

__all__ = ["Catalog"]
