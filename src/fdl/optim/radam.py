r"""RAdam: Adam with its adaptive step switched on only once the second moment is trustworthy.

In Adam's first steps :math:`\hat v_t` averages only a few squared gradients, so the adaptive
step size :math:`1/\sqrt{\hat v_t}` has a large variance; that is why Adam needs a warm-up.
Liu et al. (2020) estimate the length of the simple moving average that the EMA corresponds
to,

.. math::

    \rho_\infty = \frac{2}{1 - \beta_2} - 1, \qquad
    \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t},

and while :math:`\rho_t` is below a threshold (5) take plain momentum steps :math:`\hat m_t`;
after that, Adam's step scaled by the *rectification* :math:`r_t`, which undoes the excess
variance and tends to 1:

.. math::

    r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\, \rho_\infty}
                     {(\rho_\infty - 4)(\rho_\infty - 2)\, \rho_t}}.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_real, check_update_shapes, names_errors
from fdl.optim._adam import check_adam_args, first_moment_hat
from fdl.optim.adam import ScaleByAdamState
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = ["scale_by_radam", "radam"]

PyTree = Any
Scalar = float | jax.Array


@names_errors("scale_by_radam")
def scale_by_radam(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    threshold: Scalar = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by Rectified Adam.

    With :math:`m_t, v_t, \hat m_t, \hat v_t` as in :func:`~fdl.optim.adam.scale_by_adam`
    (``nesterov`` included) and :math:`\rho_t, r_t` as in the module docstring:

    .. math::

        u_t = \begin{cases}
            r_t\, \hat m_t / (\sqrt{\hat v_t + \text{eps\_root}} + \text{eps})
                & \rho_t \ge \text{threshold} \\
            \hat m_t & \text{otherwise}
        \end{cases}

    :math:`\rho_1 = 1` and :math:`\rho_t` grows towards :math:`\rho_\infty`: with the
    defaults (``b2=0.999``, ``threshold=5``) the first 5 steps are momentum steps.

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added inside the square root, ``>= 0``.
      threshold: the :math:`\rho_t` from which the adaptive step is used (a real number; the
        paper uses 4, where :math:`r_t` becomes real; optax and fdl default to 5).
      nesterov: a Nesterov look-ahead first moment.

    Returns:
      A transformation with state :class:`~fdl.optim.adam.ScaleByAdamState`
      ``(count, mu, nu)``, as optax's.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, negative ``eps``/``eps_root``.
      TypeError: a ``threshold`` that is not a real number.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_radam()
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in u.tolist()]  # step 1: rho_1 = 1 < 5, the momentum m_hat = g
    [3.0]

    References:
      Liu et al., *On the Variance of the Adaptive Learning Rate and Beyond*, ICLR 2020.

    Differs from PyTorch:
      ``torch.optim.RAdam`` switches at :math:`\rho_t > 5` (strictly; its threshold is fixed)
      and computes the adaptive factor as :math:`\sqrt{1 - \text{b2}^t} / (\sqrt{v_t} +
      \text{eps})`: its ``eps`` is added before the bias correction, so it acts as
      :math:`\text{eps} / \sqrt{1 - \text{b2}^t}` here. With ``eps=0`` and
      :math:`\rho_t \ne 5` the two updates are equal up to rounding.
    """
    check_adam_args(b1, b2, eps, eps_root)
    check_real("threshold", threshold)
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def rectification(rho):
        return jnp.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))

    def init(params: PyTree) -> ScaleByAdamState:
        return ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros_like(params), nu=zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_radam", updates, params, "nu", state.nu)
        del params, extra_args
        mu = update_moment(updates, state.mu, b1, 1)
        nu = update_moment(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        with jax.numpy_dtype_promotion("standard"):  # the count is an int32, b2 a number
            b2t = b2**count
            rho = rho_inf - 2 * count * b2t / (1 - b2t)
        mu_hat = first_moment_hat(mu, updates, b1, count, nesterov)
        nu_hat = bias_correction(nu, b2, count)
        r = rectification(rho)

        def one(m, v):
            common = _dtypes.result_type(m, v)
            m, v = m.astype(common), v.astype(common)
            denominator = jnp.sqrt(v + jnp.asarray(eps_root, common)) + jnp.asarray(eps, common)
            return jnp.where(rho >= threshold, r.astype(common) * m / denominator, m)

        new_updates = cast_like(jax.tree.map(one, mu_hat, nu_hat), updates)
        return new_updates, ScaleByAdamState(count, cast_like(mu, state.mu), cast_like(nu, state.nu))

    return GradientTransformation(init, update)


@names_errors("radam")
def radam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    threshold: Scalar = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rectified Adam: momentum steps while :math:`\rho_t` < ``threshold``, then Adam's step
    times the rectification :math:`r_t` (:func:`scale_by_radam`).

    ``chain(scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
    scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, eps_root, threshold, nesterov: as in :func:`scale_by_radam`.

    Returns:
      The optimizer (state ``(ScaleByAdamState, step-size state)``).

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_radam` argument.

    >>> import jax.numpy as jnp
    >>> opt = radam(learning_rate=0.1)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in u.tolist()]  # a momentum step: -0.1 * m_hat = -0.1 * 3
    [-0.3]

    References:
      Liu et al., *On the Variance of the Adaptive Learning Rate and Beyond*, ICLR 2020.
    """
    return chain(
        scale_by_radam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold, nesterov=nesterov),
        scale_by_required_learning_rate(learning_rate),
    )
