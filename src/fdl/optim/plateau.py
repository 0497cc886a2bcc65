r"""Reduce the learning rate when the loss stops improving (a "plateau").

A transformation that multiplies the updates by a scale :math:`s`, and multiplies :math:`s`
by ``factor`` whenever the monitored loss (passed to ``update`` as ``value=``) has not
improved on its best value for ``patience`` checks in a row; a check is made every
``accumulation_size`` calls, on the mean of the values seen since the last one. Chain it
after an optimizer: ``chain(adam(1e-3), reduce_on_plateau())``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_non_negative, check_real, names_errors
from fdl._checks.hyper import as_concrete_number
from fdl.optim.base import GradientTransformation, safe_increment

__all__ = ["ReduceLROnPlateauState", "reduce_on_plateau"]

PyTree = Any
Scalar = float | jax.Array


class ReduceLROnPlateauState(NamedTuple):
    """The state of :func:`reduce_on_plateau`, with optax's field names and order."""

    scale: jax.Array
    """The scale :math:`s` of the updates (the parameters' lowest dtype), starting at 1."""
    best_value: jax.Array
    """The best mean value so far (the parameters' highest dtype), starting at infinity."""
    plateau_count: jax.Array
    """The checks (int32) since the best value last improved."""
    cooldown_count: jax.Array
    """The checks (int32) left before plateaus are counted again."""
    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    """The values (int32) accumulated since the last check."""
    avg_value: jax.Array
    """The mean of those values."""


def _extreme_dtype(params: PyTree, highest: bool) -> jnp.dtype:
    """The highest (or lowest) dtype of the leaves on JAX's promotion lattice, as optax's
    ``tree.dtype(params, 'highest' / 'lowest')``."""
    dtypes = [jnp.result_type(leaf) for leaf in jax.tree.leaves(params)]
    if not dtypes:
        return _dtypes.default_float()

    def pick(a: jnp.dtype, b: jnp.dtype) -> jnp.dtype:
        a_is_higher = _dtypes.promote_types(a, b) == a
        return (a if a_is_higher else b) if highest else (b if a_is_higher else a)

    return functools.reduce(pick, dtypes)


def _equal(count: jax.Array, target: Any) -> jax.Array:
    """``count == target`` in the two's promoted dtype (``target`` may be a float)."""
    dtype = _dtypes.result_type(count, target)
    return count.astype(dtype) == jnp.asarray(target).astype(dtype)


