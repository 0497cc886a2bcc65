r"""Transformations without state, from a plain function of the updates.

Many transformations need no memory between steps (scaling, clipping, masking, adding noise
from the parameters): :math:`u = f(g, \theta)`. :func:`stateless` turns such a function of whole
trees into a transformation; :func:`stateless_with_tree_map` does the same from a function of
one leaf, applied to every leaf. Their state is ``EmptyState()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from fdl._checks import names_errors
from fdl.optim.base import EmptyState, GradientTransformation, init_empty_state

__all__ = ["stateless", "stateless_with_tree_map"]

PyTree = Any
UpdateFunction = Callable[[PyTree, PyTree | None], PyTree]
"""``f(updates, params) -> updates`` on whole trees; ``params`` may be ``None``."""
LeafUpdateFunction = Callable[[jax.Array, jax.Array | None], jax.Array]
"""``f(update, param) -> update`` on one leaf; ``param`` may be ``None``."""


def _check_function(f: Any, signature: str, example: str) -> None:
    if not callable(f):
        raise TypeError(f"`f` must be a function {signature} (e.g. {example}), got {f!r}")


@names_errors("stateless")
def stateless(f: UpdateFunction) -> GradientTransformation:
    r"""A transformation without state that computes :math:`u = f(g, \theta)` on whole trees.

    Args:
      f: ``f(updates, params) -> updates``; ``params`` is ``None`` when ``update`` is called
        without parameters.

    Returns:
      A transformation with state ``EmptyState()``.

    Raises:
      TypeError: ``f`` not callable.

    >>> import jax, jax.numpy as jnp
    >>> halve = stateless(lambda g, params: jax.tree.map(lambda x: x / 2, g))
    >>> halve.update({"w": jnp.asarray([4.0])}, halve.init(None))[0]["w"].tolist()
    [2.0]
    """
    _check_function(f, "(updates, params) -> updates", "lambda g, params: g")

    def update(updates, state, params=None, **extra_args):
        del state, extra_args
        return f(updates, params), EmptyState()

    return GradientTransformation(init_empty_state, update)


@names_errors("stateless_with_tree_map")
def stateless_with_tree_map(f: LeafUpdateFunction) -> GradientTransformation:
    r"""A transformation without state that computes :math:`u_\ell = f(g_\ell, \theta_\ell)` leaf
    by leaf.

    Args:
      f: ``f(update, param) -> update`` for one leaf; ``param`` is ``None`` when ``update``
        is called without parameters.

    Returns:
      A transformation with state ``EmptyState()``.

    Raises:
      TypeError: ``f`` not callable.

    >>> import jax.numpy as jnp
    >>> decay = stateless_with_tree_map(lambda g, p: g + 0.5 * p)  # an L2 term
    >>> w = {"w": jnp.asarray([2.0])}
    >>> decay.update({"w": jnp.asarray([1.0])}, decay.init(w), w)[0]["w"].tolist()
    [2.0]
    """
    _check_function(f, "(update, param) -> update of one leaf", "lambda g, p: g + 1e-4 * p")

    def update(updates, state, params=None, **extra_args):
        del state, extra_args
        if params is None:
            return jax.tree.map(lambda g: f(g, None), updates), EmptyState()
        return jax.tree.map(f, updates, params), EmptyState()

    return GradientTransformation(init_empty_state, update)
