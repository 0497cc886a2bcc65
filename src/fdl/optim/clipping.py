r"""Gradient clipping: bounding the size of a step.

A single huge gradient (a bad batch, an exploding recurrent network) can throw the parameters
far from where training was going. Clipping bounds the update before it is used, either each
coordinate on its own or the whole update as one vector:

.. math::

    \operatorname{clip}(g)_i = \min(\max(g_i, -c), c), \qquad
    \operatorname{clip\_by\_global\_norm}(g) = g \cdot \min\Big(1, \frac{c}{\lVert g\rVert_2}\Big),

where :math:`\lVert g\rVert_2` is the norm of *all* leaves together. Global-norm clipping keeps
the update's direction; element-wise clipping does not. Put either first in a chain to clip the
raw gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_non_negative, names_errors
from fdl.optim.base import EmptyState, GradientTransformation
from fdl.tree import floats, norm

__all__ = ["ClipState", "ClipByGlobalNormState", "clip", "clip_by_global_norm", "global_norm"]

PyTree = Any
Scalar = float | jax.Array

ClipState = EmptyState
""":func:`clip` keeps no state (optax's ``ClipState`` is also ``EmptyState``)."""

ClipByGlobalNormState = EmptyState
""":func:`clip_by_global_norm` keeps no state (as optax's ``ClipByGlobalNormState``)."""


def _empty_init(params: PyTree) -> EmptyState:
    del params
    return EmptyState()


@names_errors("clip")
def clip(max_delta: Scalar) -> GradientTransformation:
    r"""Clip every coordinate of the updates to ``[-max_delta, max_delta]``.

    .. math:: u_i = \min(\max(g_i, -\text{max\_delta}), \text{max\_delta})

    Args:
      max_delta: the bound :math:`c \ge 0`.

    Returns:
      A stateless transformation (state :class:`~fdl.optim.base.EmptyState`).

    Raises:
      ValueError: a negative ``max_delta``.

    >>> import jax.numpy as jnp
    >>> opt = clip(1.0)
    >>> u, _ = opt.update(jnp.asarray([-3.0, 0.5, 2.0]), opt.init(None))
    >>> u.tolist()
    [-1.0, 0.5, 1.0]

    Differs from PyTorch:
      ``torch.nn.utils.clip_grad_value_(params, clip_value)`` is the same operation, applied
      in place to ``.grad``.
    """
    check_non_negative("max_delta", max_delta)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        del params, extra_args

        def one(g):
            bound = jnp.asarray(max_delta, g.dtype)
            return jnp.clip(g, -bound, bound)

        return jax.tree.map(one, updates), state

    return GradientTransformation(_empty_init, update)


def global_norm(updates: PyTree) -> jax.Array:
    r"""The Euclidean norm of all leaves together, :math:`\sqrt{\sum_\ell \sum_i g_{\ell i}^2}`
    (optax's ``global_norm``; the math and its dtypes are :func:`fdl.tree.norm`'s).

    >>> import jax.numpy as jnp
    >>> float(global_norm({"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}))
    5.0
    """
    return norm(updates)


@names_errors("clip_by_global_norm")
def clip_by_global_norm(max_norm: Scalar) -> GradientTransformation:
    r"""Rescale the updates so that their global norm is at most ``max_norm``.

    .. math::

        u = \begin{cases}
            g & \lVert g\rVert_2 < \text{max\_norm} \\
            \dfrac{g}{\lVert g\rVert_2}\, \text{max\_norm} & \text{otherwise}
        \end{cases}

    with :math:`\lVert g\rVert_2` from :func:`global_norm` (all leaves together).

    Args:
      max_norm: the bound :math:`c \ge 0`.

    Returns:
      A stateless transformation (state :class:`ClipByGlobalNormState`, an
      :class:`~fdl.optim.base.EmptyState`).

    Raises:
      ValueError: a negative ``max_norm``.

    >>> import jax.numpy as jnp
    >>> opt = clip_by_global_norm(1.0)
    >>> u, _ = opt.update({"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}, opt.init(None))
    >>> {k: round(float(v[0]), 6) for k, v in u.items()}
    {'a': 0.6, 'b': 0.8}

    References:
      Pascanu, Mikolov and Bengio, *On the difficulty of training recurrent neural networks*,
      ICML 2013.

    Differs from PyTorch:
      ``torch.nn.utils.clip_grad_norm_`` multiplies by ``max_norm / (norm + 1e-6)`` clamped to
      at most 1, so it also shrinks (very slightly) updates just below the bound.
    """
    check_non_negative("max_norm", max_norm)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        del params, extra_args
        norm = global_norm(updates)
        keep = norm < jnp.asarray(max_norm, norm.dtype)

        def one(g):
            scaled = (g / norm.astype(g.dtype)) * jnp.asarray(max_norm, g.dtype)
            return jax.lax.select(keep, g, scaled)

        return jax.tree.map(one, updates), state

    return GradientTransformation(_empty_init, update)
