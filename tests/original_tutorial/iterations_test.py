# The original ndustria's tutorial script iterations_test.py, reconstructed from the original's tutorial
# page "ndustria Iterations" (docs/source/tutorials/iterations_test.rst: create_random_array feeds do_sum,
# do_mean and do_std, which all feed view_data), with the import path and the module-level `rerun` flag
# of the original's scripts. A fixture of tests/test_original_api.py: it must run unchanged.
# Changed: only the array sizes (10**3, 10**4 instead of 10**5 ... 10**7).
import numpy as np
from ndustria.Pipeline import Pipeline

pipe = Pipeline()

rerun = False


@pipe.AddFunction(rerun = rerun)
def create_random_array(N=10):
    return np.random.rand(N)


@pipe.AddFunction(rerun = rerun)
def do_sum(data):
    return {"sum": np.sum(data), "length": len(data)}


@pipe.AddFunction(rerun = rerun)
def do_mean(data):
    return {"mean": np.mean(data), "length": len(data)}


@pipe.AddFunction(rerun = rerun)
def do_std(data):
    return {"std": np.std(data), "length": len(data)}


@pipe.AddFunction(rerun = rerun)
def view_data(sum_data, mean_data, std_data):
    print(f"""
    Viewing data for {sum_data['length']} random numbers:
            Sum     : {sum_data['sum']}
            Mean    : {mean_data['mean']}
            Std dev : {std_data['std']}
    """)


for i in range(3, 5):
    N = 10**i
    random_array = create_random_array(N=N)
    a = do_sum(random_array)
    b = do_mean(random_array)
    c = do_std(random_array)
    view_data(a, b, c)

pipe.run()
