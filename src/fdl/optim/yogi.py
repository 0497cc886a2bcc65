r"""Yogi: Adam whose second moment moves additively, so the effective step size cannot jump.

Adam's second moment :math:`v_t = v_{t-1} + (1 - \beta_2)(g_t^2 - v_{t-1})` can fall fast
after a run of large gradients, and the step size :math:`\eta / \sqrt{v_t}` then grows
quickly. Yogi moves :math:`v` by a step of fixed size :math:`(1 - \beta_2) g_t^2` in the
direction of :math:`g_t^2`:

.. math::

    v_t = v_{t-1} - (1 - \beta_2)\, \operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2

so it grows or shrinks by an amount that depends on the gradient alone, not on how far it is
from :math:`g_t^2` (Zaheer et al., 2018).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_non_negative, check_update_shapes, names_errors
from fdl.optim._adam import adam_ratio, check_adam_args
from fdl.optim.adam import ScaleByAdamState
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import abs_sq, as_float, bias_correction, cast_like, floats, full_like, update_moment

__all__ = ["scale_by_yogi", "yogi"]

PyTree = Any
Scalar = float | jax.Array


@names_errors("scale_by_yogi")
def scale_by_yogi(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-3,
    eps_root: Scalar = 0.0,
    initial_accumulator_value: Scalar = 1e-6,
) -> GradientTransformation:
    r"""Rescale updates by Yogi's moments.

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t \\
        v_t &= v_{t-1} - (1 - \text{b2})\, \operatorname{sign}(v_{t-1} - |g_t|^2)\, |g_t|^2,
        \qquad m_0 = v_0 = \text{initial\_accumulator\_value} \\
        u_t &= \frac{m_t / (1 - \text{b1}^t)}{\sqrt{v_t / (1 - \text{b2}^t) + \text{eps\_root}}
            + \text{eps}}

    Both moments start at ``initial_accumulator_value`` and are bias-corrected as Adam's
    (which assumes a zero start), as in optax; with the default of 1e-6 the difference is
    negligible.

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: rate of the second moment's additive change, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0`` (Yogi's default 1e-3 is
        much larger than Adam's).
      eps_root: added inside the square root, ``>= 0``.
      initial_accumulator_value: the starting value of both moments, ``>= 0``.

    Returns:
      A transformation with state :class:`~fdl.optim.adam.ScaleByAdamState`
      ``(count, mu, nu)``, as optax's.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, a negative ``eps``, ``eps_root`` or
        ``initial_accumulator_value``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_yogi(b1=0.0, b2=0.5, eps=0.0, initial_accumulator_value=1.0)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([3.0]), state)  # v = 1 - 0.5 * sign(1 - 9) * 9
    >>> state.nu.tolist()
    [5.5]

    References:
      Zaheer et al., *Adaptive Methods for Nonconvex Optimization*, NeurIPS 2018.
    """
    check_adam_args(b1, b2, eps, eps_root)
    check_non_negative("initial_accumulator_value", initial_accumulator_value)

    def init(params: PyTree) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=full_like(params, initial_accumulator_value),
            nu=full_like(params, initial_accumulator_value),
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_yogi", updates, params, "nu", state.nu)
        del params, extra_args
        mu = update_moment(updates, state.mu, b1, 1)

        def second(g, v):
            g2, v = abs_sq(as_float(g)), as_float(v)
            dtype = _dtypes.result_type(g2, v)
            g2, v = g2.astype(dtype), v.astype(dtype)
            return v - jnp.asarray(1 - b2, dtype) * jnp.sign(v - g2) * g2

        nu = jax.tree.map(second, updates, state.nu)
        count = safe_increment(state.count)
        mu_hat = bias_correction(mu, b1, count)
        nu_hat = bias_correction(nu, b2, count)
        new_updates = cast_like(adam_ratio(mu_hat, nu_hat, eps, eps_root), updates)
        return new_updates, ScaleByAdamState(count, cast_like(mu, state.mu), cast_like(nu, state.nu))

    return GradientTransformation(init, update)


@names_errors("yogi")
def yogi(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-3,
) -> GradientTransformation:
    r"""Yogi: Adam with an additive second-moment update (:func:`scale_by_yogi`).

    ``chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))``, as optax
    composes it (``eps_root=0``, ``initial_accumulator_value=1e-6``).

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps: as in :func:`scale_by_yogi`.

    Returns:
      The optimizer (state ``(ScaleByAdamState, step-size state)``).

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_yogi` argument.

    >>> import jax.numpy as jnp
    >>> opt = yogi(learning_rate=0.1)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 3) for x in u.tolist()]  # about -0.1 * sign(g), as Adam's first step
    [-0.1]

    References:
      Zaheer et al., *Adaptive Methods for Nonconvex Optimization*, NeurIPS 2018.
    """
    return chain(scale_by_yogi(b1=b1, b2=b2, eps=eps), scale_by_required_learning_rate(learning_rate))
