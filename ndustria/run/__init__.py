"""Steps 4 and 5 of a task's life, **schedule** and **execute**.

- :mod:`~ndustria.run.scheduler` submits each task as soon as its inputs exist, longest path first;
- :mod:`~ndustria.run.batching` sizes batches of tiny tasks from what a function took before;
- :mod:`~ndustria.run.backends` turns ``parallel=``/``backend=``/``executor=`` into an executor
  (serial, loky processes, ipyparallel, MPI, or the user's); :mod:`~ndustria.run.cluster` starts
  or attaches ipyparallel clusters;
- :mod:`~ndustria.run.pickling` ships calls as cloudpickle blobs that keep their file names;
- :mod:`~ndustria.run.remote` runs one task or a batch on an engine; :mod:`~ndustria.run.worker`
  runs one task: inputs from the store, the call inside its instruments, the result to the store;
- :mod:`~ndustria.run.mpi` is script mode under ``mpiexec`` (every rank calls ``run()``).

May import: :mod:`ndustria.record`, :mod:`ndustria.store`, :mod:`ndustria.keys` and the records
below them. Never the views or the pipeline.
"""
