r"""Adadelta: a step size with the units of the parameters.

Zeiler's Adadelta fixes two things in Adagrad: the ever-growing sum of squared gradients
becomes a moving average :math:`E[g^2]` (as in RMSProp), and the global learning rate is
replaced by a moving RMS of the *past updates* :math:`E[\Delta\theta^2]`, so the step
:math:`\sqrt{E[\Delta\theta^2]}/\sqrt{E[g^2]}\; g` has the units of :math:`\theta` (a ratio
of second-order-like quantities, like a diagonal Newton step):

.. math::

    E[g^2]_t = \rho\, E[g^2]_{t-1} + (1 - \rho)\, g_t^2, \qquad
    \Delta\theta_t = \frac{\sqrt{E[\Delta\theta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\,
        g_t, \qquad
    E[\Delta\theta^2]_t = \rho\, E[\Delta\theta^2]_{t-1} + (1 - \rho)\, \Delta\theta_t^2 .
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, check_update_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    scale_by_required_learning_rate,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import cast_like, floats, update_moment, zeros_like

__all__ = ["ScaleByAdaDeltaState", "scale_by_adadelta", "adadelta"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByAdaDeltaState(NamedTuple):
    r"""Adadelta's state: moving averages of squared gradients (``e_g``) and squared updates
    (``e_x``)."""

    e_g: PyTree
    e_x: PyTree


@names_errors("scale_by_adadelta")
def scale_by_adadelta(rho: Scalar = 0.9, eps: Scalar = 1e-6) -> GradientTransformation:
    r"""Rescale updates by Adadelta's ratio of RMS update to RMS gradient.

    .. math::

        e^g_t &= \rho\, e^g_{t-1} + (1 - \rho)\, g_t^2, \qquad e^g_0 = e^x_0 = 0 \\
        u_t &= \frac{\sqrt{e^x_{t-1} + \text{eps}}}{\sqrt{e^g_t + \text{eps}}}\, g_t \\
        e^x_t &= \rho\, e^x_{t-1} + (1 - \rho)\, u_t^2

    Note that :math:`u_t` uses the *previous* update average :math:`e^x_{t-1}`: the first
    step is :math:`\sqrt{\text{eps}/(e^g_1 + \text{eps})}\, g_1`, small, and the step size
    grows as updates accumulate.

    Args:
      rho: decay of both averages, in ``[0, 1)``.
      eps: :math:`\epsilon \ge 0`, inside both roots.

    Returns:
      A transformation with state :class:`ScaleByAdaDeltaState` ``(e_g, e_x)``.

    Raises:
      ValueError: ``rho`` outside ``[0, 1)`` or a negative ``eps``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_adadelta(rho=0.5, eps=1.0)
    >>> u, state = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 6) for x in u.tolist()]  # sqrt(0 + 1) / sqrt(0.5 * 4 + 1) * 2
    [1.154701]

    References:
      Zeiler, *ADADELTA: An Adaptive Learning Rate Method*, 2012.

    Differs from PyTorch:
      ``torch.optim.Adadelta`` computes the same quantities; it multiplies by ``lr``
      (default 1.0) afterwards and adds ``weight_decay`` as coupled L2 to the gradient
      first, as :func:`adadelta` does.

    Differs from optax:
      For complex gradients the squares are :math:`|g_t|^2` and :math:`|u_t|^2` (real, as in
      every fdl second moment); optax 0.2.8 squares :math:`g_t` itself.
    """
    check_decay("rho", rho)
    check_non_negative("eps", eps)

    def init(params: PyTree) -> ScaleByAdaDeltaState:
        return ScaleByAdaDeltaState(e_g=zeros_like(params), e_x=zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_adadelta", updates, params, "e_g", state.e_g)
        del params, extra_args
        e_g = update_moment(updates, state.e_g, rho, 2)

        def rescale(g, e_g_now, e_x_before):
            dtype = _dtypes.result_type(e_g_now, e_x_before)
            numerator = jnp.sqrt(e_x_before.astype(dtype) + jnp.asarray(eps, dtype))
            denominator = jnp.sqrt(e_g_now.astype(dtype) + jnp.asarray(eps, dtype))
            ratio = numerator / denominator
            dtype = _dtypes.result_type(ratio, g)
            return ratio.astype(dtype) * g.astype(dtype)

        steps = jax.tree.map(rescale, updates, e_g, state.e_x)
        e_x = update_moment(steps, state.e_x, rho, 2)
        new_state = ScaleByAdaDeltaState(e_g=cast_like(e_g, state.e_g), e_x=cast_like(e_x, state.e_x))
        return cast_like(steps, updates), new_state

    return GradientTransformation(init, update)


@names_errors("adadelta")
def adadelta(
    learning_rate: ScalarOrSchedule | None = None,
    rho: Scalar = 0.9,
    eps: Scalar = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask | None = None,
) -> GradientTransformation:
    r"""Adadelta, with optional (coupled) weight decay.

    .. math::

        \tilde g_t = g_t + \text{weight\_decay}\; \theta_t, \qquad
        \theta_{t+1} = \theta_t - \eta_t\, \operatorname{adadelta}(\tilde g)_t

    ``chain(add_decayed_weights(weight_decay, weight_decay_mask), scale_by_adadelta(rho, eps),
    scale_by_learning_rate(learning_rate))``, as optax composes it. The decay is added to the
    gradient *before* the rescaling (L2 regularisation, as PyTorch's ``weight_decay``).

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule; ``None`` means
        :math:`\eta = 1` (Zeiler's Adadelta has no learning rate).
      rho, eps: as in :func:`scale_by_adadelta`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      weight_decay_mask: which parameters to decay (see
        :func:`~fdl.optim.weight_decay.masked`).

    Returns:
      The optimizer.

    Raises:
      ValueError: a negative learning rate or weight decay, or an invalid ``rho``/``eps``.

    >>> import jax.numpy as jnp
    >>> opt = adadelta(rho=0.5, eps=1.0)
    >>> params = jnp.zeros(1)
    >>> updates, _ = opt.update(jnp.asarray([2.0]), opt.init(params), params)
    >>> [round(x, 6) for x in updates.tolist()]  # a descent step
    [-1.154701]

    References:
      Zeiler, *ADADELTA: An Adaptive Learning Rate Method*, 2012.

    Differs from optax:
      optax 0.2.8 turns ``learning_rate=None`` into ``identity()``, which returns
      :math:`+\Delta\theta` and so *ascends* under ``apply_updates``. Here ``None`` means a
      learning rate of 1 with the usual minus sign (the same state, :math:`-1` times optax's
      updates); any number or schedule agrees with optax.
    """
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        scale_by_adadelta(rho=rho, eps=eps),
        scale_by_required_learning_rate(1.0 if learning_rate is None else learning_rate),
    )
