"""fdl: functional deep learning in JAX.

Models are pure functions over parameter pytrees; every piece of deep-learning math is a small
function with its formula in the docstring and a test against an independent reference.
"""

from fdl import (
    activations,
    compare,
    data,
    initializers,
    losses,
    metrics,
    nn,
    optim,
    problems,
    regularizers,
    train,
)

__version__ = "0.1.0"

__all__ = [
    "activations",
    "compare",
    "data",
    "initializers",
    "losses",
    "metrics",
    "nn",
    "optim",
    "problems",
    "regularizers",
    "train",
]
