"""fdl: functional deep learning in JAX.

Models are pure functions over parameter pytrees; every piece of deep-learning math is a small
function with its formula in the docstring and a test against an independent reference.
"""

from fdl import (
    activations,
    checkpoint,
    compare,
    data,
    fit,
    initializers,
    losses,
    metrics,
    models,
    nn,
    optim,
    parallel,
    plot,
    problems,
    regularizers,
    train,
    tree,
)

__version__ = "0.1.0"

__all__ = [
    "activations",
    "checkpoint",
    "compare",
    "data",
    "fit",
    "initializers",
    "losses",
    "metrics",
    "models",
    "nn",
    "optim",
    "parallel",
    "plot",
    "problems",
    "regularizers",
    "train",
    "tree",
]
