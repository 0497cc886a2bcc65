r"""Shared parts of the normalization layers (a kernel module): argument checks, the affine
parameters, dtypes and the affine map :math:`\gamma \odot \hat x + \beta`.

Used by :mod:`fdl.nn.normalization` (LayerNorm, RMSNorm, GroupNorm) and
:mod:`fdl.nn.batch_norm`. Every message starts with the layer's kind; a parent composite
prefixes the layer's path.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fdl import initializers
from fdl.nn.dense import _promote

Shape = tuple[int, ...]


def check_epsilon(value: Any, *, allow_none: bool = False) -> float | None:
    """Return ``epsilon`` as a float if it is a finite number >= 0 (or ``None`` where allowed)."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        accepted = "a non-negative finite number"
        if allow_none:
            accepted += " or None (the machine epsilon of the compute dtype, PyTorch's default)"
        raise ValueError(f"`epsilon` must be {accepted}, got {value!r}")
    return float(value)


def affine_init(
    key: jax.Array,
    shape: Shape,
    *,
    use_scale: bool,
    use_bias: bool,
    scale_init: initializers.Initializer,
    bias_init: initializers.Initializer,
    param_dtype: Any,
) -> dict:
    """The parameters ``{"scale": shape, "bias": shape}``, each present only if enabled."""
    scale_key, bias_key = jax.random.split(key)
    params = {}
    if use_scale:
        params["scale"] = scale_init(scale_key, shape, param_dtype)
    if use_bias:
        params["bias"] = bias_init(bias_key, shape, param_dtype)
    return params


def param_shape(params: dict) -> Shape | None:
    """The shape of the affine parameters (``None`` when there are none)."""
    for leaf in params.values():
        return tuple(leaf.shape)
    return None


def dtypes(x: jax.Array, params: dict, dtype: Any) -> tuple[Any, Any]:
    """``(compute, stats)``: the output dtype and the (at least float32) statistics dtype.

    ``compute`` is ``dtype`` if given, else the input's and the parameters' dtypes promoted on
    the standard lattice (a float type: an int input with no parameters computes in float32).
    """
    if dtype is not None:
        compute = jnp.dtype(dtype)
    else:
        compute = x.dtype
        for leaf in params.values():
            compute = _promote(compute, leaf.dtype)
        if not jnp.issubdtype(compute, jnp.inexact):
            compute = _promote(compute, jnp.float32)
    return compute, _promote(compute, jnp.float32)


def affine(x_hat: jax.Array, params: dict, stats: Any) -> jax.Array:
    r""":math:`\gamma \odot \hat x + \beta`, the parameters aligned with the trailing axes, in the
    statistics dtype."""
    if "scale" in params:
        x_hat = x_hat * jnp.broadcast_to(params["scale"].astype(stats), x_hat.shape)
    if "bias" in params:
        x_hat = x_hat + jnp.broadcast_to(params["bias"].astype(stats), x_hat.shape)
    return x_hat


def check_channels(kind: str, x: jax.Array, channels: int | None) -> None:
    """Raise unless ``x`` has at least one axis and, if known, ``channels`` on the last one."""
    if x.ndim < 1 or (channels is not None and x.shape[-1] != channels):
        expected = "(..., C)" if channels is None else f"(..., {channels})"
        raise ValueError(
            f"{kind} expects inputs of shape {expected} (channels last), got shape {x.shape}"
        )
