# The original ndustria's tutorial script simple_example.py, reconstructed from the original README
# ("Simple Example": the tasks, the calls and the lines they print; the import path of the
# original's tutorial scripts, quoted in issue 14).
# A fixture of tests/test_original_api.py: it must run unchanged. Changed: only the matrix sizes
# (N = 32, 64, 128 instead of 1024 ... 16384).
import numpy as np
from ndustria.Pipeline import Pipeline

pipe = Pipeline()


@pipe.AddFunction()
def matrix_multiplication(N=10):
    left = np.random.rand(N, N)
    right = np.random.rand(N, N)
    return np.matmul(left, right)


@pipe.AddFunction()
def matrix_parameters(matrix):
    rows, cols = matrix.shape

    print("\n----------------------------------------")
    print("Datatype of Matrix Object:", type(matrix))
    print("Size of Matrix:", matrix.shape)
    print("Total Number of Elements:", rows * cols)
    print("----------------------------------------\n")

    return matrix.shape


def main():
    for i in range(5, 8):
        matrix = matrix_multiplication(N=2**i)
        matrix_parameters(matrix)

    pipe.run()


main()
