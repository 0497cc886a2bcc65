r"""Shared parts of the normalization layers (a kernel module): the affine
parameters, the channel check and the affine map :math:`\gamma \odot \hat x + \beta`.

Used by :mod:`fdl.nn.normalization` (LayerNorm, RMSNorm, GroupNorm) and
:mod:`fdl.nn.batch_norm`. Every message starts with the layer's kind; a parent composite
prefixes the layer's path.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import initializers

Shape = tuple[int, ...]


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
        raise ValueError(f"{kind} expects inputs of shape {expected} (channels last), got shape {x.shape}")
