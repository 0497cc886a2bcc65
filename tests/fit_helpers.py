"""Small problems the ``fit`` test modules share (``from tests.fit_helpers import ...``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def regression_data(n=48, seed=0):
    """``(x, y)``: ``n`` examples of a noiseless linear target, ``x`` of shape ``(n, 3)``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3)[:, None].astype(np.float32)
    return x, y


def linear_params():
    return {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}
