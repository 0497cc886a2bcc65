"""The ``(x, mask)`` convention of the sequence layers, in one place.

A layer that takes a padding mask takes its input as the pair ``(x, mask)``: ``x`` of shape
``(*batch, T, D)`` (or token ids ``(*batch, T)``) and ``mask`` bool ``(*batch, T)``, True for a
real token. ``init`` receives ``((T, D), (T,))``. A plain ``x`` (and shape ``(T, D)``) means no
mask. Layers that keep the time axis return ``(y, mask)``, so masks flow through
:func:`~fdl.nn.Serial` to the next layer.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_shape
from fdl.nn.layer import Shape

__all__ = [
    "split_masked_shape",
    "split_masked_input",
    "check_mask",
    "with_mask",
    "check_sequence_shape",
    "check_sequence_input",
]


def split_masked_shape(input_shape: Any) -> tuple[Shape, Shape | None]:
    """Split an ``init`` input shape into ``(x_shape, mask_shape)``; ``mask_shape`` is ``None``
    for a plain shape such as ``(T, D)`` and the second entry of a pair ``((T, D), (T,))``."""
    if (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 2
        and all(isinstance(s, (tuple, list)) for s in input_shape)
    ):
        return check_shape("input_shape", input_shape[0]), check_shape("mask shape", input_shape[1])
    return check_shape("input_shape", input_shape), None


def split_masked_input(where: str, x: Any) -> tuple[jax.Array, jax.Array | None]:
    """Split an ``apply`` input into ``(x, mask)``; ``mask`` is ``None`` for a plain array."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(
                f"{where}: a masked input must be the pair (x, mask), got a "
                f"{type(x).__name__} of {len(x)} entries"
            )
        return jnp.asarray(x[0]), jnp.asarray(x[1])
    return jnp.asarray(x), None


def check_mask(where: str, mask: jax.Array, expected: Shape) -> None:
    """Raise unless ``mask`` is bool with shape ``expected`` (the input's shape without ``D``)."""
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{where}: the mask must be bool (True = real token), got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(expected):
        raise ValueError(
            f"{where}: the mask must have shape {tuple(expected)} (the input's shape without its "
            f"last axis), got mask shape {tuple(mask.shape)}"
        )


def with_mask(y: Any, mask: Any) -> Any:
    """``y`` alone, or the pair ``(y, mask)`` when a mask (or mask shape) came in."""
    return y if mask is None else (y, mask)


def check_sequence_shape(where: str, shape: Shape, mask_shape: Shape | None) -> None:
    """Raise unless the per-example shape is ``(T, D)`` and the mask shape, if any, ``(T,)``."""
    if len(shape) != 2:
        raise ValueError(
            f"{where} expects per-example inputs of shape (T, D), got input_shape {shape}"
        )
    if mask_shape is not None and tuple(mask_shape) != shape[:1]:
        raise ValueError(
            f"{where}: the mask must have shape {shape[:1]} (the input's shape without its last "
            f"axis), got mask shape {tuple(mask_shape)}"
        )


def check_sequence_input(where: str, x: jax.Array, width: int | None = None) -> None:
    """Raise unless ``x`` is a float array ``(..., T, D)``, with ``D == width`` if given."""
    if x.ndim < 2 or (width is not None and x.shape[-1] != width):
        expected = "(..., T, D)" if width is None else f"(..., T, {width})"
        raise ValueError(f"{where} expects inputs of shape {expected}, got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{where} expects a floating-point input, got dtype {x.dtype}")
