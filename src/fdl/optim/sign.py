r"""signSGD and Signum: steps along the sign of the gradient (or of its moving average).

Each coordinate moves by exactly the learning rate, in the direction opposite to the sign of
its gradient; the gradient's size is thrown away. In a distributed setting the sign is one bit
per coordinate, which is why Bernstein et al. studied it (majority vote over workers).

.. math::

    \text{signSGD:}\quad \theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(g_t), \qquad
    \text{Signum:}\quad m_t = \beta m_{t-1} + (1 - \beta) g_t,\;\;
    \theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(m_t)

For a complex coordinate ``sign`` is :math:`g / |g|` (JAX's ``jnp.sign``), the unit number in
its direction, as in optax.

Signum's average needs no bias correction: dividing by :math:`1 - \beta^t > 0` does not change a
sign. Lion (:mod:`fdl.optim.lion`) is the sign of an *interpolated* momentum.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_decay, check_same_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    init_empty_state,
    scale_by_required_learning_rate,
)
from fdl.optim.momentum import ema
from fdl.tree import floats

__all__ = ["scale_by_sign", "sign_sgd", "signum"]

PyTree = Any


@names_errors("scale_by_sign")
def scale_by_sign() -> GradientTransformation:
    r"""Replace each coordinate of the updates by its sign: :math:`u_t = \operatorname{sign}(g_t)`
    (-1, 0 or 1 for real numbers; :math:`g / |g|` for complex ones, 0 at 0).

    Returns:
      A stateless transformation (state :class:`~fdl.optim.base.EmptyState`).

    >>> import jax.numpy as jnp
    >>> opt = scale_by_sign()
    >>> u, _ = opt.update(jnp.asarray([-3.0, 0.0, 1e-9]), opt.init(jnp.zeros(3)))
    >>> u.tolist()
    [-1.0, 0.0, 1.0]
    """

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        if params is not None:
            check_same_shapes("scale_by_sign", "`updates`", updates, "`params`", params)
        del params, extra_args
        return jax.tree.map(jnp.sign, updates), state

    return GradientTransformation(init_empty_state, update)


@names_errors("sign_sgd")
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""signSGD: :math:`\theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(g_t)`.

    ``chain(scale_by_sign(), scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.

    Returns:
      The optimizer (state ``(EmptyState, step-size state)``).

    Raises:
      ValueError: a negative learning rate.

    >>> import jax.numpy as jnp
    >>> opt = sign_sgd(learning_rate=0.1)
    >>> u, _ = opt.update(jnp.asarray([5.0, -0.01]), opt.init(jnp.zeros(2)))
    >>> u.tolist()
    [-0.10000000149011612, 0.10000000149011612]

    References:
      Bernstein et al., *signSGD: Compressed Optimisation for Non-Convex Problems*, ICML 2018.
    """
    return chain(scale_by_sign(), scale_by_required_learning_rate(learning_rate))


@names_errors("signum")
def signum(
    learning_rate: ScalarOrSchedule,
    beta: float | jax.Array = 0.9,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Signum: the sign of an exponential moving average of the gradient.

    .. math::

        m_t = \beta\, m_{t-1} + (1 - \beta)\, g_t, \quad m_0 = 0, \qquad
        \theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(m_t)

    ``chain(ema(beta, debias=False, accumulator_dtype=accumulator_dtype), scale_by_sign(),
    scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      beta: the decay of the average, in ``[0, 1)``.
      accumulator_dtype: dtype to store :math:`m` in (default: the parameters').

    Returns:
      The optimizer (state ``(EmaState, EmptyState, step-size state)``).

    Raises:
      ValueError: a negative learning rate or ``beta`` outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> opt = signum(learning_rate=0.5, beta=0.5)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([4.0]), state)   # m = 2
    >>> u, state = opt.update(jnp.asarray([-1.0]), state)  # m = 0.5 * 2 - 0.5 * 1 = 0.5 > 0
    >>> u.tolist()
    [-0.5]

    References:
      Bernstein et al., *signSGD: Compressed Optimisation for Non-Convex Problems*, ICML 2018.
    """
    check_decay("beta", beta)  # named as the caller spelled it, not ema's `decay`
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_required_learning_rate(learning_rate),
    )
