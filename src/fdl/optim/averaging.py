r"""Slow copies of the parameters: Polyak averaging and periodic target updates.

Two ways to keep a second, slower copy :math:`\bar\theta` of parameters :math:`\theta` that
an optimizer moves, as functions of trees (call them in the training step, after
:func:`fdl.optim.apply_updates`):

* :func:`incremental_update`, an exponential moving average of the parameters (Polyak
  averaging; the "target network" of BYOL, or of soft-updated DQN/SAC),
  :math:`\bar\theta \leftarrow \tau\,\theta + (1 - \tau)\,\bar\theta`, evaluated for its
  smoother path;
* :func:`periodic_update`, a copy refreshed every :math:`K` steps and frozen in between (the
  target network of DQN).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_concrete_number, check_real, check_unit_interval, names_errors
from fdl._paths import quoted_path_label
from fdl.optim.base import none_where

__all__ = ["incremental_update", "periodic_update"]

PyTree = Any
Scalar = float | jax.Array


def _is_none(x: Any) -> bool:
    return x is None


def _check_matching(new_tensors: PyTree, old_tensors: PyTree, *, dtypes: bool) -> None:
    """Raise a ``ValueError`` unless ``old_tensors`` has the structure and shapes (and, with
    ``dtypes``, the dtypes) of ``new_tensors``, naming the leaf that differs."""
    new_leaves, new_structure = jax.tree_util.tree_flatten_with_path(new_tensors, is_leaf=_is_none)
    old_leaves, old_structure = jax.tree_util.tree_flatten_with_path(old_tensors, is_leaf=_is_none)

    if new_structure != old_structure:  # type: ignore[operator]  # jax's PyTreeDef alias is untyped
        new_paths = [quoted_path_label(path) for path, _ in new_leaves]
        old_paths = [quoted_path_label(path) for path, _ in old_leaves]
        raise ValueError(
            "`old_tensors` must have the tree structure of `new_tensors`; leaves of `new_tensors`: "
            f"{', '.join(new_paths) or 'none'}; of `old_tensors`: {', '.join(old_paths) or 'none'}"
        )
    for (path, new), (_, old) in zip(new_leaves, old_leaves, strict=True):
        if new is None or old is None:
            continue
        if jnp.shape(new) != jnp.shape(old):
            raise ValueError(
                f"`old_tensors` leaf {quoted_path_label(path)} has shape {jnp.shape(old)}, but its `new_tensors` leaf "
                f"has shape {jnp.shape(new)} (the two trees must match leaf for leaf)"
            )
        if dtypes and jnp.result_type(new) != jnp.result_type(old):
            raise ValueError(
                f"`old_tensors` leaf {quoted_path_label(path)} is {jnp.result_type(old)}, but its `new_tensors` leaf is "
                f"{jnp.result_type(new)} (the result is one tree or the other: their dtypes must agree)"
            )


@names_errors("incremental_update")
def incremental_update(new_tensors: PyTree, old_tensors: PyTree, step_size: Scalar) -> PyTree:
    r"""One step of the moving average of parameters (Polyak averaging).

    .. math:: \bar\theta' = \tau\, \theta + (1 - \tau)\, \bar\theta

    with :math:`\theta` = ``new_tensors``, :math:`\bar\theta` = ``old_tensors``, :math:`\tau` =
    ``step_size``. Each leaf is computed in the promoted dtype of its two tensors; a ``None``
    leaf of ``new_tensors`` stays ``None``.

    Args:
      new_tensors: the latest parameters :math:`\theta`.
      old_tensors: the average so far :math:`\bar\theta`, of the same structure and shapes.
      step_size: :math:`\tau \in [0, 1]` (1 copies, 0 keeps the average).

    Returns:
      The new average, of the structure of ``new_tensors``.

    Raises:
      TypeError: a non-numeric ``step_size``.
      ValueError: ``step_size`` outside ``[0, 1]``; trees whose structures or shapes differ
        (the message names the leaf).

    >>> import jax.numpy as jnp
    >>> incremental_update({"w": jnp.asarray([4.0])}, {"w": jnp.asarray([0.0])}, 0.25)["w"].tolist()
    [1.0]

    References:
      Polyak and Juditsky, `Acceleration of stochastic approximation by averaging
      <https://epubs.siam.org/doi/10.1137/0330046>`_, 1992.

    Differs from optax:
      ``step_size`` outside ``[0, 1]`` and mismatched trees are refused. An array
      ``step_size`` is cast to the tensors' dtype (optax would promote bfloat16 tensors to the
      step size's float32).
    """
    check_unit_interval("step_size", step_size)
    _check_matching(new_tensors, none_where(new_tensors, old_tensors), dtypes=False)

    def average(new, old):
        if new is None:
            return None
        new, old = jnp.asarray(new), jnp.asarray(old)
        dtype = _dtypes.result_type(new, old)
        tau = jnp.asarray(step_size, dtype)
        keep = jnp.asarray(1.0 - step_size, dtype)
        return tau * new.astype(dtype) + keep * old.astype(dtype)

    return jax.tree.map(average, new_tensors, old_tensors, is_leaf=_is_none)


@names_errors("periodic_update")
def periodic_update(
    new_tensors: PyTree, old_tensors: PyTree, steps: int | jax.Array, update_period: int | jax.Array
) -> PyTree:
    r"""A copy of the parameters refreshed every ``update_period`` steps.

    .. math:: \bar\theta' = \begin{cases} \theta & \text{steps} \bmod K = 0 \\
              \bar\theta & \text{otherwise} \end{cases}

    Args:
      new_tensors: the latest parameters :math:`\theta`.
      old_tensors: the copy :math:`\bar\theta`, of the same structure, shapes and dtypes.
      steps: the number of steps taken (an int or an int32 array, traced or not).
      update_period: :math:`K`, a whole number >= 1.

    Returns:
      ``new_tensors`` on a multiple of ``update_period``, else ``old_tensors``.

    Raises:
      TypeError: a non-numeric ``steps`` or ``update_period``.
      ValueError: ``update_period`` not a whole number >= 1; trees whose structures, shapes
        or dtypes differ (the message names the leaf).

    >>> import jax.numpy as jnp
    >>> new, old = jnp.asarray([1.0]), jnp.asarray([0.0])
    >>> periodic_update(new, old, 6, 3).tolist(), periodic_update(new, old, 7, 3).tolist()
    ([1.0], [0.0])

    References:
      Mnih et al., `Human-level control through deep reinforcement learning
      <https://doi.org/10.1038/nature14236>`_, 2015. Grill et al., `Bootstrap your own latent
      <https://arxiv.org/abs/2006.07733>`_, 2020.
    """
    check_real("steps", steps)
    check_real("update_period", update_period)
    period = as_concrete_number(update_period)
    if period is not None and (period < 1 or period != int(period)):
        raise ValueError(
            f"`update_period` must be a whole number >= 1 (steps between two copies), got {update_period!r}"
        )
    _check_matching(new_tensors, old_tensors, dtypes=True)
    count = jnp.asarray(steps)
    due = jnp.mod(count, jnp.asarray(update_period).astype(count.dtype)) == 0
    return jax.lax.cond(due, lambda: new_tensors, lambda: old_tensors)
