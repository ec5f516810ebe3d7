"""The ndustria tutorial, step 4: one producer feeding several consumers feeding one view.

Each consumer starts as soon as the producer's result exists; the view waits for all of them.
"""

import numpy as np

from ndustria import Pipeline

pipe = Pipeline()


@pipe.AddFunction()
def load_dataset(n_points, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_points, 3))


@pipe.AddFunction()
def moment(data, order):
    return float(np.mean(np.abs(data) ** order))


@pipe.AddFunction()
def view(moments):
    print()
    for order, value in enumerate(moments, start=1):
        print(f"moment {order}: {value:.4f}")
    print()
    return moments


data = load_dataset(n_points=200_000)
moments = [moment(data, order=k) for k in range(1, 5)]
summary = view(moments)

pipe.run()
print("moments:", [round(m, 4) for m in summary.result()])
