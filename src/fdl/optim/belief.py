r"""AdaBelief: Adam whose second moment is the variance of the gradient around its own average.

Adam divides by the root of a moving average of :math:`g_t^2`. AdaBelief divides by the root
of a moving average of :math:`(g_t - m_t)^2`, the squared distance between the gradient and
the momentum that "predicted" it. Where the gradient agrees with its average (a steady slope)
the denominator is small and the step large; where it jumps around, the step shrinks:

.. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g_t \\
    s_t &= \beta_2 s_{t-1} + (1 - \beta_2) (g_t - m_t)^2 + \epsilon_{root} \\
    u_t &= \frac{m_t / (1 - \beta_1^t)}{\sqrt{s_t / (1 - \beta_2^t)} + \epsilon}

(Zhuang et al., 2020). The small :math:`\epsilon_{root}` is added to :math:`s_t` itself, so it
accumulates in the state, as in the paper's Algorithm 2 and in optax.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import check_update_shapes, names_errors
from fdl.optim._adam import adam_ratio, check_adam_args, first_moment_hat
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = ["ScaleByBeliefState", "scale_by_belief", "adabelief"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByBeliefState(NamedTuple):
    """AdaBelief's state: the step count :math:`t` (int32), the first moment :math:`m` and the
    second *central* moment :math:`s` (field ``nu``, as optax names it)."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree
    nu: PyTree


@names_errors("scale_by_belief")
def scale_by_belief(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-16,
    eps_root: Scalar = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by AdaBelief's bias-corrected moments.

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t, \qquad
        s_t = \text{b2}\; s_{t-1} + (1 - \text{b2})\, |g_t - m_t|^2 + \text{eps\_root},
        \qquad m_0 = s_0 = 0 \\
        \hat m_t &= \begin{cases}
            \dfrac{m_t}{1 - \text{b1}^t} & \text{nesterov=False} \\[1ex]
            \text{b1}\, \dfrac{m_t}{1 - \text{b1}^{t+1}}
                + (1 - \text{b1})\, \dfrac{g_t}{1 - \text{b1}^t} & \text{nesterov=True}
        \end{cases} \qquad
        \hat s_t = \frac{s_t}{1 - \text{b2}^t} \\
        u_t &= \frac{\hat m_t}{\sqrt{\hat s_t} + \text{eps}}

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the second central moment, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added to :math:`s_t` at every step (it stays in the state), ``>= 0``; keep it
        positive to differentiate through the update (the root's derivative at 0 is infinite).
      nesterov: a Nesterov look-ahead first moment, as in :func:`~fdl.optim.adam.scale_by_adam`.

    Returns:
      A transformation with state :class:`ScaleByBeliefState` ``(count, mu, nu)``.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, negative ``eps``/``eps_root``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_belief(b1=0.5, b2=0.5, eps=0.0, eps_root=0.0)
    >>> u, state = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> # m = 1, s = 0.5 * (2 - 1)^2 = 0.5; m_hat = 2, s_hat = 1: u = 2 / 1
    >>> u.tolist(), state.nu.tolist()
    ([2.0], [0.5])

    References:
      Zhuang et al., *AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients*, NeurIPS 2020.

    Differs from optax:
      With gradients and moments of different dtypes the updates keep the gradients' dtype and
      the moments their own (as :func:`~fdl.optim.adam.scale_by_adam`); with equal dtypes the
      two agree bit for bit.
    """
    check_adam_args(b1, b2, eps, eps_root)

    def init(params: PyTree) -> ScaleByBeliefState:
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32), mu=zeros_like(params), nu=zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_belief", updates, params, "nu", state.nu)
        del params, extra_args
        mu = update_moment(updates, state.mu, b1, 1)
        surprise = jax.tree.map(lambda g, m: g - m, updates, mu)  # the prediction error
        nu = update_moment(surprise, state.nu, b2, 2)
        nu = jax.tree.map(lambda v: v + jnp.asarray(eps_root, v.dtype), nu)
        count = safe_increment(state.count)
        mu_hat = first_moment_hat(mu, updates, b1, count, nesterov)
        nu_hat = bias_correction(nu, b2, count)
        new_updates = cast_like(adam_ratio(mu_hat, nu_hat, eps, 0.0), updates)
        return new_updates, ScaleByBeliefState(count, cast_like(mu, state.mu), cast_like(nu, state.nu))

    return GradientTransformation(init, update)


@names_errors("adabelief")
def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-16,
    eps_root: Scalar = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdaBelief: :math:`\theta_{t+1} = \theta_t - \eta_t\, \hat m_t / (\sqrt{\hat s_t} +
    \epsilon)`, with :math:`s` the moving variance of the gradient around its average.

    ``chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov),
    scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, eps_root, nesterov: as in :func:`scale_by_belief`.

    Returns:
      The optimizer (state ``(ScaleByBeliefState, step-size state)``).

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_belief` argument.

    >>> import jax.numpy as jnp
    >>> opt = adabelief(learning_rate=0.1)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in u.tolist()]  # s_1 = 0.001 (3 - 0.3)^2: u = -0.1 * 3 / 2.7
    [-0.1111]

    References:
      Zhuang et al., *AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients*, NeurIPS 2020.
    """
    return chain(
        scale_by_belief(b1=b1, b2=b2, eps=eps, eps_root=eps_root, nesterov=nesterov),
        scale_by_required_learning_rate(learning_rate),
    )
