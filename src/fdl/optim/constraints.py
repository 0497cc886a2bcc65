r"""Constraints on the step: parameters kept non-negative, NaN updates zeroed.

Two small stateless-in-effect transformations, usually placed last (``keep_params_nonnegative``)
or first (``zero_nans``) in a chain:

* :func:`keep_params_nonnegative` projects onto :math:`\theta \ge 0` coordinate by coordinate:
  an update that would take a coordinate below zero takes it exactly to zero instead.
* :func:`zero_nans` replaces NaN entries of the updates by 0 and records, per leaf, whether it
  found any (inf is left alone).
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp

from fdl._checks import check_same_shapes
from fdl.optim.base import EmptyState, GradientTransformation, init_empty_state
from fdl.tree import floats

__all__ = ["keep_params_nonnegative", "NonNegativeParamsState", "zero_nans", "ZeroNansState"]

PyTree = Any

NonNegativeParamsState: TypeAlias = EmptyState
"""The state of :func:`keep_params_nonnegative` (no leaves), as optax names it."""


class ZeroNansState(NamedTuple):
    """Per leaf of the updates, a bool scalar: whether the last update had a NaN there."""

    found_nan: PyTree


def keep_params_nonnegative() -> GradientTransformation:
    r"""Clip each update so the parameters stay :math:`\ge 0`.

    .. math::

        u_i = \begin{cases} -\theta_i & \theta_i + g_i < 0 \\ g_i & \text{otherwise}
        \end{cases}

    so :math:`\theta_i + u_i = \max(\theta_i + g_i, 0)` for parameters that start
    non-negative. Put it last in the chain: it sees the final update.

    Returns:
      A transformation with no state (``NonNegativeParamsState``); its ``update`` needs
      ``params``.

    >>> import jax.numpy as jnp
    >>> opt = keep_params_nonnegative()
    >>> params = jnp.asarray([1.0, 1.0])
    >>> u, _ = opt.update(jnp.asarray([-3.0, -0.5]), opt.init(params), params)
    >>> u.tolist()
    [-1.0, -0.5]
    """

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "keep_params_nonnegative: `params` is None; the update is clipped where params + "
                "updates < 0, so pass the parameters: update(updates, state, params)"
            )
        updates, params = floats(updates), floats(params)  # integers as floats
        check_same_shapes("keep_params_nonnegative", "`updates`", updates, "`params`", params)
        return jax.tree.map(lambda g, p: jnp.where((p + g) < 0.0, -p, g), updates, params), state

    return GradientTransformation(init_empty_state, update)


def zero_nans() -> GradientTransformation:
    r"""Replace NaN entries of the updates by zero: :math:`u_i = 0` where :math:`g_i` is NaN,
    else :math:`g_i`. The state records, per leaf, whether this update had a NaN.

    Returns:
      A transformation with state :class:`ZeroNansState` ``(found_nan,)``.

    >>> import jax.numpy as jnp
    >>> opt = zero_nans()
    >>> u, state = opt.update({"w": jnp.asarray([1.0, jnp.nan])}, opt.init({"w": jnp.zeros(2)}))
    >>> u["w"].tolist(), bool(state.found_nan["w"])
    ([1.0, 0.0], True)
    """

    def init(params: PyTree) -> ZeroNansState:
        return ZeroNansState(found_nan=jax.tree.map(lambda _: jnp.asarray(False), params))

    def update(updates, state, params=None, **extra_args):
        del state, extra_args
        updates = floats(updates)  # integer / Python-number updates as floats
        if params is not None:
            check_same_shapes("zero_nans", "`updates`", updates, "`params`", params)
        found = jax.tree.map(lambda g: jnp.any(jnp.isnan(g)), updates)
        cleaned = jax.tree.map(lambda g: jnp.where(jnp.isnan(g), jnp.zeros_like(g), g), updates)
        return cleaned, ZeroNansState(found_nan=found)

    return GradientTransformation(init, update)
