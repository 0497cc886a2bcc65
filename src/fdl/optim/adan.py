r"""Adan: Adam-style moments with a Nesterov-like correction from the change of the gradient.

Nesterov momentum evaluates the gradient at a look-ahead point, which costs a second
gradient. Adan (Xie et al., 2022) estimates that look-ahead from the change of the gradient
between steps, :math:`g_t - g_{t-1}` (a finite-difference view of the curvature): it keeps
moving averages of the gradient, of its change and of the squared corrected gradient, and
steps along the corrected first moment divided by the root of the third.
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
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import as_float, bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = ["ScaleByAdanState", "scale_by_adan", "adan"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByAdanState(NamedTuple):
    r"""Adan's moving averages :math:`m_t` (gradient), :math:`v_t` (its change), :math:`n_t`
    (squared corrected gradient), the last gradient :math:`g_t`, each shaped like the
    parameters, and the step count :math:`t` (int32), in optax's order."""

    m: PyTree
    v: PyTree
    n: PyTree
    g: PyTree
    t: jax.Array


def _plus_scaled(x: jax.Array, factor: Any, y: jax.Array) -> jax.Array:
    r""":math:`x + \text{factor}\; y`, the product in ``y``'s dtype, the sum in the promoted one."""
    scaled = jnp.asarray(factor, y.dtype) * y
    dtype = _dtypes.result_type(x, scaled)
    return x.astype(dtype) + scaled.astype(dtype)


