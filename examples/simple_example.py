"""The ndustria tutorial, step 1: declare tasks, run them, run again to see the cache at work.

    python examples/simple_example.py    # computes 10 tasks
    python examples/simple_example.py    # every task is a cache hit
"""

import numpy as np

from ndustria import Pipeline

pipe = Pipeline()


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
