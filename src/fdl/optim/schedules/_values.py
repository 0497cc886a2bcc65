"""How every schedule handles its numbers (a kernel module)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Value = Any  # a Python number, a NumPy scalar or a (possibly traced) JAX array


def prepare(value: Value, dtype: jnp.dtype) -> Value:
    """Keep a Python number as is (a weak type, rounded once, as optax does); cast arrays."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return jnp.asarray(value, dtype)


def float_count(count: Any, dtype: jnp.dtype) -> jax.Array:
    """The step count as an array of the schedule dtype."""
    return jnp.asarray(count).astype(dtype)
