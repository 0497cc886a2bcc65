r"""Layouts: run a transformation on the parameters concatenated into one vector.

A model with many small leaves (biases, scales, scalars) makes an optimizer launch many small
kernels per step. :func:`flatten` hands its inner transformation one vector instead,

.. math:: \operatorname{vec}(g) = [\operatorname{ravel}(g_1); \ldots; \operatorname{ravel}(g_L)]
          \in \mathbb{R}^{N}, \qquad N = \textstyle\sum_\ell |g_\ell| ,

and cuts the inner update back into the leaves' shapes. An element-wise transformation (Adam,
RMSProp, momentum, clipping by value) gives the same updates either way; one that looks at a
whole leaf (a per-leaf norm, a trust ratio) sees one leaf, the whole model, instead.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_same_shapes, names_errors
from fdl.optim.base import GradientTransformation, with_extra_args_support
from fdl.tree import floats

__all__ = ["flatten"]

PyTree = Any


def _vector(tree: PyTree) -> jax.Array:
    """Every leaf raveled and concatenated, in leaf order, in their promoted dtype; shape (N,)."""
    leaves = [jnp.asarray(leaf) for leaf in jax.tree.leaves(tree)]
    if not leaves:
        return jnp.zeros((0,), _dtypes.default_float())
    dtype = _dtypes.result_type(*leaves)
    return jnp.concatenate([jnp.ravel(leaf).astype(dtype) for leaf in leaves])  # (N,)


def _unvector(vector: jax.Array, like: PyTree) -> PyTree:
    """``vector`` (N,) cut back into the leaves of ``like``: their shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(like)
    pieces, start = [], 0
    for leaf in leaves:
        size = leaf.size
        pieces.append(vector[start : start + size].reshape(leaf.shape).astype(leaf.dtype))
        start += size
    return jax.tree.unflatten(treedef, pieces)


@names_errors("flatten")
def flatten(inner: GradientTransformation) -> GradientTransformation:
    r"""Run ``inner`` on the updates and parameters concatenated into one vector.

    .. math:: u = \operatorname{vec}^{-1}\big(T(\operatorname{vec}(g), \operatorname{vec}(\theta))\big)

    Leaves are concatenated in ``jax.tree.leaves`` order (``None`` leaves skipped) in their
    promoted dtype; each leaf of the result has its update's shape and dtype. ``inner``'s
    state is the state of one vector of :math:`N` elements.

    Args:
      inner: the transformation :math:`T` to run on the vector (fdl's or optax's).

    Returns:
      A transformation whose state is ``inner``'s state for the vector.

    Raises:
      TypeError: ``inner`` without ``init`` and ``update``.
      ValueError: at ``update``, updates whose structure or shapes differ from the
        parameters' (the message names the leaf).

    >>> import jax.numpy as jnp
    >>> from fdl.optim import adam
    >>> opt = flatten(adam(0.1))
    >>> params = {"b": jnp.zeros(2), "w": jnp.zeros((2, 2))}
    >>> state = opt.init(params)
    >>> state[0].mu.shape  # one vector of 2 + 4 elements
    (6,)
    >>> updates, state = opt.update({"b": jnp.ones(2), "w": -jnp.ones((2, 2))}, state, params)
    >>> updates["w"].shape, [round(x, 4) for x in updates["b"].tolist()]
    ((2, 2), [-0.1, -0.1])

    Differs from optax:
      Leaves of different dtypes are concatenated in their promoted dtype and each update is
      cast back to its leaf's dtype (optax concatenates under JAX's promotion and returns the
      promoted dtype); a tree without leaves is an empty vector (optax fails to concatenate).
    """
    if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
        raise TypeError(
            "`inner` must be a gradient transformation with init and update "
            f"(e.g. fdl.optim.adam(1e-3) or optax.adam(1e-3)), got {inner!r}"
        )
    inner = with_extra_args_support(inner)

    def init(params: PyTree) -> Any:
        return inner.init(_vector(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        if params is not None:
            check_same_shapes("flatten", "`updates`", updates, "`params`", params)
            params = _vector(params)
        flat_updates, state = inner.update(_vector(updates), state, params, **extra_args)
        return _unvector(flat_updates, updates), state

    return GradientTransformation(init, update)
