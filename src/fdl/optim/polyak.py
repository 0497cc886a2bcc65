r"""Polyak's step size: the step that would reach a known lower bound of the loss on a linear model.

If the minimum value :math:`f^\star` of the loss is known (0 for a model that can fit its data
exactly), the loss's linearization :math:`f(\theta) - s \|g\|^2` reaches it at the step size

.. math:: s = \frac{f(\theta) - f^\star}{\|g\|^2},

Polyak's classical choice for subgradient methods (Polyak, 1987). The stochastic version (SPS,
Loizou et al., 2021) uses the mini-batch loss and gradient and caps the step at a maximum. The
loss enters through optax's *extra arguments* protocol: ``update(updates, state, params,
value=loss)``; :func:`~fdl.optim.base.chain` passes ``value`` on to the members that take it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fdl import _dtypes
from fdl._checks import check_learning_rate, check_non_negative, check_real, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    init_empty_state,
)
from fdl.optim.momentum import sgd
from fdl.tree import floats, norm

__all__ = ["scale_by_polyak", "polyak_sgd"]

PyTree = Any
Scalar = float | jax.Array

VARIANTS = ("sps", "sps+")

TINY = float(np.finfo(np.float64).eps)
r"""Below this :math:`\|g\|^2 + \epsilon` the step is 0 (optax's threshold, float64's machine
epsilon, in every dtype)."""


@names_errors("scale_by_polyak")
def scale_by_polyak(
    f_min: Scalar = 0.0,
    max_learning_rate: Scalar = 1.0,
    eps: Scalar = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""Multiply the updates by Polyak's step size, capped.

    .. math::

        \text{gap} &= \begin{cases}
            \text{value} - \text{f\_min} & \text{variant='sps'} \\
            \max(\text{value} - \text{f\_min},\ 0) & \text{variant='sps+'}
        \end{cases} \\
        s &= \begin{cases}
            0 & \|g\|^2 + \text{eps} \le 2^{-52} \\
            \min\Bigl(\dfrac{\text{gap}}{\|g\|^2 + \text{eps}},\ \text{max\_learning\_rate}\Bigr)
            & \text{otherwise}
        \end{cases}, \qquad u = s\, g

    with :math:`\|g\|` the global Euclidean norm of all the incoming updates and ``value`` the
    loss at the current parameters, passed as ``update(updates, state, params, value=loss)``.
    The sign of ``g`` is kept: placed after a descent step (as :func:`polyak_sgd` places it)
    the updates already point downhill.

    Args:
      f_min: :math:`f^\star`, a lower bound of the loss (0 for a model that can fit its data).
      max_learning_rate: the cap of the step size, ``>= 0``.
      eps: added to :math:`\|g\|^2`, ``>= 0``.
      variant: ``'sps'``, or ``'sps+'`` (a loss below ``f_min`` gives the step 0 instead of a
        negative one).

    Returns:
      A stateless transformation (state :class:`~fdl.optim.base.EmptyState`); its ``update``
      needs the keyword argument ``value``.

    Raises:
      ValueError: a negative ``max_learning_rate`` or ``eps``, an unknown ``variant``.
      TypeError: in ``update``, no ``value``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_polyak()
    >>> g = jnp.asarray([3.0, 4.0])  # |g|^2 = 25
    >>> u, _ = opt.update(g, opt.init(g), value=5.0)  # s = min(5 / 25, 1)
    >>> [round(x, 6) for x in u.tolist()]
    [0.6, 0.8]

    References:
      Loizou et al., *Stochastic Polyak Step-size for SGD: An Adaptive Learning Rate for Fast
      Convergence*, AISTATS 2021.

    Differs from optax:
      optax checks ``variant`` at the first update; here the factory refuses it. A missing
      ``value`` raises a ``TypeError`` (as optax's missing keyword argument does) whose message
      says how to pass it.
    """
    check_real("f_min", f_min)
    check_non_negative("max_learning_rate", max_learning_rate)
    check_non_negative("eps", eps)
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}, got {variant!r}")

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise TypeError(
                "scale_by_polyak needs the loss at the current parameters: call "
                "`update(updates, state, params, value=loss)` (optax's extra-args protocol)"
            )
        updates = floats(updates)  # integer / Python-number updates as floats
        squared = norm(updates, squared=True)
        dtype = squared.dtype
        gap_dtype = _dtypes.result_type(value, f_min)
        gap = (jnp.asarray(value, gap_dtype) - jnp.asarray(f_min, gap_dtype)).astype(dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, jnp.zeros([], dtype))
        denominator = squared + jnp.asarray(eps, dtype)
        step = jnp.where(
            denominator <= TINY,
            jnp.zeros([], dtype),
            jnp.minimum(gap / denominator, jnp.asarray(max_learning_rate, dtype)),
        )
        return jax.tree.map(lambda g: step.astype(g.dtype) * g, updates), state

    return GradientTransformation(init_empty_state, update)


@names_errors("polyak_sgd")
def polyak_sgd(
    max_learning_rate: Scalar = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: Scalar = 0.0,
    eps: Scalar = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""SGD with Polyak's step size (SPS).

    .. math::

        \theta_{t+1} = \theta_t - \min\Bigl(\frac{\text{gap}_t}{c_t^2\|g_t\|^2 + \text{eps}},\
            \text{max\_learning\_rate}\Bigr)\, c_t\, g_t,
        \qquad c_t = \text{scaling}_t

    with ``gap`` as in :func:`scale_by_polyak` (the step is 0 where the denominator is at
    most :math:`2^{-52}`): ``chain(sgd(learning_rate=scaling), scale_by_polyak(f_min,
    max_learning_rate, eps, variant))``, as optax composes it, so the norm is taken of the
    already scaled step :math:`c_t g_t`. Call ``update(grads, state, params, value=loss)``.

    Args:
      max_learning_rate: the cap of Polyak's step size, ``>= 0``.
      scaling: :math:`c_t \ge 0`, a number or a schedule multiplying the step.
      f_min, eps, variant: as in :func:`scale_by_polyak`.

    Returns:
      The optimizer (its ``update`` needs the keyword argument ``value``).

    Raises:
      ValueError: a negative ``max_learning_rate``, ``scaling`` or ``eps``, an unknown
        ``variant``.
      TypeError: in ``update``, no ``value``.

    >>> import jax.numpy as jnp
    >>> opt = polyak_sgd()
    >>> g = jnp.asarray([3.0, 4.0])
    >>> u, _ = opt.update(g, opt.init(g), value=5.0)  # a step of 5 / 25 along -g
    >>> [round(x, 6) for x in u.tolist()]
    [-0.6, -0.8]

    References:
      Loizou et al., *Stochastic Polyak Step-size for SGD: An Adaptive Learning Rate for Fast
      Convergence*, AISTATS 2021. Berrada et al., *Training Neural Networks for and by
      Interpolation*, ICML 2020.
    """
    check_learning_rate("scaling", scaling)  # named as the caller spelled it, not sgd's
    return chain(
        sgd(learning_rate=scaling),
        scale_by_polyak(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps, variant=variant),
    )
