r"""Constant initializers: every entry the same value (zero variance)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from fdl._checks import check_finite, check_shape
from fdl.initializers.base import Initializer

__all__ = ["constant", "ones", "zeros"]


def constant(value: float) -> Initializer:
    r"""Return an initializer that fills the array with ``value``.

    .. math:: W_{ij} = \mathrm{value}, \qquad \mathbb{E}[W] = \mathrm{value}, \qquad
              \operatorname{Var}[W] = 0

    Args:
      value: the fill value, a real scalar.

    Returns:
      ``init(key, shape, dtype)``; ``key`` is ignored and any dtype is accepted.

    Raises:
      ValueError: at factory time if ``value`` is not a finite real scalar; at call time for a bad
        ``shape``.

    >>> import jax, fdl
    >>> fdl.initializers.constant(0.5)(jax.random.key(0), (2,)).tolist()
    [0.5, 0.5]
    """
    value = check_finite("value", value)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        del key  # deterministic
        return jnp.full(check_shape("shape", shape), value, dtype)

    return init


def zeros() -> Initializer:
    r"""Return an initializer that fills the array with 0 (the usual bias initializer).

    .. math:: W_{ij} = 0, \qquad \mathbb{E}[W] = 0, \qquad \operatorname{Var}[W] = 0

    >>> import jax, fdl
    >>> fdl.initializers.zeros()(jax.random.key(0), (2, 2)).sum().item()
    0.0
    """
    return constant(0.0)


def ones() -> Initializer:
    r"""Return an initializer that fills the array with 1 (the usual normalization scale).

    .. math:: W_{ij} = 1, \qquad \mathbb{E}[W] = 1, \qquad \operatorname{Var}[W] = 0

    >>> import jax, fdl
    >>> fdl.initializers.ones()(jax.random.key(0), (3,)).tolist()
    [1.0, 1.0, 1.0]
    """
    return constant(1.0)
