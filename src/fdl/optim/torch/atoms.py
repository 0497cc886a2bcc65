r"""The atoms only PyTorch's conventions need: SGD's dampened momentum buffer and Adagrad's
root sum of squares with torch's initial accumulator and :math:`\epsilon` outside the root."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_decay,
    check_non_negative,
    check_unit_interval,
    check_update_shapes,
    names_errors,
)
from fdl.optim.adagrad import ScaleByRssState
from fdl.optim.base import GradientTransformation, safe_increment
from fdl.tree import abs_sq, floats, full_like, zeros_like

__all__ = ["DampenedTraceState", "dampened_trace", "scale_by_rss"]

PyTree = Any
Scalar = float | jax.Array


class DampenedTraceState(NamedTuple):
    """The step count :math:`t` (int32) and torch's momentum buffer :math:`b`."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    trace: PyTree


@names_errors("fdl.optim.torch.dampened_trace")
def dampened_trace(
    momentum: Scalar, dampening: Scalar = 0.0, nesterov: bool = False
) -> GradientTransformation:
    r"""PyTorch's SGD momentum buffer, with dampening.

    .. math::

        b_1 &= g_1, \qquad b_t = \mu\, b_{t-1} + (1 - d)\, g_t \quad (t \ge 2) \\
        u_t &= \begin{cases} b_t & \texttt{nesterov=False} \\
                             g_t + \mu\, b_t & \texttt{nesterov=True} \end{cases}

    with :math:`\mu` = ``momentum`` and :math:`d` = ``dampening``. The first step copies the
    gradient *undamped*, as ``torch.optim.SGD`` does (its buffer starts empty), so a constant
    gradient :math:`g` gives :math:`b_t \to (1 - d)\, g / (1 - \mu)` from :math:`b_1 = g`.

    Args:
      momentum: :math:`\mu \in [0, 1)`.
      dampening: :math:`d \in [0, 1]`.
      nesterov: step along :math:`g_t + \mu b_t` (torch requires :math:`d = 0` for it).

    Returns:
      A transformation with state :class:`DampenedTraceState` ``(count, trace)``.

    Raises:
      ValueError: ``momentum`` outside ``[0, 1)`` or ``dampening`` outside ``[0, 1]``.

    References:
      PyTorch documentation, ``torch.optim.SGD`` (the momentum buffer with dampening).

    Differs from optax / fdl: :func:`fdl.optim.momentum.trace` has no dampening and starts
    from :math:`b_0 = 0` (so :math:`b_1 = g_1` too); with :math:`d = 0` the two are the same
    rule, and :func:`sgd` then uses ``trace``. With :math:`d > 0`, the first step differs from
    a zero-started buffer, :math:`(1 - d)\, g_1`, which is why the count is kept.

    >>> import jax.numpy as jnp
    >>> opt = dampened_trace(momentum=0.5, dampening=0.5)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.ones(1), state)  # b = g
    >>> u, state = opt.update(jnp.ones(1), state)  # b = 0.5 * 1 + 0.5 * 1
    >>> u.tolist()
    [1.0]
    """
    check_decay("momentum", momentum)
    check_unit_interval("dampening", dampening)

    def init(params: PyTree) -> DampenedTraceState:
        return DampenedTraceState(count=jnp.zeros([], jnp.int32), trace=zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("fdl.optim.torch.dampened_trace", updates, params, "trace", state.trace)
        del params, extra_args
        first = state.count == 0

        def accumulate(g, b):
            dtype = _dtypes.result_type(g, b)
            g, b = g.astype(dtype), b.astype(dtype)
            later = jnp.asarray(momentum, dtype) * b + jnp.asarray(1 - dampening, dtype) * g
            return jnp.where(first, g, later)

        new_trace = jax.tree.map(accumulate, updates, state.trace)
        if nesterov:
            out = jax.tree.map(
                lambda g, b: g.astype(b.dtype) + jnp.asarray(momentum, b.dtype) * b,
                updates,
                new_trace,
            )
        else:
            out = new_trace
        out = jax.tree.map(lambda u, g: u.astype(jnp.result_type(g)), out, updates)
        new_trace = jax.tree.map(lambda b, old: b.astype(old.dtype), new_trace, state.trace)
        return out, DampenedTraceState(count=safe_increment(state.count), trace=new_trace)

    return GradientTransformation(init, update)


@names_errors("fdl.optim.torch.scale_by_rss")
def scale_by_rss(initial_accumulator_value: Scalar = 0.0, eps: Scalar = 1e-10) -> GradientTransformation:
    r"""PyTorch's Adagrad scaling: divide by the root of the summed squares, ``eps`` outside.

    .. math::

        G_t = G_{t-1} + g_t^2, \quad G_0 = \text{initial\_accumulator\_value}, \qquad
        u_t = \frac{g_t}{\sqrt{G_t} + \epsilon}

    Args:
      initial_accumulator_value: :math:`G_0 \ge 0`.
      eps: :math:`\epsilon \ge 0`, added *outside* the root.

    Returns:
      A transformation with state :class:`~fdl.optim.adagrad.ScaleByRssState`
      ``(sum_of_squares,)``.

    Raises:
      ValueError: a negative ``initial_accumulator_value`` or ``eps``.

    References:
      Duchi, Hazan and Singer, *Adaptive subgradient methods for online learning and
      stochastic optimization*, JMLR 2011. PyTorch documentation, ``torch.optim.Adagrad``.

    Differs from optax / fdl: :func:`fdl.optim.adagrad.scale_by_rss` computes
    :math:`g_t / \sqrt{G_t + \epsilon}` (0 where :math:`G_t = 0`) with defaults
    :math:`G_0 = 0.1`, :math:`\epsilon = 10^{-7}`; torch's defaults are 0 and
    :math:`10^{-10}`. As in torch, :math:`G_t = 0` with ``eps=0`` gives NaN.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_rss(eps=0.0)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([3.0]), state)
    >>> u, state = opt.update(jnp.asarray([4.0]), state)
    >>> u.tolist()  # 4 / sqrt(9 + 16)
    [0.800000011920929]
    """
    check_non_negative("initial_accumulator_value", initial_accumulator_value)
    check_non_negative("eps", eps)

    def init(params: PyTree) -> ScaleByRssState:
        return ScaleByRssState(sum_of_squares=full_like(params, initial_accumulator_value))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes(
            "fdl.optim.torch.scale_by_rss", updates, params, "sum_of_squares", state.sum_of_squares
        )
        del params, extra_args

        def accumulate(g, total):
            dtype = _dtypes.result_type(g, total)
            g = g.astype(dtype)
            return (total.astype(dtype) + abs_sq(g)).astype(total.dtype)

        sum_of_squares = jax.tree.map(accumulate, updates, state.sum_of_squares)

        def rescale(g, total):
            dtype = _dtypes.result_type(g, total)
            root = jnp.sqrt(total.astype(dtype)) + jnp.asarray(eps, dtype)
            return (g.astype(dtype) / root).astype(jnp.result_type(g))

        return jax.tree.map(rescale, updates, sum_of_squares), ScaleByRssState(sum_of_squares)

    return GradientTransformation(init, update)
