"""Dropout: random zeroing of units in training, with inverted scaling."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_rate, check_shape
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = ["Dropout"]


@layer_factory
def Dropout(rate: float, *, name: str | None = None) -> Layer:
    r"""Dropout with drop probability ``rate`` (inverted dropout).

    In training each unit is kept independently with probability :math:`1 - p` and scaled by
    :math:`1/(1 - p)`, so its expectation is unchanged; in evaluation the layer is the identity:

    .. math::

        m_i \sim \mathrm{Bernoulli}(1 - p), \qquad
        y_i = \frac{m_i \, x_i}{1 - p}, \qquad
        \mathbb{E}[y_i] = x_i, \qquad
        \frac{\partial y_i}{\partial x_i} = \frac{m_i}{1 - p}

    Args:
      rate: :math:`p`, the probability of *dropping* a unit, in ``[0, 1)``.
      name: its name in a parent's paths (automatic ``dropout_<i>`` if ``None``).

    Returns:
      A stateless, parameter-free :class:`~fdl.nn.Layer`. ``apply(..., key=key, train=True)``
      draws the mask from ``key``; ``train=False`` ignores ``key``.

    Raises:
      ValueError: ``rate`` outside ``[0, 1)`` (at construction); training without a key.

    Differs from PyTorch: same convention (``p`` drops, kept units scaled by ``1/(1-p)``); Keras
    also uses ``rate`` as the drop probability. The original paper (Srivastava et al., 2014)
    instead scaled the weights by ``1 - p`` at test time.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Dropout(0.5)
    >>> y, _ = layer.apply({}, {}, jnp.ones(4), key=jax.random.key(0), train=True)
    >>> sorted(set(y.tolist())) in ([0.0, 2.0], [0.0], [2.0])
    True
    >>> layer.apply({}, {}, jnp.ones(2))[0].tolist()
    [1.0, 1.0]
    """
    rate = check_rate("rate", rate)

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        del key
        return {}, {}, check_shape("input_shape", input_shape)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del params, mask  # each unit is dropped on its own
        if not train or rate == 0.0:
            return x, state
        if key is None:
            raise ValueError(
                "Dropout needs a PRNG key in training: call apply(params, state, x, key=key, train=True)"
            )
        keep = jax.random.bernoulli(key, 1.0 - rate, jnp.shape(x))
        return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)), state

    return Layer(init, apply)
