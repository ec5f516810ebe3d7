"""The ndustria tutorial, step 3: the Pipeline's keyword arguments.

    python examples/pipeline_kwargs.py                  # parallel on local engines
    mpiexec -n 4 python examples/pipeline_kwargs.py     # parallel on MPI ranks (pip install mpich mpi4py)
    ndustria -t kwargs    # timings      ndustria -m kwargs    # memory      ndustria -p kwargs    # line profiles

Its sizes differ from simple_example.py's, so its tasks are computed here, measured by the instruments
it turns on (a cache hit keeps the numbers of the run that computed it).
"""

import numpy as np

from ndustria import Pipeline

pipe = Pipeline(name="kwargs", parallel=True, timeit=True, profiling=True, memcheck=True)


@pipe.AddFunction()
def matrix_multiplication(N):
    rng = np.random.default_rng(N)
    a = rng.random((N, N))
    b = rng.random((N, N))
    return a @ b


@pipe.AddFunction()
def matrix_parameters(matrix):
    print()
    print("-" * 40)
    print(f"Datatype of Matrix Object: {type(matrix)}")
    print(f"Size of Matrix: {matrix.shape}")
    print(f"Total Number of Elements: {matrix.size}")
    print("-" * 40)
    print()
    return {"shape": matrix.shape, "mean": float(matrix.mean())}


for N in (100, 200, 400, 800, 1600):
    matrix = matrix_multiplication(N=N)
    matrix_parameters(matrix)

pipe.run()
