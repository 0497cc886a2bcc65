r"""Weight decay, and applying a transformation to part of the parameters.

*Weight decay* pulls every weight toward zero by a fixed fraction per step. Added to the
gradient before an adaptive rescaling, it is the same as an L2 penalty
:math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2` and gets rescaled with the gradient (Adam
with L2). Added to the update *after* the rescaling, it is *decoupled* from it (Loshchilov and
Hutter's AdamW): every weight shrinks at the same rate :math:`\eta\lambda`, however large its
gradient history:

.. math::

    u_t = \operatorname{rescale}(g)_t + \lambda\, \theta_t, \qquad
    \theta_{t+1} = \theta_t - \eta\, u_t .

Biases and normalisation scales are usually left alone, which :func:`masked` expresses: it
applies a transformation only to the leaves a boolean mask selects and passes the others
through untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fdl import _dtypes
from fdl._checks import check_learning_rate, check_same_shapes, names_errors
from fdl._paths import path_label
from fdl.optim.base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    ScaleByScheduleState,
    none_where,
    safe_increment,
    with_extra_args_support,
)
from fdl.tree import floats

__all__ = ["MaskedState", "MaskedNode", "masked", "add_decayed_weights", "AddDecayedWeightsState"]

PyTree = Any
Mask = PyTree | Callable[[PyTree], PyTree]


class MaskedState(NamedTuple):
    """The state of the wrapped transformation, for the selected leaves only."""

    inner_state: Any


class MaskedNode(NamedTuple):
    """Stands in for a leaf that a mask leaves out: a node with no leaves.

    ``jax.tree.map`` and every transformation skip it, so the inner transformation of
    :func:`masked` neither sees nor stores anything for the leaves it does not own.
    """


def _is_mask_function(mask: Mask) -> bool:
    """Whether ``mask`` is a function of the parameters rather than a mask tree: every leaf of
    it is callable. A plain function is its own single leaf; a callable *pytree* (an
    Equinox-style module whose leaves are bools) is a mask tree, as in optax."""
    callable_leaves = [callable(leaf) for leaf in jax.tree.leaves(mask)]
    return bool(callable_leaves) and all(callable_leaves)


def _is_placeholder(params: PyTree) -> bool:
    """Whether ``init`` is being called by ``optax.tree.map_params``, which passes one
    placeholder object in place of the whole parameter tree to find where the state copies it."""
    module = getattr(optax.tree_utils, "_state_utils", None)
    placeholder = getattr(module, "_ParamsPlaceholder", None)
    return placeholder is not None and isinstance(params, placeholder)


def _mask_tree(mask: Mask, tree: PyTree) -> PyTree:
    """The boolean mask for ``tree``: ``mask`` itself, or ``mask(tree)`` for a function."""
    mask_tree = mask(tree) if _is_mask_function(mask) else mask
    for path, leaf in jax.tree_util.tree_leaves_with_path(mask_tree):
        if not isinstance(leaf, bool | np.bool_):
            raise TypeError(
                f"masked: mask leaf {path_label(path)} must be a Python "
                f"bool (the mask is static configuration, not traced data), got {leaf!r}"
            )
    return mask_tree


def _select(mask_tree: PyTree, tree: PyTree) -> PyTree:
    """``tree`` with every subtree whose mask is False replaced by a :class:`MaskedNode`."""
    try:
        return jax.tree.map(lambda m, x: x if m else MaskedNode(), mask_tree, tree)
    except ValueError as error:
        raise ValueError(
            "masked: the mask must have the structure of the parameters (or a prefix of it); "
            f"mask: {jax.tree.structure(mask_tree)}, parameters: {jax.tree.structure(tree)}"
        ) from error


AddDecayedWeightsState = EmptyState
"""The state of :func:`add_decayed_weights` with a constant decay (no leaves), as optax names it."""


def masked(
    inner: GradientTransformation,
    mask: Mask,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    r"""Apply ``inner`` only where ``mask`` is True; pass the other updates through.

    .. math::

        u_i = \begin{cases}
            \operatorname{inner}(g)_i & \text{mask}_i = \text{True} \\
            g_i & \text{mask}_i = \text{False}
        \end{cases}

    ``inner`` sees (and keeps state for) the selected leaves only; the others are replaced by
    :class:`MaskedNode` in what it receives, so its state has no leaves for them.

    Args:
      inner: the transformation to restrict.
      mask: a pytree of Python bools with the parameters' structure (or a prefix of it: a bool
        at a subtree covers the whole subtree), or a function ``params -> such a pytree``,
        called on the parameters in ``init`` and on the updates in ``update``. A callable
        pytree (an Equinox-style module of bools) is a mask tree, not a function: only a mask
        whose every leaf is callable is called.
      mask_compatible_extra_args: also mask every extra keyword argument of ``update`` whose
        tree structure equals the updates'.

    Returns:
      A transformation with state :class:`MaskedState` ``(inner_state,)``.

    Raises:
      TypeError: a mask leaf that is not a Python bool (masks are static).
      ValueError: a mask whose structure is not a prefix of the parameters'.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import scale
    >>> opt = masked(scale(10.0), {"w": True, "b": False})
    >>> grads = {"w": jnp.ones(1), "b": jnp.ones(1)}
    >>> updates, _ = opt.update(grads, opt.init(grads))
    >>> {k: v.tolist() for k, v in updates.items()}
    {'b': [1.0], 'w': [10.0]}

    Differs from optax:
      optax accepts any truthy leaf; fdl asks for Python bools, so that an array mask (which
      would fail under ``jit`` with an obscure message) is rejected up front.
    """

    inner = with_extra_args_support(inner)  # optax's plain transformations too

    def init(params: PyTree) -> MaskedState:
        if _is_placeholder(params):  # optax.tree.map_params: the placeholder goes in unmasked
            return MaskedState(inner_state=inner.init(params))
        return MaskedState(inner_state=inner.init(_select(_mask_tree(mask, params), params)))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer updates, masked out or not, come back as floats
        mask_tree = _mask_tree(mask, updates)
        if mask_compatible_extra_args:
            structure = jax.tree.structure(updates)
            extra_args = {
                name: _select(mask_tree, value) if jax.tree.structure(value) == structure else value
                for name, value in extra_args.items()
            }
        chosen_params = None if params is None else _select(mask_tree, params)
        new_chosen, inner_state = inner.update(
            _select(mask_tree, updates), state.inner_state, chosen_params, **extra_args
        )
        updates = jax.tree.map(lambda m, new, old: new if m else old, mask_tree, new_chosen, updates)
        return updates, MaskedState(inner_state=inner_state)

    return GradientTransformation(init, update)


@names_errors("add_decayed_weights")
def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""Decoupled weight decay: add the parameters, scaled, to the updates.

    .. math:: u_t = g_t + \lambda_t\, \theta_t

    where :math:`\lambda_t` is ``weight_decay`` (a constant, or a schedule evaluated at the
    step count :math:`t = 0, 1, \ldots`). Placed after an adaptive rescaling and before
    :func:`~fdl.optim.base.scale_by_learning_rate`, the step becomes
    :math:`-\eta(\hat u_t + \lambda\theta_t)`: AdamW's decoupled decay.

    Args:
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule. A constant 0 skips the
        addition entirely.
      mask: which leaves to decay (see :func:`masked`); ``None`` decays all.

    Returns:
      A transformation with state :class:`~fdl.optim.base.EmptyState` (constant decay) or
      :class:`~fdl.optim.base.ScaleByScheduleState` ``(count,)`` (scheduled decay), wrapped in
      :class:`MaskedState` when ``mask`` is given.

    Raises:
      ValueError: a negative ``weight_decay``; ``update`` called without ``params``.

    >>> import jax.numpy as jnp
    >>> opt = add_decayed_weights(0.1)
    >>> params = {"w": jnp.asarray([2.0])}
    >>> updates, _ = opt.update({"w": jnp.asarray([1.0])}, opt.init(params), params)
    >>> updates["w"].tolist()  # 1 + 0.1 * 2
    [1.2000000476837158]

    References:
      Loshchilov and Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.

    Differs from optax:
      The result keeps the gradients' dtype. optax promotes it when the decay is a float32
      schedule value and the parameters are bfloat16 (its updates then become float32).

    Differs from PyTorch:
      ``torch.optim.AdamW`` shrinks the parameters first, :math:`\theta \leftarrow
      \theta(1 - \eta\lambda)`, then takes the Adam step from the shrunk value; here the decay
      is part of the update, :math:`\theta - \eta(\hat u + \lambda\theta)`. The two are equal in
      exact arithmetic and round differently. ``torch.optim.SGD``/``Adam``'s ``weight_decay``
      is coupled L2 (added to the gradient before the rescaling): put this transformation
      *first* in the chain to get that.
    """
    check_learning_rate("weight_decay", weight_decay)
    scheduled = callable(weight_decay)

    def init(params: PyTree) -> EmptyState | ScaleByScheduleState:
        del params
        if scheduled:
            return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "add_decayed_weights needs the parameters: call `update(updates, state, params)`"
            )
        updates, params = floats(updates), floats(params)  # integer parameters decay as floats
        seen = none_where(updates, params)  # a None update (leaf or whole tree) stays None
        check_same_shapes("add_decayed_weights", "`updates`", updates, "`params`", seen)
        if scheduled:
            rate = weight_decay(state.count)
            state = ScaleByScheduleState(count=safe_increment(state.count))
        elif isinstance(weight_decay, int | float) and weight_decay == 0:
            return updates, state
        else:
            rate = weight_decay

        def decay(g, p):
            if g is None:
                return None
            # JAX's standard promotion, written out (a Python number takes the parameter's
            # dtype, a float32 schedule value promotes it), then back to the gradient's dtype.
            rate_dtype = _dtypes.result_type(rate, p)
            shrink = jnp.asarray(rate, rate_dtype) * p.astype(rate_dtype)
            dtype = _dtypes.result_type(g, shrink)
            return (g.astype(dtype) + shrink.astype(dtype)).astype(g.dtype)

        return jax.tree.map(decay, updates, seen, is_leaf=lambda x: x is None), state

    transformation = GradientTransformation(init, update)
    return transformation if mask is None else masked(transformation, mask)
