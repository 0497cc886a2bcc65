r"""Rprop: a step size per weight, grown while the gradient keeps its sign, shrunk when it flips.

Resilient backpropagation (Riedmiller and Braun, 1993) ignores the gradient's magnitude. Each
weight has its own step size :math:`\Delta`; it is multiplied by ``eta_plus`` (> 1) while the
gradient keeps its sign and by ``eta_minus`` (< 1) when the sign flips (the last step jumped
over a minimum), and the weight moves by :math:`\Delta` against the sign of its gradient. After
a flip no step is taken and the sign is forgotten, so the next step only compares against zero
(the "iRprop-" variant of Igel and Hüsken).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    as_concrete_number,
    check_non_negative,
    check_real,
    check_unit_interval,
    check_update_shapes,
    names_errors,
)
from fdl._paths import path_label
from fdl.optim.base import GradientTransformation, chain, scale
from fdl.tree import as_float, floats, full_like, zeros_like

__all__ = ["ScaleByRpropState", "scale_by_rprop", "rprop"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByRpropState(NamedTuple):
    r"""The step sizes :math:`\Delta_t` and the last signed step :math:`p_t` (zero after a sign
    flip), each shaped like the parameters."""

    step_sizes: PyTree
    prev_updates: PyTree


def _check_rprop_args(
    learning_rate: Any, eta_minus: Any, eta_plus: Any, min_step_size: Any, max_step_size: Any
) -> None:
    check_non_negative("learning_rate", learning_rate)
    check_unit_interval("eta_minus", eta_minus)
    check_real("eta_plus", eta_plus)
    plus = as_concrete_number(eta_plus)  # None for a traced value: accepted unchecked
    if plus is not None and not plus >= 1.0:
        raise ValueError(f"`eta_plus` must be >= 1 (it grows the step size), got {eta_plus!r}")
    check_non_negative("min_step_size", min_step_size)
    check_non_negative("max_step_size", max_step_size)
    low, high = as_concrete_number(min_step_size), as_concrete_number(max_step_size)
    if low is not None and high is not None and low > high:
        raise ValueError(
            f"`min_step_size` must be <= `max_step_size`, got {min_step_size!r} > {max_step_size!r}"
        )


def _check_real_updates(updates: PyTree) -> None:
    for path, g in jax.tree_util.tree_flatten_with_path(updates)[0]:
        if jnp.iscomplexobj(g):
            raise TypeError(
                f"scale_by_rprop: the update leaf {path_label(path)} is "
                f"{jnp.result_type(g).name}, but Rprop compares signs, which complex numbers do not "
                "have: pass real gradients (e.g. the real and imaginary parts as separate leaves)"
            )


@names_errors("scale_by_rprop")
def scale_by_rprop(
    learning_rate: Scalar,
    eta_minus: Scalar = 0.5,
    eta_plus: Scalar = 1.2,
    min_step_size: Scalar = 1e-6,
    max_step_size: Scalar = 50.0,
) -> GradientTransformation:
    r"""Rprop's per-weight step sizes, as optax 0.2.8 computes them (one step late, see below).

    With :math:`s_t = g_t\, p_{t-1}` (the sign of the product says whether the gradient kept its
    sign), elementwise:

    .. math::

        \Delta_t &= \begin{cases}
            \Delta_{t-1} & s_t = 0 \\
            \operatorname{clip}(\text{eta\_plus}\; \Delta_{t-1},\,
                \text{min\_step\_size},\, \text{max\_step\_size}) & s_t > 0 \\
            \operatorname{clip}(\text{eta\_minus}\; \Delta_{t-1},\,
                \text{min\_step\_size},\, \text{max\_step\_size}) & s_t < 0
        \end{cases} \\
        p_t &= \begin{cases} 0 & s_t < 0 \\ \Delta_t \operatorname{sign}(g_t) & \text{else}
            \end{cases} \qquad
        u_t = \begin{cases} 0 & s_t < 0 \\ p_{t-1} & \text{else} \end{cases}

    with :math:`\Delta_0 = \text{learning\_rate}` and :math:`p_0 = 0`. The state holds
    :math:`(\Delta_t, p_t)`; :func:`rprop` steps along :math:`-u_t`.

    The output :math:`u_t` is the *previous* step :math:`p_{t-1}`, not :math:`p_t`: every
    update lags one step behind and the first update is zero. This is optax 0.2.8's code (its
    own update rule is :math:`p_t`; optax pull request #1725 proposes to return it), kept here
    so that fdl's steps and states equal optax's.

    Args:
      learning_rate: the initial step size :math:`\Delta_0 \ge 0`.
      eta_minus: the factor applied to :math:`\Delta` when the gradient flips sign, in
        ``[0, 1]``.
      eta_plus: the factor applied when it keeps its sign, ``>= 1``.
      min_step_size: the smallest step size after a change, ``>= 0``.
      max_step_size: the largest, ``>= min_step_size``.

    Returns:
      A transformation with state :class:`ScaleByRpropState` ``(step_sizes, prev_updates)``.

    Raises:
      ValueError: a negative ``learning_rate``, ``min_step_size`` or ``max_step_size``;
        ``eta_minus`` outside ``[0, 1]``; ``eta_plus < 1``; ``min_step_size > max_step_size``.
      TypeError: (in ``update``) complex gradients, which have no sign to compare (optax fails
        there too, inside ``jnp.clip``).

    >>> import jax.numpy as jnp
    >>> opt = scale_by_rprop(learning_rate=0.1)
    >>> state = opt.init(jnp.zeros(1))
    >>> u1, state = opt.update(jnp.asarray([3.0]), state)  # s = 0: keep 0.1, u = p_0 = 0
    >>> u2, state = opt.update(jnp.asarray([2.0]), state)  # s > 0: 0.1 * 1.2, u = p_1
    >>> u1.tolist(), u2.tolist(), [round(x, 6) for x in state.prev_updates.tolist()]
    ([0.0], [0.10000000149011612], [0.12])

    References:
      Riedmiller and Braun, *A Direct Adaptive Method for Faster Backpropagation Learning:
      The RPROP Algorithm*, ICNN 1993.
      Igel and Hüsken, *Empirical Evaluation of the Improved Rprop Learning Algorithms*,
      Neurocomputing 50, 2003.

    Differs from optax:
      Integer parameters get float step sizes (optax's would be integers, truncating
      ``learning_rate``); the state keeps its dtypes and the updates the gradients' dtype.
      The hyperparameters are checked (optax accepts ``eta_plus < 1`` or
      ``min_step_size > max_step_size``).

    Differs from PyTorch:
      ``torch.optim.Rprop`` (lr, etas, step_sizes) remembers the gradient
      :math:`\tilde g` instead of the step, clips on every step, and steps at once:

      .. math::

          s_t &= g_t\, \tilde g_{t-1}, \qquad
          \Delta_t = \operatorname{clip}(\eta_t\, \Delta_{t-1},\, \text{min},\, \text{max}),
          \quad \eta_t = \begin{cases} \text{etaplus} & s_t > 0 \\
              \text{etaminus} & s_t < 0 \\ 1 & s_t = 0 \end{cases} \\
          \tilde g_t &= \begin{cases} 0 & s_t < 0 \\ g_t & \text{else} \end{cases} \qquad
          \theta_t = \theta_{t-1} - \Delta_t \operatorname{sign}(\tilde g_t)

      The step sizes and signs agree (:math:`s_t` has the sign of :math:`g_t \tilde g_{t-1}`
      when :math:`\Delta > 0`), but PyTorch's step at :math:`t` is :math:`-p_t`, where this
      (and optax 0.2.8) takes :math:`-u_t`: :math:`-p_{t-1}`, or 0 when the gradient flips at
      :math:`t`. So the first step here is zero, each later one is PyTorch's previous step,
      and a step PyTorch took just before a flip is never taken here. PyTorch also clips
      :math:`\Delta` when :math:`s_t = 0`, so an initial ``lr`` outside ``step_sizes`` is
      clipped at its first step; here it is kept until the gradient's sign is first compared.
    """
    _check_rprop_args(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)

    def init(params: PyTree) -> ScaleByRpropState:
        return ScaleByRpropState(step_sizes=full_like(params, learning_rate), prev_updates=zeros_like(params))

    def one(g, step, prev):
        g = as_float(g)
        # the sign comparison, in the promoted dtype of gradient and previous step (as optax)
        both = _dtypes.result_type(g, prev)
        product = g.astype(both) * prev.astype(both)
        dtype = step.dtype
        factor = jnp.where(product > 0, jnp.asarray(eta_plus, dtype), jnp.asarray(eta_minus, dtype))
        changed = jnp.clip(
            step * factor, min=jnp.asarray(min_step_size, dtype), max=jnp.asarray(max_step_size, dtype)
        )
        new_step = jnp.where(product == 0, step, changed)
        flipped = product < 0
        common = _dtypes.result_type(new_step, g)
        signed = new_step.astype(common) * jnp.sign(g).astype(common)
        new_prev = jnp.where(flipped, jnp.zeros_like(signed), signed).astype(prev.dtype)
        update = jnp.where(flipped, jnp.zeros_like(prev), prev).astype(g.dtype)
        return update, new_step, new_prev

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_rprop", updates, params, "step_sizes", state.step_sizes)
        _check_real_updates(updates)
        del params, extra_args
        out = jax.tree.map(one, updates, state.step_sizes, state.prev_updates)
        # three trees from the tree of triples (an empty tree gives three empty ones, as optax)
        treedef = jax.tree.structure(updates)
        triples = treedef.flatten_up_to(out)
        new_updates, step_sizes, prev_updates = (treedef.unflatten([t[i] for t in triples]) for i in range(3))
        return new_updates, ScaleByRpropState(step_sizes=step_sizes, prev_updates=prev_updates)

    return GradientTransformation(init, update)


@names_errors("rprop")
def rprop(
    learning_rate: Scalar,
    eta_minus: Scalar = 0.5,
    eta_plus: Scalar = 1.2,
    min_step_size: Scalar = 1e-6,
    max_step_size: Scalar = 50.0,
) -> GradientTransformation:
    r"""Rprop: ``chain(scale_by_rprop(...), scale(-1.0))``, as optax composes it.

    The step is :math:`-u_t` of :func:`scale_by_rprop` (which holds the step sizes, so there
    is no separate learning-rate scaling): each weight moves by its own step size against the
    sign of its gradient, one call late (optax 0.2.8's behaviour; see :func:`scale_by_rprop`,
    which also lists the differences from ``torch.optim.Rprop``).

    Args:
      learning_rate, eta_minus, eta_plus, min_step_size, max_step_size: as in
        :func:`scale_by_rprop`.

    Returns:
      The optimizer (state ``(ScaleByRpropState, EmptyState)``).

    Raises:
      ValueError: an invalid :func:`scale_by_rprop` argument.

    >>> import jax.numpy as jnp
    >>> opt = rprop(learning_rate=0.1)
    >>> state = opt.init(jnp.zeros(2))
    >>> for g in ([1.0, 1.0], [1.0, -1.0], [1.0, 1.0]):
    ...     u, state = opt.update(jnp.asarray(g), state)
    >>> [round(x, 6) for x in u.tolist()]  # the step of call 2: -0.12; none after the flip
    [-0.12, -0.0]

    References:
      Riedmiller and Braun, *A Direct Adaptive Method for Faster Backpropagation Learning:
      The RPROP Algorithm*, ICNN 1993.
    """
    return chain(
        scale_by_rprop(
            learning_rate=learning_rate,
            eta_minus=eta_minus,
            eta_plus=eta_plus,
            min_step_size=min_step_size,
            max_step_size=max_step_size,
        ),
        scale(-1.0),
    )
