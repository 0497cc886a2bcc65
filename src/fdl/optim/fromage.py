r"""Fromage: steps of a fixed size *relative* to each layer, then a shrink that keeps norms steady.

Bernstein et al. (2020) bound how far a deep network's function moves by the *relative* change
of each layer's weights, :math:`\|\Delta W_l\| / \|W_l\|` (their "deep relative trust"). Fromage
(Frobenius matched gradient descent) therefore gives every layer a step of the same relative
size :math:`\eta`, along its gradient,

.. math:: W_l \leftarrow W_l - \eta\, \frac{\|W_l\|}{\|g_l\|}\, g_l,

which, the step being about orthogonal to :math:`W_l` in high dimension, would grow the norm by
a factor :math:`\sqrt{1 + \eta^2}` at every step; dividing by that factor keeps the norms
steady:

.. math:: W_l \leftarrow \frac{1}{\sqrt{1 + \eta^2}} \Bigl(W_l - \eta\, \frac{\|W_l\|}{\|g_l\|}\,
    g_l\Bigr).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_learning_rate, names_errors
from fdl.optim.base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    ScaleByScheduleState,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.trust_ratio import scale_by_trust_ratio
from fdl.tree import floats

__all__ = ["fromage"]

PyTree = Any
Scalar = float | jax.Array


def _add_scaled_params(rate: Any) -> GradientTransformation:
    r""":math:`u = g + r_t\, \theta` for any real :math:`r_t` (a number, or a function of the
    step count :math:`t = 0, 1, \ldots`), with the state of optax's ``add_decayed_weights``:
    :class:`~fdl.optim.base.EmptyState`, or ``(count,)`` for a function. Fromage's shrink has
    :math:`r < 0`, which :func:`~fdl.optim.weight_decay.add_decayed_weights` refuses as a
    decay."""
    scheduled = callable(rate)

    def init(params: PyTree) -> EmptyState | ScaleByScheduleState:
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32)) if scheduled else EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        # fromage's scale_by_trust_ratio, before this step, has refused missing parameters and
        # parameters shaped unlike the updates
        updates, params = floats(updates), floats(params)  # integer parameters as floats
        if scheduled:
            r = rate(state.count)
            state = ScaleByScheduleState(count=safe_increment(state.count))
        elif isinstance(rate, int | float) and rate == 0:  # a learning rate of 0: nothing to shrink
            return updates, state
        else:
            r = rate

        def add(g, p):
            # JAX's standard promotion written out (a Python number takes the parameter's dtype,
            # a float32 value promotes a bfloat16 one), then back to the gradient's dtype.
            r_dtype = _dtypes.result_type(r, p)
            shrink = jnp.asarray(r, r_dtype) * p.astype(r_dtype)
            total = _dtypes.result_type(g, shrink)
            return (g.astype(total) + shrink.astype(total)).astype(g.dtype)

        return jax.tree.map(add, updates, params), state

    return GradientTransformation(init, update)


@names_errors("fromage")
def fromage(learning_rate: ScalarOrSchedule, min_norm: Scalar = 1e-6) -> GradientTransformation:
    r"""Fromage: a relative step of size ``learning_rate`` per leaf, then a shrink of the norms.

    .. math::

        \theta_{t+1} = \frac{1}{\sqrt{1 + \eta_t^2}} \Bigl(\theta_t - \eta_t\,
            \frac{\max(\|\theta_t\|, \text{min\_norm})}{\max(\|g_t\|, \text{min\_norm})}\, g_t
            \Bigr), \qquad \eta_t = \text{learning\_rate}_t

    for each leaf (norms of the whole leaf; ratio 1 where either norm is 0, as in
    :func:`~fdl.optim.trust_ratio.scale_by_trust_ratio`). Written as an update, :math:`u_t =
    -\eta_t m_t \tau_t g_t + (m_t - 1)\,\theta_t` with :math:`m_t = 1/\sqrt{1 + \eta_t^2}`:
    ``chain(scale_by_trust_ratio(min_norm), scale_by_learning_rate(learning_rate * m),
    add (m - 1) * params)``, as optax composes it (optax's last step is
    ``add_decayed_weights(m - 1)``, a negative decay).

    Args:
      learning_rate: :math:`\eta \ge 0`, the relative step size, a number or a schedule (the
        paper finds 0.01 works across tasks).
      min_norm: the floor of both norms of the trust ratio, ``>= 0``.

    Returns:
      The optimizer, with state ``(EmptyState, step-size state, EmptyState)`` (the last is
      ``(count,)`` for a schedule); its ``update`` needs ``params``.

    Raises:
      ValueError: a negative ``learning_rate`` or ``min_norm``; in ``update``, no ``params``.

    >>> import jax.numpy as jnp
    >>> opt = fromage(learning_rate=0.75)  # 1 / sqrt(1 + 0.75^2) = 0.8
    >>> params = jnp.asarray([3.0, 4.0])
    >>> u, _ = opt.update(jnp.asarray([0.0, 2.0]), opt.init(params), params)
    >>> [round(x, 4) for x in (params + u).tolist()]  # 0.8 * ((3, 4) - 0.75 * (0, 5))
    [2.4, 0.2]

    References:
      Bernstein et al., *On the Distance between Two Neural Networks and the Stability of
      Learning*, NeurIPS 2020.
    """
    check_learning_rate("learning_rate", learning_rate)
    if callable(learning_rate):

        def shrink(count):
            return 1 / (1 + learning_rate(count) ** 2) ** 0.5

        step = scale_by_required_learning_rate(lambda count: shrink(count) * learning_rate(count))
        return chain(
            scale_by_trust_ratio(min_norm),
            step,
            _add_scaled_params(lambda count: shrink(count) - 1),
        )
    m = 1 / (1 + learning_rate**2) ** 0.5
    return chain(
        scale_by_trust_ratio(min_norm),
        scale_by_required_learning_rate(learning_rate * m),
        _add_scaled_params(m - 1),
    )
