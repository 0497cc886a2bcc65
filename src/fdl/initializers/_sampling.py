"""Dtype rules and jitted samplers shared by the random initializers (a kernel module).

Samplers are jitted with shape and dtypes static: drawing, scaling and casting compile once per
shape as one computation instead of once per eager operation. Scales and bounds are traced, so
initializers that differ only in those share the compiled code. I.i.d. draws are made as a flat
vector and reshaped (the same distribution): XLA compiles the 1-D draw about twice as fast as a
4-D one.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike


def float_dtypes(dtype: DTypeLike) -> tuple[np.dtype, np.dtype]:
    """Return ``(output dtype, dtype to draw in)``; formats under 32 bits draw in float32."""
    out = jnp.dtype(dtype)
    if not jnp.issubdtype(out, jnp.floating):
        raise ValueError(f"`dtype` must be a floating-point dtype for a random initializer, got {out.name}")
    draw = out if jnp.finfo(out).bits >= 32 else jnp.dtype(jnp.float32)
    return out, draw


@functools.partial(jax.jit, static_argnames=("shape", "draw", "out"))
def sample_normal(
    key: jax.Array,
    stddev: float,
    mean: float,
    *,
    shape: tuple[int, ...],
    draw: np.dtype,
    out: np.dtype,
) -> jax.Array:
    z = jax.random.normal(key, (math.prod(shape),), draw).reshape(shape)  # (size,) -> shape
    return (mean + stddev * z).astype(out)


@functools.partial(jax.jit, static_argnames=("shape", "draw", "out"))
def sample_uniform(
    key: jax.Array, bound: float, *, shape: tuple[int, ...], draw: np.dtype, out: np.dtype
) -> jax.Array:
    u = jax.random.uniform(key, (math.prod(shape),), draw, minval=-bound, maxval=bound)  # (size,)
    return u.reshape(shape).astype(out)


@functools.partial(jax.jit, static_argnames=("shape", "draw", "out"))
def sample_truncated_normal(
    key: jax.Array,
    stddev: float,
    lower: float,
    upper: float,
    *,
    shape: tuple[int, ...],
    draw: np.dtype,
    out: np.dtype,
) -> jax.Array:
    z = jax.random.truncated_normal(key, lower, upper, (math.prod(shape),), draw)  # (size,)
    return (stddev * z.reshape(shape)).astype(out)
