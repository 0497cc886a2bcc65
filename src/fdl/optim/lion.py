r"""Lion: a step of constant size along the sign of an interpolated momentum.

Lion (EvoLved Sign Momentum) was found by program search. It keeps one moving average of the
gradient and steps along the *sign* of a blend of that average and the current gradient, so
every coordinate moves by exactly the learning rate:

.. math::

    u_t = \operatorname{sign}\big(\beta_1 m_{t-1} + (1 - \beta_1)\, g_t\big), \qquad
    m_t = \beta_2 m_{t-1} + (1 - \beta_2)\, g_t .

Because the sign has unit size, Lion's learning rate is usually 3-10x smaller than Adam's and
its (decoupled) weight decay 3-10x larger, to keep :math:`\eta\lambda` the same.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, check_state_dtype, check_update_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import cast_like, floats, update_moment, zeros_like

__all__ = ["ScaleByLionState", "scale_by_lion", "lion"]

PyTree = Any
Scalar = float | jax.Array

_MODES = ("hard", "smooth", "refined")


class ScaleByLionState(NamedTuple):
    """Lion's state: the step count :math:`t` (int32) and the momentum :math:`m`."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree


@names_errors("scale_by_lion")
def scale_by_lion(
    b1: Scalar = 0.9,
    b2: Scalar = 0.99,
    mu_dtype: Any | None = None,
    *,
    mode: Literal["hard", "smooth", "refined"] = "hard",
    smooth_beta: float = 1.0,
) -> GradientTransformation:
    r"""Rescale updates to the sign of Lion's interpolated momentum.

    .. math::

        c_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t \\
        u_t &= \begin{cases}
            \operatorname{sign}(c_t) & \text{mode="hard"} \\
            \tanh(\text{smooth\_beta}\; c_t) & \text{mode="smooth"} \\
            c_t \text{ if } |c_t| < 1 \text{ else } \operatorname{sign}(c_t)
                & \text{mode="refined"}
        \end{cases} \\
        m_t &= \text{b2}\; m_{t-1} + (1 - \text{b2})\, g_t, \qquad m_0 = 0

    The update uses the momentum *before* this step's gradient is added to it.

    Args:
      b1: weight of the momentum in the update direction, in ``[0, 1)``.
      b2: decay of the momentum, in ``[0, 1)``.
      mu_dtype: dtype to store :math:`m` in (default: the parameters').
      mode: ``"hard"`` (Lion's sign) or one of optax's smoothed variants.
      smooth_beta: the slope of ``"smooth"``'s tanh.

    Returns:
      A transformation with state :class:`ScaleByLionState` ``(count, mu)``.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, an unknown ``mode`` or a negative
      ``smooth_beta``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_lion()
    >>> u, state = opt.update(jnp.asarray([0.003, -40.0, 0.0]), opt.init(jnp.zeros(3)))
    >>> u.tolist()
    [1.0, -1.0, 0.0]

    References:
      Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023.

    Differs from optax:
      optax reports an unknown ``mode`` only when ``update`` first runs; fdl rejects it here.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    if mode not in _MODES:
        raise ValueError(f"`mode` must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    check_non_negative("smooth_beta", smooth_beta)
    mu_dtype = _dtypes.canonical(mu_dtype)

    def direction(c: jax.Array) -> jax.Array:
        if mode == "hard":
            return jnp.sign(c)
        if mode == "smooth":
            return jnp.tanh(jnp.asarray(smooth_beta, c.dtype) * c)
        return jnp.where(jnp.abs(c) < 1, c, jnp.sign(c))

    def init(params: PyTree) -> ScaleByLionState:
        check_state_dtype("mu_dtype", mu_dtype, params)
        mu = zeros_like(params, mu_dtype)
        return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=mu)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_lion", updates, params, "mu", state.mu)
        del params, extra_args

        def step(g, m):
            fresh = jnp.asarray(1 - b1, g.dtype) * g
            old = jnp.asarray(b1, m.dtype) * m
            dtype = _dtypes.result_type(fresh, old)
            return direction(fresh.astype(dtype) + old.astype(dtype)).astype(g.dtype)

        new_updates = jax.tree.map(step, updates, state.mu)
        mu = update_moment(updates, state.mu, b2, 1)
        mu = cast_like(mu, state.mu)
        return new_updates, ScaleByLionState(count=safe_increment(state.count), mu=mu)

    return GradientTransformation(init, update)


@names_errors("lion")
def lion(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.99,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""Lion with decoupled weight decay.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \left( \operatorname{sign}\big(
            \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t \big)
            + \text{weight\_decay}\; \theta_t \right)

    ``chain(scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(learning_rate))``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule (typically 3-10x smaller
        than Adam's).
      b1, b2, mu_dtype: as in :func:`scale_by_lion`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      mask: which parameters to decay (see :func:`~fdl.optim.weight_decay.masked`).

    Returns:
      The optimizer.

    Raises:
      ValueError: a negative learning rate or weight decay, or an invalid ``b1``/``b2``.

    >>> import jax.numpy as jnp
    >>> opt = lion(learning_rate=0.1, weight_decay=0.5)
    >>> params = jnp.asarray([2.0])
    >>> updates, _ = opt.update(jnp.asarray([-7.0]), opt.init(params), params)
    >>> updates.tolist()  # -0.1 * (-1 + 0.5 * 2)
    [-0.0]

    References:
      Chen et al., *Symbolic Discovery of Optimization Algorithms*, NeurIPS 2023.
    """
    return chain(
        scale_by_lion(b1=b1, b2=b2, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_required_learning_rate(learning_rate),
    )
