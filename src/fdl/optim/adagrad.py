r"""Adagrad: step sizes that shrink with the gradients seen so far.

Adagrad divides each coordinate's gradient by the root of the *sum* of all its squared
gradients to date. Coordinates with large or frequent gradients slow down, rare ones keep
large steps, which suits sparse features:

.. math::

    G_t = G_{t-1} + g_t^2, \qquad u_t = \frac{g_t}{\sqrt{G_t + \epsilon}} .

Because :math:`G_t` only grows, the effective learning rate decays like :math:`1/\sqrt{t}`
and eventually stalls; RMSProp and Adadelta replace the sum by a moving average.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_non_negative, check_update_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    scale_by_required_learning_rate,
)
from fdl.tree import abs_sq, floats, full_like

__all__ = ["ScaleByRssState", "scale_by_rss", "adagrad"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByRssState(NamedTuple):
    """Adagrad's state: the running sum :math:`G` of squared gradients."""

    sum_of_squares: PyTree


@names_errors("scale_by_rss")
def scale_by_rss(initial_accumulator_value: Scalar = 0.1, eps: Scalar = 1e-7) -> GradientTransformation:
    r"""Divide updates by the root of the sum of squared gradients to date (Adagrad).

    .. math::

        G_t &= G_{t-1} + g_t^2, \qquad G_0 = \text{initial\_accumulator\_value} \\
        u_t &= \begin{cases}
            g_t / \sqrt{G_t + \text{eps}} & G_t > 0 \\
            0 & G_t = 0
        \end{cases}

    Args:
      initial_accumulator_value: :math:`G_0 \ge 0`.
      eps: :math:`\epsilon \ge 0`, inside the square root.

    Returns:
      A transformation with state :class:`ScaleByRssState` ``(sum_of_squares,)``.

    Raises:
      ValueError: a negative ``initial_accumulator_value`` or ``eps``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([3.0]), state)
    >>> u, state = opt.update(jnp.asarray([4.0]), state)
    >>> u.tolist()  # 4 / sqrt(9 + 16)
    [0.800000011920929]

    References:
      Duchi, Hazan and Singer, *Adaptive Subgradient Methods for Online Learning and
      Stochastic Optimization*, JMLR 2011.

    Differs from PyTorch:
      ``torch.optim.Adagrad`` puts ``eps`` (default 1e-10) outside the root,
      :math:`g / (\sqrt{G_t} + \epsilon)`, starts from :math:`G_0 = 0` and can decay the
      learning rate (``lr_decay``).
    """
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_non_negative("eps", eps)

    def init(params: PyTree) -> ScaleByRssState:
        return ScaleByRssState(sum_of_squares=full_like(params, initial_accumulator_value))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_rss", updates, params, "sum_of_squares", state.sum_of_squares)
        del params, extra_args

        def accumulate(g, total):
            square = abs_sq(g)
            dtype = _dtypes.result_type(square, total)
            return (square.astype(dtype) + total.astype(dtype)).astype(total.dtype)

        sum_of_squares = jax.tree.map(accumulate, updates, state.sum_of_squares)

        def rescale(g, total):
            inverse_root = jnp.where(total > 0, jax.lax.rsqrt(total + jnp.asarray(eps, total.dtype)), 0)
            dtype = _dtypes.result_type(inverse_root, g)
            return (inverse_root.astype(dtype) * g.astype(dtype)).astype(g.dtype)

        updates = jax.tree.map(rescale, updates, sum_of_squares)
        return updates, ScaleByRssState(sum_of_squares=sum_of_squares)

    return GradientTransformation(init, update)


@names_errors("adagrad")
def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: Scalar = 0.1,
    eps: Scalar = 1e-7,
) -> GradientTransformation:
    r"""Adagrad: :math:`\theta_{t+1} = \theta_t - \eta_t\, g_t / \sqrt{G_t + \epsilon}`.

    ``chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(lr))``; see
    :func:`scale_by_rss` for :math:`G_t` and the PyTorch difference.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      initial_accumulator_value, eps: as in :func:`scale_by_rss`.

    Returns:
      The optimizer.

    Raises:
      ValueError: a negative learning rate, ``initial_accumulator_value`` or ``eps``.

    >>> import jax.numpy as jnp
    >>> opt = adagrad(learning_rate=1.0, initial_accumulator_value=0.0, eps=0.0)
    >>> updates, _ = opt.update(jnp.asarray([-3.0]), opt.init(jnp.zeros(1)))
    >>> updates.tolist()  # -1 * (-3 / 3)
    [1.0]

    References:
      Duchi, Hazan and Singer, JMLR 2011 (see :func:`scale_by_rss`).
    """
    return chain(
        scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps),
        scale_by_required_learning_rate(learning_rate),
    )
