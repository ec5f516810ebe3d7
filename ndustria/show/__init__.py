"""Step 8 of a task's life, **show**: what a person reads.

- :mod:`~ndustria.show.console` prints the original's console lines and a progress bar, and keeps
  the run's log;
- :mod:`~ndustria.show.reports` turns catalog rows into tables (timing, memory, line profiles, runs) for
  the CLI, the notebook and the lab sidebar alike; a run's cache hits carry the run that computed them;
- :mod:`~ndustria.show.figures` draws the same rows as plotly figures (plotly imported only there);
- :mod:`~ndustria.show.runfiles` writes a run's report files and log into the cache directory;
- :mod:`~ndustria.show.cli` is the ``ndustria`` command.

May import everything below it (run, record, store, keys, records); only the pipeline and the
notebook layer (:mod:`ndustria_nb`) import it.
"""
