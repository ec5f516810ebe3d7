"""The ndustria tutorial, step 3: the Pipeline's keyword arguments.

    python examples/pipeline_kwargs.py                  # parallel on local engines
    mpiexec -n 4 python examples/pipeline_kwargs.py     # parallel on MPI ranks
    ndustria -t kwargs    # timings      ndustria -m kwargs    # memory      ndustria -p kwargs    # line profiles
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


for N in (128, 256, 512, 1024, 2048):
    matrix = matrix_multiplication(N=N)
    matrix_parameters(matrix)

pipe.run()