@names_errors("reduce_on_plateau")
def reduce_on_plateau(
    factor: float = 0.1,
    patience: Scalar = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: Scalar = 0,
    accumulation_size: Scalar = 1,
    min_scale: Scalar = 0.0,
) -> GradientTransformation:
    r"""Scale the updates by :math:`s`, reduced by ``factor`` after ``patience`` checks
    without improvement.

    Every ``accumulation_size`` calls, with :math:`\bar v` the mean of the ``value``\ s
    passed since the last check and :math:`v^*` the best so far:

    .. math::

        \text{improved} &= \bar v < (1 - \text{rtol})\, v^* - \text{atol}
            \quad (\text{then } v^* \leftarrow \bar v,\ p \leftarrow 0,
            \text{ else } p \leftarrow p + 1) \\
        s &\leftarrow \max(\text{factor}\; s,\ \text{min\_scale})
            \quad\text{when } p = \text{patience}
            \ (\text{then } p \leftarrow 0,\ \text{cooldown starts})

    During the ``cooldown`` checks that follow a reduction, :math:`p` stays 0 and :math:`s`
    is not reduced. Each call returns :math:`u = s\, g`.

    Args:
      factor: the reduction, in ``(0, 1)``.
      patience: the checks without improvement before a reduction, ``>= 0``.
      rtol: relative improvement needed, in ``[0, 1]``.
      atol: absolute improvement needed, ``>= 0`` (``rtol`` and ``atol`` not both 0).
      cooldown: the checks after a reduction during which plateaus are not counted.
      accumulation_size: the calls whose values are averaged for one check, ``>= 1``.
      min_scale: the floor of :math:`s`, ``>= 0``.

    Returns:
      A transformation with state :class:`ReduceLROnPlateauState`. ``update`` takes the
      monitored loss as the keyword argument ``value``.

    Raises:
      ValueError: ``factor`` outside ``(0, 1)``, negative or both-zero ``rtol``/``atol``,
        ``rtol > 1``, a negative ``patience``, ``cooldown`` or ``min_scale``, an
        ``accumulation_size`` below 1; ``update`` called without ``value``.

    >>> import jax.numpy as jnp
    >>> opt = reduce_on_plateau(factor=0.5, patience=1)
    >>> state = opt.init(jnp.zeros(1))
    >>> for loss in (1.0, 1.0):  # the second check does not improve: s = 0.5
    ...     u, state = opt.update(jnp.ones(1), state, value=loss)
    >>> u.tolist(), float(state.scale)
    ([0.5], 0.5)

    Differs from optax:
      The updates keep the gradients' dtype (optax multiplies them by :math:`s` in the
      parameters' lowest dtype, so bfloat16 gradients of float32 parameters come back as
      float32 there).
    """
    check_real("factor", factor)
    for name, value in (("rtol", rtol), ("atol", atol)):
        check_real(name, value)
    number = as_concrete_number(factor)
    if number is not None and not 0.0 < number < 1.0:
        raise ValueError(f"`factor` must be in (0, 1) (the scale is multiplied by it), got {factor!r}")
    check_non_negative("rtol", rtol)
    check_non_negative("atol", atol)
    rtol_, atol_ = as_concrete_number(rtol), as_concrete_number(atol)
    if rtol_ == 0.0 and atol_ == 0.0:
        raise ValueError(
            f"`rtol` and `atol` must not both be 0 (no loss would count as an improvement), got {rtol!r} and {atol!r}"
        )
    if rtol_ is not None and rtol_ > 1.0:
        raise ValueError(f"`rtol` must be at most 1, got {rtol!r}")
    check_non_negative("patience", patience)
    check_non_negative("cooldown", cooldown)
    check_real("accumulation_size", accumulation_size)
    size = as_concrete_number(accumulation_size)
    if size is not None and not size >= 1:
        raise ValueError(f"`accumulation_size` must be >= 1 (values per check), got {accumulation_size!r}")
    check_non_negative("min_scale", min_scale)

    def init(params: PyTree) -> ReduceLROnPlateauState:
        high = _extreme_dtype(params, highest=True)
        return ReduceLROnPlateauState(
            scale=jnp.ones([], _extreme_dtype(params, highest=False)),
            best_value=jnp.full([], jnp.inf, high),
            plateau_count=jnp.zeros([], jnp.int32),
            cooldown_count=jnp.zeros([], jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], high),
        )

    def check(state: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        mean = state.avg_value
        improved = mean < (1 - rtol) * state.best_value - atol
        best = jnp.where(improved, mean.astype(state.best_value.dtype), state.best_value)
        plateau = jnp.where(improved, jnp.zeros([], jnp.int32), safe_increment(state.plateau_count))

        def cooling() -> tuple[jax.Array, jax.Array, jax.Array]:
            return jnp.zeros([], jnp.int32), state.scale, state.cooldown_count - 1

        def counting() -> tuple[jax.Array, jax.Array, jax.Array]:
            reduce = _equal(plateau, patience)
            reduced = jnp.where(reduce, state.scale * jnp.asarray(factor, state.scale.dtype), state.scale)
            scale = jnp.maximum(reduced, jnp.asarray(min_scale, state.scale.dtype))
            wait = jnp.where(reduce, jnp.asarray(cooldown).astype(jnp.int32), jnp.zeros([], jnp.int32))
            return jnp.where(reduce, jnp.zeros([], jnp.int32), plateau), scale, wait

        new_plateau, scale, wait = jax.lax.cond(state.cooldown_count > 0, cooling, counting)
        return ReduceLROnPlateauState(
            scale=scale,
            best_value=best,
            plateau_count=new_plateau,
            cooldown_count=wait,
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], mean.dtype),
        )

    def update(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        if value is None:
            raise ValueError(
                "reduce_on_plateau needs the monitored loss: call `update(updates, state, params, value=loss)`"
            )
        dtype = state.avg_value.dtype
        count = safe_increment(state.count)
        total = state.count.astype(dtype) * state.avg_value + jnp.asarray(value).astype(dtype)
        state = state._replace(avg_value=(total / count.astype(dtype)).astype(dtype), count=count)
        state = jax.lax.cond(_equal(count, accumulation_size), check, lambda s: s, state)
        scaled = jax.tree.map(lambda g: state.scale.astype(jnp.result_type(g)) * g, updates)
        return scaled, state

    return GradientTransformation(init, update)
