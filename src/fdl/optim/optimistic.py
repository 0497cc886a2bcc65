r"""Optimistic gradients: a step along the current gradient, plus a correction by how much it
changed since the previous step.

Gradient descent on a min-max game (a GAN, a bilinear saddle :math:`\min_x \max_y xy`) circles
the equilibrium or spirals away from it. The extra-gradient method fixes this with a second
gradient per step, at a look-ahead point; the *optimistic* method approximates that look-ahead
with the gradient of the previous step, for free:

.. math::

    u_t = (\alpha + \beta)\, g_t - \beta\, g_{t-1}
        = \alpha\, g_t + \beta\, (g_t - g_{t-1})

(Daskalakis et al., 2017; Mokhtari et al., 2019). :func:`optimistic_adam` and
:func:`optimistic_adam_v2` apply the same correction to Adam's normalized step
:math:`r_t = \hat m_t / (\sqrt{\hat v_t} + \epsilon)` instead of the raw gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_non_negative, check_real, check_update_shapes, names_errors
from fdl.optim.adam import scale_by_adam
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    scale_by_required_learning_rate,
)
from fdl.tree import cast_like, floats, zeros_like

__all__ = [
    "ScaleByOptimisticGradientState",
    "scale_by_optimistic_gradient",
    "optimistic_gradient_descent",
    "optimistic_adam",
    "optimistic_adam_v2",
]

PyTree = Any
Scalar = float | jax.Array


class ScaleByOptimisticGradientState(NamedTuple):
    """Whether no step was taken yet (a bool scalar), and the previous gradient
    :math:`g_{t-1}` (zeros, in the parameters' dtype, before the first step)."""

    is_initial_step: jax.Array
    previous_gradient: PyTree


@names_errors("scale_by_optimistic_gradient")
def scale_by_optimistic_gradient(alpha: Scalar = 1.0, beta: Scalar = 1.0) -> GradientTransformation:
    r"""Generalized optimistic gradients: the gradient plus ``beta`` times its last change.

    .. math::

        u_t = (\text{alpha} + \text{beta})\, g_t - \text{beta}\; g_{t-1},
        \qquad g_0 := g_1

    At the first step there is no previous gradient and the current one stands in for it, so
    :math:`u_1 = \text{alpha}\; g_1` (as optax, since its issue 1082).

    Args:
      alpha: the weight of the current gradient, any real number.
      beta: the weight of the change :math:`g_t - g_{t-1}` (the "optimism"; ``beta < 0`` is
        negative momentum), any real number.

    Returns:
      A transformation with state :class:`ScaleByOptimisticGradientState`
      ``(is_initial_step, previous_gradient)``.

    Raises:
      TypeError: ``alpha`` or ``beta`` not a real number.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_optimistic_gradient(alpha=1.0, beta=0.5)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([2.0]), state)  # 1.0 * 2
    >>> u, state = opt.update(jnp.asarray([4.0]), state)  # 1.5 * 4 - 0.5 * 2
    >>> u.tolist()
    [5.0]

    References:
      Daskalakis et al., *Training GANs with Optimism*, ICLR 2018.
      Mokhtari et al., *A Unified Analysis of Extra-gradient and Optimistic Gradient Methods
      for Saddle Point Problems: Proximal Point Approach*, AISTATS 2020.

    Differs from optax:
      ``previous_gradient`` keeps the dtype ``init`` gave it (the parameters'); optax stores
      the incoming gradient as it is, so its state changes dtype when gradients and parameters
      differ in dtype. The updates keep the gradients' dtype.
    """
    check_real("alpha", alpha)
    check_real("beta", beta)

    def init(params: PyTree) -> ScaleByOptimisticGradientState:
        return ScaleByOptimisticGradientState(
            is_initial_step=jnp.asarray(True), previous_gradient=zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes(
            "scale_by_optimistic_gradient", updates, params, "previous_gradient", state.previous_gradient
        )
        del params, extra_args

        def one(g, previous):
            dtype = _dtypes.result_type(g, previous)
            g_, previous = g.astype(dtype), previous.astype(dtype)
            previous = jnp.where(state.is_initial_step, g_, previous)  # g_0 := g_1
            u = jnp.asarray(alpha + beta, dtype) * g_ - jnp.asarray(beta, dtype) * previous
            return u.astype(g.dtype)

        new_updates = jax.tree.map(one, updates, state.previous_gradient)
        previous = cast_like(updates, state.previous_gradient)
        return new_updates, ScaleByOptimisticGradientState(jnp.asarray(False), previous)

    return GradientTransformation(init, update)


@names_errors("optimistic_gradient_descent")
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: Scalar = 1.0,
    beta: Scalar = 1.0,
) -> GradientTransformation:
    r"""Optimistic gradient descent (OGD): a descent step along the optimistic gradient.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \big((\text{alpha} + \text{beta})\, g_t
            - \text{beta}\; g_{t-1}\big)

    ``chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))``,
    as optax composes it. With ``alpha = beta = 1`` this is :math:`2 g_t - g_{t-1}`, the
    classical optimistic step, which converges on bilinear games where gradient descent
    diverges.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      alpha, beta: as in :func:`scale_by_optimistic_gradient` (numbers).

    Returns:
      The optimizer (state ``(ScaleByOptimisticGradientState, step-size state)``).

    Raises:
      TypeError: a hyperparameter that is not a real number (a schedule for ``alpha`` or
        ``beta`` included).
      ValueError: a negative learning rate.

    >>> import jax.numpy as jnp
    >>> opt = optimistic_gradient_descent(learning_rate=0.1)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([1.0]), state)
    >>> u, state = opt.update(jnp.asarray([3.0]), state)  # -0.1 * (2 * 3 - 1)
    >>> [round(x, 6) for x in u.tolist()]
    [-0.5]

    References:
      Mokhtari et al., *A Unified Analysis of Extra-gradient and Optimistic Gradient Methods
      for Saddle Point Problems: Proximal Point Approach*, AISTATS 2020.

    Differs from optax:
      optax annotates ``alpha`` and ``beta`` as numbers or schedules, but a schedule fails at
      the first update there (it is multiplied with the gradient as it is); fdl refuses one
      where it is given.
    """
    return chain(
        scale_by_optimistic_gradient(alpha=alpha, beta=beta), scale_by_required_learning_rate(learning_rate)
    )


@names_errors("optimistic_adam")
def optimistic_adam(
    learning_rate: Scalar,
    optimism: Scalar | None = None,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-08,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam: the optimistic correction applied to Adam's step (the first interface).

    With :math:`r_t` the output of :func:`~fdl.optim.adam.scale_by_adam` (NAdam's, with
    ``nesterov``, the default):

    .. math::

        r_t &= \frac{\hat m_t}{\sqrt{\hat v_t + \text{eps\_root}} + \text{eps}} \\
        u_t &= -\text{learning\_rate}\; r_t - \text{optimism}\, (r_t - r_{t-1}),
        \qquad r_0 := r_1

    ``chain(scale_by_adam(...), scale_by_optimistic_gradient(alpha=learning_rate,
    beta=optimism), scale_by_learning_rate(1.0))``, as optax composes it: the learning rate is
    the ``alpha`` of the optimistic step, and the final factor only flips the sign.

    Args:
      learning_rate: :math:`\ge 0`, a number (not a schedule: see :func:`optimistic_adam_v2`).
      optimism: the weight of :math:`r_t - r_{t-1}`, any real number; ``None`` (the default)
        means ``learning_rate``, as in the paper.
      b1, b2, eps, eps_root, mu_dtype, nesterov: as in :func:`~fdl.optim.adam.scale_by_adam`.

    Returns:
      The optimizer (state ``(ScaleByAdamState, ScaleByOptimisticGradientState, EmptyState())``).

    Raises:
      TypeError: a hyperparameter that is not a real number.
      ValueError: a schedule or a negative number for ``learning_rate``, or an invalid
        :func:`~fdl.optim.adam.scale_by_adam` argument.

    >>> import jax.numpy as jnp
    >>> opt = optimistic_adam(0.1, optimism=0.0, nesterov=False)  # Adam's first step: 0.1 sign(g)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 3) for x in u.tolist()]
    [-0.1]

    References:
      Daskalakis et al., *Training GANs with Optimism*, ICLR 2018.

    Differs from optax:
      optax deprecates this interface in favour of :func:`optimistic_adam_v2` and warns
      (``DeprecationWarning``) at every call; fdl keeps both without a warning (the two
      compute the same steps, see :func:`optimistic_adam_v2`).
    """
    if callable(learning_rate):
        raise ValueError(
            f"`learning_rate` must be a number: optimistic_adam does not take a schedule "
            f"(optimistic_adam_v2 does), got {learning_rate!r}"
        )
    check_non_negative("learning_rate", learning_rate)
    if optimism is None:
        optimism = learning_rate
    check_real("optimism", optimism)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
        scale_by_required_learning_rate(1.0),
    )


@names_errors("optimistic_adam_v2")
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: Scalar = 1.0,
    beta: Scalar = 1.0,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-08,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam, with a learning rate (or schedule) apart from the optimism weights.

    With :math:`r_t` the output of :func:`~fdl.optim.adam.scale_by_adam` (NAdam's, with
    ``nesterov``, the default):

    .. math::

        u_t = -\eta_t \big((\text{alpha} + \text{beta})\, r_t - \text{beta}\; r_{t-1}\big),
        \qquad r_0 := r_1

    ``chain(scale_by_adam(...), scale_by_optimistic_gradient(alpha, beta),
    scale_by_learning_rate(learning_rate))``, as optax composes it.
    ``optimistic_adam(lr, o)`` is ``optimistic_adam_v2(1.0, alpha=lr, beta=o)``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      alpha, beta: as in :func:`scale_by_optimistic_gradient` (numbers).
      b1, b2, eps, eps_root, mu_dtype, nesterov: as in :func:`~fdl.optim.adam.scale_by_adam`.

    Returns:
      The optimizer (state ``(ScaleByAdamState, ScaleByOptimisticGradientState, step-size
      state)``).

    Raises:
      TypeError: a hyperparameter that is not a real number.
      ValueError: a negative learning rate, or an invalid :func:`~fdl.optim.adam.scale_by_adam`
        argument.

    >>> import jax.numpy as jnp
    >>> opt = optimistic_adam_v2(0.1, beta=0.0, nesterov=False)  # Adam's first step: 0.1 sign(g)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 3) for x in u.tolist()]
    [-0.1]

    References:
      Daskalakis et al., *Training GANs with Optimism*, ICLR 2018.
    """
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=alpha, beta=beta),
        scale_by_required_learning_rate(learning_rate),
    )
