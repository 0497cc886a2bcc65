r"""Adamax: Adam with an exponentially weighted infinity norm in place of the second moment
(Kingma & Ba, 2015, section 7.1)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, check_update_shapes, names_errors
from fdl.optim.adam import ScaleByAdamState
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = ["adamax", "adamaxw", "scale_by_adamax"]

PyTree = Any
Scalar = float | jax.Array


@names_errors("scale_by_adamax")
def scale_by_adamax(b1: Scalar = 0.9, b2: Scalar = 0.999, eps: Scalar = 1e-8) -> GradientTransformation:
    r"""Rescale updates by Adamax: Adam with an infinity-norm second moment.

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t \\
        v_t &= \max(|g_t| + \text{eps},\; \text{b2}\; v_{t-1}), \qquad m_0 = v_0 = 0 \\
        u_t &= \frac{m_t}{(1 - \text{b1}^t)\, v_t}

    :math:`v` needs no bias correction (a maximum is not biased toward its zero start), and
    ``eps`` inside the maximum keeps it positive.

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the infinity norm, in ``[0, 1)``.
      eps: added to :math:`|g_t|`, ``>= 0``.

    Returns:
      A transformation with state :class:`ScaleByAdamState` ``(count, mu, nu)``, :math:`v` in
      ``nu``.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)`` or a negative ``eps``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_adamax(eps=0.0)
    >>> u, _ = opt.update(jnp.asarray([-4.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 6) for x in u.tolist()]  # (0.1 * -4 / (1 - 0.9)) / 4
    [-1.0]

    References:
      Kingma and Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015, section 7.1.

    Differs from PyTorch:
      ``torch.optim.Adamax`` computes the same :math:`v_t`; it divides the step size by
      :math:`1 - \text{b1}^t` instead of :math:`m_t` (same value, different rounding).
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_non_negative("eps", eps)

    def init(params: PyTree) -> ScaleByAdamState:
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros_like(params), nu=zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_adamax", updates, params, "nu", state.nu)
        del params, extra_args
        count = safe_increment(state.count)
        mu = update_moment(updates, state.mu, b1, 1)

        def infinity_norm(g, v):
            size = jnp.abs(g)  # real, also for complex g
            fresh = size + jnp.asarray(eps, size.dtype)
            old = jnp.asarray(b2, v.dtype) * v
            dtype = _dtypes.result_type(fresh, old)
            return jnp.maximum(fresh.astype(dtype), old.astype(dtype))

        nu = jax.tree.map(infinity_norm, updates, state.nu)
        mu_hat = bias_correction(mu, b1, count)

        def ratio(m, v):
            dtype = _dtypes.result_type(m, v)
            return m.astype(dtype) / v.astype(dtype)

        new_updates = jax.tree.map(ratio, mu_hat, nu)
        new_state = ScaleByAdamState(count=count, mu=cast_like(mu, state.mu), nu=cast_like(nu, state.nu))
        return cast_like(new_updates, updates), new_state

    return GradientTransformation(init, update)


@names_errors("adamax")
def adamax(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
) -> GradientTransformation:
    r"""Adamax: :math:`\theta_{t+1} = \theta_t - \eta_t\, m_t / ((1 - \text{b1}^t)\, v_t)`.

    ``chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))``; see
    :func:`scale_by_adamax` for the infinity-norm moment :math:`v_t`.

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_adamax` argument.

    >>> import jax.numpy as jnp
    >>> opt = adamax(learning_rate=0.1)
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in updates.tolist()]
    [-0.1]

    References:
      Kingma and Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015, section 7.1.
    """
    return chain(scale_by_adamax(b1=b1, b2=b2, eps=eps), scale_by_required_learning_rate(learning_rate))


@names_errors("adamaxw")
def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""AdamaxW: Adamax with decoupled weight decay.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \Big(\frac{m_t}{(1 - \text{b1}^t)\, v_t}
            + \lambda_t\, \theta_t\Big)

    ``chain(scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(learning_rate))``, as optax composes it: the decay is scaled by the
    learning rate, as AdamW's (:func:`~fdl.optim.adam.adamw`).

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps: as in :func:`scale_by_adamax`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      mask: which leaves are decayed (``None``: all; a tree of bools or a function of the
        parameters returning one).

    Raises:
      ValueError: a negative learning rate or decay, or an invalid :func:`scale_by_adamax`
        argument.

    >>> import jax.numpy as jnp
    >>> opt = adamaxw(learning_rate=0.1, weight_decay=0.5)
    >>> params = jnp.asarray([2.0])
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(params), params)
    >>> [round(x, 4) for x in updates.tolist()]  # -0.1 * (1 + 0.5 * 2)
    [-0.2]

    References:
      Loshchilov and Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.
    """
    return chain(
        scale_by_adamax(b1=b1, b2=b2, eps=eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_required_learning_rate(learning_rate),
    )
