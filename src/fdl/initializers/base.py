"""The initializer contract, and the fans of a weight shape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from fdl._checks import check_shape

__all__ = ["Initializer", "compute_fans"]


class Initializer(Protocol):
    """``init(key, shape, dtype=jnp.float32) -> array`` of exactly that ``shape`` and ``dtype``."""

    def __call__(self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array: ...


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    r"""Return ``(fan_in, fan_out)`` of a weight of shape ``shape``.

    .. math::

        \mathrm{fan\_in} = \mathrm{in} \cdot \prod \mathrm{receptive}, \qquad
        \mathrm{fan\_out} = \mathrm{out} \cdot \prod \mathrm{receptive}

    for a shape ``(*receptive, in, out)``: a dense weight ``(in, out)`` has an empty receptive
    field, a 2-D convolution kernel is ``(kh, kw, in, out)``. ``fan_in`` is the number of inputs
    that feed one output unit, ``fan_out`` the number of outputs one input unit feeds. A 1-D shape
    ``(n,)`` (a bias, a scale vector) has ``fan_in = fan_out = n``.

    Args:
      shape: the weight's shape, at least one dimension.

    Returns:
      ``(fan_in, fan_out)`` as Python ints.

    Raises:
      ValueError: if ``shape`` is not a tuple of non-negative ints or is 0-D.

    >>> from fdl.initializers import compute_fans
    >>> compute_fans((64, 10))
    (64, 10)
    >>> compute_fans((3, 3, 16, 32))
    (144, 288)

    Differs from PyTorch: ``torch.nn.init`` reads the fans of an ``(out, in, *receptive)`` tensor,
    so the same layer has the same fans but they come from the other axes.
    """
    shape = check_shape("shape", shape)
    if len(shape) == 0:
        raise ValueError("`shape` must have at least one dimension to define fan_in and fan_out, got ()")
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive
