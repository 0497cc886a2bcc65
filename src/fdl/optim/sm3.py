r"""SM3: Adagrad's per-weight step sizes, from one accumulator per row and per column.

Adagrad divides each gradient by the root of its own sum of squares :math:`\sum_s g_{s,ij}^2`:
one accumulator per weight. SM3 (Anil et al., 2019) keeps one accumulator per *slice* of a
tensor instead, an entry per index of each axis (a row vector and a column vector for a
matrix: :math:`n + m` numbers, not :math:`nm`). Each weight's accumulator is rebuilt as the
*minimum* over the slices through it, and each slice stores the *maximum* over its weights:

.. math::

    \nu_{t,ij} = \min(\mu^{\text{row}}_{t-1,i},\ \mu^{\text{col}}_{t-1,j}) + g_{t,ij}^2, \qquad
    \mu^{\text{row}}_{t,i} = \max_j \nu_{t,ij}, \quad \mu^{\text{col}}_{t,j} = \max_i \nu_{t,ij}.

Since every slice through a weight holds at least that weight's own sum, :math:`\nu_t` is an
upper bound of Adagrad's accumulator that is never looser than the tightest slice: the step is
Adagrad's or smaller, with Adagrad's regret guarantee (SM3-II of the paper).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    as_concrete_number,
    check_decay,
    check_non_negative,
    check_unit_interval,
    check_update_shapes,
    names_errors,
)
from fdl._paths import path_label
from fdl.optim.base import GradientTransformation, ScalarOrSchedule, chain, scale_by_required_learning_rate
from fdl.tree import abs_sq, as_float, cast_like, float_dtype, floats, update_moment, zeros_like

__all__ = ["ScaleBySM3State", "scale_by_sm3", "sm3"]

PyTree = Any
Scalar = float | jax.Array


class ScaleBySM3State(NamedTuple):
    """Per parameter leaf, the list of the per-axis accumulators :math:`\\mu` (one vector per
    axis, the axis' length long) and the momentum :math:`m` of the rescaled gradients (the
    leaf's shape), as optax's ``ScaleBySM3State``."""

    mu: PyTree
    nu: PyTree


def _check_leaves(params: PyTree) -> None:
    """Refuse scalar and complex leaves, naming the leaf (SM3 has no accumulator for a leaf
    without axes, and its maximum and minimum need real values)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        where = path_label(path)
        if jnp.ndim(leaf) == 0:
            raise ValueError(
                f"scale_by_sm3: the parameter at {where} is a scalar (shape ()); SM3 keeps one "
                "accumulator per axis, and a scalar has none: give it shape (1,)"
            )
        if jnp.iscomplexobj(leaf):
            raise ValueError(
                f"scale_by_sm3: the parameter at {where} is {jnp.result_type(leaf)}; SM3 compares "
                "squared gradients by size (max, min), so it takes real parameters only"
            )


def _times(weight: Any, x: jax.Array) -> jax.Array:
    """``weight * x`` in their promoted dtype (a Python number takes ``x``'s)."""
    dtype = _dtypes.result_type(weight, x)
    return jnp.asarray(weight, dtype) * x.astype(dtype)


@names_errors("scale_by_sm3")
def scale_by_sm3(b1: Scalar = 0.9, b2: Scalar = 1.0, eps: Scalar = 1e-8) -> GradientTransformation:
    r"""Rescale updates by SM3's cover of the squared gradients, then average them.

    For a leaf :math:`g` with :math:`k \ge 2` axes and one accumulator vector
    :math:`\mu^{(a)}` per axis :math:`a`,

    .. math::

        \nu_t[i] &= c\; |g_t[i]|^2 + \text{b2}\; \min_{a} \mu^{(a)}_{t-1}[i_a], \qquad
            c = \begin{cases} 1 & \text{b2} = 1 \\ 1 - \text{b2} & \text{otherwise}\end{cases}
            \\
        \mu^{(a)}_t[j] &= \max_{i:\ i_a = j} \nu_t[i] \\
        r_t &= \begin{cases} g_t / \sqrt{\nu_t + \text{eps}} & \nu_t > 0 \\ 0 & \nu_t = 0
            \end{cases} \\
        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, r_t, \qquad u_t = m_t

    with :math:`i = (i_1, \ldots, i_k)` a multi-index and all accumulators starting at 0. For a
    vector the single accumulator is the full :math:`\nu_t` (Adagrad's sum with ``b2=1``). With
    the default ``b2=1`` the accumulators are sums (SM3-II); with ``b2 < 1`` they are moving
    averages (RMSprop-like).

    Args:
      b1: the decay of the momentum of the rescaled gradients, in ``[0, 1)``.
      b2: the decay of the accumulators, in ``[0, 1]``; 1 sums the squares.
      eps: added under the square root, ``>= 0``.

    Returns:
      A transformation with state :class:`ScaleBySM3State` ``(mu, nu)``: ``mu`` a list of
      ``ndim`` vectors per leaf, ``nu`` the momentum.

    Raises:
      ValueError: ``b1`` outside ``[0, 1)``, ``b2`` outside ``[0, 1]``, a negative ``eps``; in
        ``init`` and ``update``, a scalar or complex parameter.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_sm3(b1=0.0)
    >>> state = opt.init(jnp.zeros((2, 3)))
    >>> [m.shape for m in state.mu]  # a row and a column accumulator
    [(2,), (3,)]
    >>> g = jnp.asarray([[3.0, 0.0, 0.0], [0.0, 0.0, 4.0]])
    >>> u, state = opt.update(g, state)
    >>> [m.tolist() for m in state.mu]  # the largest g^2 of each row, of each column
    [[9.0, 16.0], [9.0, 0.0, 16.0]]
    >>> [round(x, 6) for x in u[0].tolist()]
    [1.0, 0.0, 0.0]

    References:
      Anil, Gupta, Koren and Singer, *Memory-Efficient Adaptive Optimization*, NeurIPS 2019.

    Differs from optax:
      Scalar and complex parameters are refused in ``init`` with a message naming the leaf
      (optax's ``init`` refuses complex ones; its ``update`` fails on a scalar with an
      ``IndexError``). The updates keep the gradients' dtype and the state its own dtypes.
    """
    check_decay("b1", b1)
    check_unit_interval("b2", b2)
    check_non_negative("eps", eps)
    b2_number = as_concrete_number(b2)
    if b2_number is None:  # traced: the choice of c is made at run time
        fresh_weight: Any = jnp.where(jnp.asarray(b2) == 1.0, 1.0, 1.0 - b2)
    else:
        fresh_weight = 1.0 if b2_number == 1.0 else 1.0 - b2

    def init(params: PyTree) -> ScaleBySM3State:
        _check_leaves(params)

        def per_axis(p):
            dtype = float_dtype(p)
            return [jnp.zeros((n,), dtype) for n in jnp.shape(p)]

        return ScaleBySM3State(mu=jax.tree.map(per_axis, params), nu=zeros_like(params))

    def step_leaf(g: jax.Array, mu: list) -> tuple[jax.Array, list]:
        """One leaf's rescaled gradient :math:`r_t` and new accumulators :math:`\\mu_t`."""
        g = as_float(g)
        axes = range(g.ndim)
        spread = [  # accumulator a along axis a, length 1 along the others: (1, .., n_a, .., 1)
            jnp.reshape(m, tuple(n if i == a else 1 for i, n in enumerate(g.shape)))
            for a, m in zip(axes, mu, strict=True)
        ]
        cover = functools.reduce(jnp.minimum, spread)  # g's shape (for a vector: mu itself)
        fresh, old = _times(fresh_weight, abs_sq(g)), _times(b2, cover)
        dtype = _dtypes.result_type(fresh, old)
        nu = fresh.astype(dtype) + old.astype(dtype)
        root = jnp.where(nu > 0, jax.lax.rsqrt(nu + jnp.asarray(eps, nu.dtype)), jnp.zeros_like(nu))
        dtype = _dtypes.result_type(g, root)
        rescaled = (g.astype(dtype) * root.astype(dtype)).astype(g.dtype)
        if g.ndim == 1:
            maxima = [nu]
        else:  # the largest entry of each slice: max over every axis but a, shape (n_a,)
            maxima = [jnp.max(nu, axis=tuple(i for i in axes if i != a)) for a in axes]
        return rescaled, [m.astype(before.dtype) for m, before in zip(maxima, mu, strict=True)]

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_sm3", updates, params, "nu", state.nu)
        _check_leaves(updates)
        del params, extra_args
        leaves, treedef = jax.tree.flatten(updates)
        stepped = [step_leaf(g, mu) for g, mu in zip(leaves, treedef.flatten_up_to(state.mu), strict=True)]
        rescaled = jax.tree.unflatten(treedef, [r for r, _ in stepped])
        mu = jax.tree.unflatten(treedef, [m for _, m in stepped])
        momentum = update_moment(rescaled, state.nu, b1, 1)
        return cast_like(momentum, updates), ScaleBySM3State(mu=mu, nu=cast_like(momentum, state.nu))

    return GradientTransformation(init, update)


@names_errors("sm3")
def sm3(learning_rate: ScalarOrSchedule, momentum: Scalar = 0.9) -> GradientTransformation:
    r"""SM3: :func:`scale_by_sm3` (accumulators summed, ``b2=1``) and a descent step.

    .. math:: \theta_{t+1} = \theta_t - \eta_t\, m_t

    with :math:`m_t` the momentum of :func:`scale_by_sm3` (``b1=momentum``): ``chain(
    scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      momentum: the decay of the momentum, in ``[0, 1)``.

    Returns:
      The optimizer (state ``(ScaleBySM3State, step-size state)``).

    Raises:
      ValueError: a negative learning rate, a ``momentum`` outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> opt = sm3(learning_rate=0.1, momentum=0.0)
    >>> u, _ = opt.update(jnp.asarray([2.0, -0.5]), opt.init(jnp.zeros(2)))
    >>> [round(x, 6) for x in u.tolist()]  # the first step is -0.1 * sign(g)
    [-0.1, 0.1]

    References:
      Anil, Gupta, Koren and Singer, *Memory-Efficient Adaptive Optimization*, NeurIPS 2019.

    Differs from optax:
      ``learning_rate`` may be a schedule (optax's ``sm3`` takes a number only) and must be
      ``>= 0``, as everywhere in fdl.optim.
    """
    check_decay("momentum", momentum)  # named as the caller spelled it, not scale_by_sm3's b1
    return chain(scale_by_sm3(b1=momentum), scale_by_required_learning_rate(learning_rate))