@names_errors("scale_by_adan")
def scale_by_adan(
    b1: Scalar = 0.98,
    b2: Scalar = 0.92,
    b3: Scalar = 0.99,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
) -> GradientTransformation:
    r"""Rescale updates by Adan's moments, as optax 0.2.8 computes them.

    With :math:`\delta_t = g_t - g_{t-1}` for :math:`t > 1` and :math:`\delta_1 = 0`:

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t \\
        v_t &= \text{b2}\; v_{t-1} + (1 - \text{b2})\, \delta_t \\
        n_t &= \text{b3}\; n_{t-1} + (1 - \text{b3})\, \big|g_t + (1 - \text{b2})\,
            \delta_t\big|^2, \qquad m_0 = v_0 = n_0 = 0 \\
        u_t &= \frac{m_t / (1 - \text{b1}^t) + (1 - \text{b2})\, v_t / (1 - \text{b2}^t)}
            {\sqrt{n_t / (1 - \text{b3}^t) + \text{eps\_root}} + \text{eps}}

    for :math:`t = 1, 2, \ldots` (the count ``t`` in the state is :math:`t` after the step).
    The ``b`` here are one minus the paper's :math:`\beta` (``b1 = 0.98`` is its
    :math:`\beta_1 = 0.02`).

    Args:
      b1: decay of the gradient's average, in ``[0, 1)``.
      b2: decay of the average of the gradient's change, in ``[0, 1)``.
      b3: decay of the average of the squared corrected gradient, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added inside the square root, ``>= 0``.

    Returns:
      A transformation with state :class:`ScaleByAdanState` ``(m, v, n, g, t)``.

    Raises:
      ValueError: ``b1``, ``b2`` or ``b3`` outside ``[0, 1)``, a negative ``eps`` or
        ``eps_root``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_adan()
    >>> u, state = opt.update(jnp.asarray([0.5, -2.0]), opt.init(jnp.zeros(2)))
    >>> [round(x, 4) for x in u.tolist()]  # the first step is sign(g), up to rounding
    [1.0, -1.0]

    References:
      Xie et al., *Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
      Models*, arXiv:2208.06677 (TPAMI 2024).

    Differs from the paper:
      The paper's Algorithm 1 (and the authors' PyTorch code) weights the change of the
      gradient by :math:`1 - \beta_2`, which is ``b2`` here, in :math:`n_t` and in
      :math:`u_t`:

      .. math::

          n_t = \text{b3}\; n_{t-1} + (1 - \text{b3})\, |g_t + \text{b2}\; \delta_t|^2,
          \qquad u_t \propto \hat m_t + \text{b2}\; \hat v_t

      optax 0.2.8 uses :math:`1 - \text{b2}` (0.08 instead of 0.92 by default; optax pull
      request #1715 proposes the paper's weight), and so does fdl, to equal optax. The two
      agree at the first step, where :math:`\delta_1 = 0`.

    Differs from optax:
      The state keeps its dtypes and the updates the gradients' dtype, also when the
      hyperparameters are float32 arrays and the gradients bfloat16 (optax promotes to
      float32 there); a hyperparameter is cast to the dtype of what it multiplies. With
      Python-number hyperparameters the two agree bit for bit, bfloat16 included.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_decay("b3", b3)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)

    def init(params: PyTree) -> ScaleByAdanState:
        return ScaleByAdanState(
            m=zeros_like(params),
            v=zeros_like(params),
            n=zeros_like(params),
            g=zeros_like(params),
            t=jnp.zeros([], jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_adan", updates, params, "m", state.m)
        del params, extra_args
        fresh = state.t == 0  # no previous gradient yet: no change

        def change(g, previous):
            previous = as_float(previous)
            dtype = _dtypes.result_type(g, previous)
            delta = g.astype(dtype) - previous.astype(dtype)
            return jnp.where(fresh, jnp.zeros_like(delta), delta)

        delta = jax.tree.map(change, updates, state.g)
        m = update_moment(updates, state.m, b1, 1)
        v = update_moment(delta, state.v, b2, 1)
        corrected = jax.tree.map(lambda g, d: _plus_scaled(g, 1 - b2, d), updates, delta)
        n = update_moment(corrected, state.n, b3, 2)
        t = safe_increment(state.t)
        m_hat = bias_correction(m, b1, t)
        v_hat = bias_correction(v, b2, t)
        n_hat = bias_correction(n, b3, t)

        def ratio(m_, v_, n_):
            numerator = _plus_scaled(m_, 1 - b2, v_)
            denominator = jnp.sqrt(n_ + jnp.asarray(eps_root, n_.dtype)) + jnp.asarray(eps, n_.dtype)
            dtype = _dtypes.result_type(numerator, denominator)
            return numerator.astype(dtype) / denominator.astype(dtype)

        new_updates = cast_like(jax.tree.map(ratio, m_hat, v_hat, n_hat), updates)
        new_state = ScaleByAdanState(
            m=cast_like(m, state.m),
            v=cast_like(v, state.v),
            n=cast_like(n, state.n),
            g=cast_like(updates, state.g),
            t=t,
        )
        return new_updates, new_state

    return GradientTransformation(init, update)


@names_errors("adan")
def adan(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.98,
    b2: Scalar = 0.92,
    b3: Scalar = 0.99,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""Adan (:func:`scale_by_adan`) with decoupled weight decay, then the learning rate.

    ``chain(scale_by_adan(b1, b2, b3, eps, eps_root), add_decayed_weights(weight_decay,
    mask), scale_by_learning_rate(learning_rate))``, as optax composes it:

    .. math:: \theta_{t+1} = \theta_t - \eta\, (u_t + \lambda\, \theta_t)

    with :math:`u_t` of :func:`scale_by_adan` and :math:`\lambda` = ``weight_decay``. Note the
    default ``eps_root=1e-8`` here against 0 in the atom, as in optax.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, b3, eps, eps_root: as in :func:`scale_by_adan`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      mask: which leaves to decay (see :func:`~fdl.optim.weight_decay.masked`); ``None``
        decays all.

    Returns:
      The optimizer (state ``(ScaleByAdanState, weight-decay state, step-size state)``); its
      ``update`` needs the parameters.

    Raises:
      ValueError: a negative learning rate or weight decay, or an invalid
        :func:`scale_by_adan` argument.

    >>> import jax.numpy as jnp
    >>> opt = adan(learning_rate=0.1)
    >>> params = jnp.zeros(2)
    >>> u, _ = opt.update(jnp.asarray([0.5, -2.0]), opt.init(params), params)
    >>> [round(x, 4) for x in u.tolist()]  # about -0.1 * sign(g)
    [-0.1, 0.1]

    References:
      Xie et al., *Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing Deep
      Models*, arXiv:2208.06677 (TPAMI 2024).

    Differs from the paper:
      Besides the weight of the gradient's change (see :func:`scale_by_adan`), the paper
      decays the weights proximally, :math:`\theta_{t+1} = (\theta_t - \eta\, u_t) / (1 +
      \lambda\eta)`; here (as in optax) the decay is added to the update. The two agree to
      first order in :math:`\lambda\eta`.
    """
    return chain(
        scale_by_adan(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_required_learning_rate(learning_rate),
    )
