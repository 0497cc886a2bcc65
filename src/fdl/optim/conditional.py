r"""Transformations that run only when a condition holds: on a step schedule, or when the
gradient is finite.

* :func:`conditionally_transform`: run ``inner`` when ``should_transform_fn(step)`` holds,
  else pass the updates through unchanged.
* :func:`conditionally_mask`: the same, but a rejected step's updates are zero.
* :func:`apply_if_finite`: skip (zero updates, ``inner``'s state untouched) any step whose
  gradient has a NaN or inf, unless more than ``max_consecutive_errors`` came in a row; count
  them in the state. A run that meets one bad batch loses one step, not its moments.

The condition is evaluated on device, under ``lax.cond``: one compiled program for both
outcomes, and only the chosen branch runs (outside ``vmap``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import as_concrete_number, check_real, names_errors
from fdl.optim.base import GradientTransformation, safe_increment, with_extra_args_support
from fdl.tree import floats

__all__ = [
    "ConditionallyTransformState",
    "conditionally_transform",
    "ConditionallyMaskState",
    "conditionally_mask",
    "ApplyIfFiniteState",
    "apply_if_finite",
]

PyTree = Any


def _check_inner(caller: str, inner: Any) -> None:
    if not (hasattr(inner, "init") and hasattr(inner, "update")):
        raise TypeError(f"{caller}: `inner` must be a GradientTransformation (init, update), got {inner!r}")


def _check_condition(caller: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{caller}: `should_transform_fn` must be a function of the step, got {fn!r}")


class ConditionallyTransformState(NamedTuple):
    """The wrapped state and the call count (int32), in optax's field order."""

    inner_state: Any
    step: jax.Array


def conditionally_transform(
    inner: GradientTransformation,
    should_transform_fn: Callable[..., Any],
    forward_extra_args: bool = False,
) -> GradientTransformation:
    r"""Run ``inner`` where ``should_transform_fn(step)`` is True; elsewhere pass the updates
    through and keep ``inner``'s state.

    .. math:: u_t = \begin{cases} \operatorname{inner}(g_t) & c(t) \\ g_t & \text{otherwise}
        \end{cases}, \quad t = 0, 1, \ldots

    Args:
      inner: the transformation to run conditionally.
      should_transform_fn: ``c(step, **extra_args) -> bool scalar`` (the extra arguments of
        ``update`` only with ``forward_extra_args``).
      forward_extra_args: pass ``update``'s extra keyword arguments to the condition.

    Returns:
      A transformation with state :class:`ConditionallyTransformState`.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import scale
    >>> opt = conditionally_transform(scale(10.0), lambda step: step % 2 == 0)
    >>> state = opt.init(jnp.zeros(1))
    >>> u0, state = opt.update(jnp.ones(1), state)
    >>> u1, state = opt.update(jnp.ones(1), state)
    >>> u0.tolist(), u1.tolist()
    ([10.0], [1.0])
    """
    _check_inner("conditionally_transform", inner)
    _check_condition("conditionally_transform", should_transform_fn)
    inner = with_extra_args_support(inner)

    def init(params: PyTree) -> ConditionallyTransformState:
        return ConditionallyTransformState(inner_state=inner.init(params), step=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        condition = should_transform_fn(state.step, **(extra_args if forward_extra_args else {}))
        new_updates, inner_state = jax.lax.cond(
            condition,
            lambda: inner.update(updates, state.inner_state, params, **extra_args),
            lambda: (updates, state.inner_state),
        )
        return new_updates, ConditionallyTransformState(inner_state, safe_increment(state.step))

    return GradientTransformation(init, update)


class ConditionallyMaskState(NamedTuple):
    """The call count (int32) and the wrapped state, in optax's field order."""

    step: jax.Array
    inner_state: Any


def conditionally_mask(
    inner: GradientTransformation,
    should_transform_fn: Callable[..., Any],
    forward_extra_args: bool = False,
) -> GradientTransformation:
    r"""Run ``inner`` where ``should_transform_fn(step)`` is True; elsewhere return zero
    updates and keep ``inner``'s state.

    .. math:: u_t = \begin{cases} \operatorname{inner}(g_t) & c(t) \\ 0 & \text{otherwise}
        \end{cases}

    Args: as :func:`conditionally_transform`.

    Returns:
      A transformation with state :class:`ConditionallyMaskState`.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import sgd
    >>> opt = conditionally_mask(sgd(0.5), lambda step: step >= 1)  # skip the first step
    >>> state = opt.init(jnp.zeros(1))
    >>> u0, state = opt.update(jnp.ones(1), state)
    >>> u1, state = opt.update(jnp.ones(1), state)
    >>> u0.tolist(), u1.tolist()
    ([0.0], [-0.5])
    """
    _check_inner("conditionally_mask", inner)
    _check_condition("conditionally_mask", should_transform_fn)
    inner = with_extra_args_support(inner)

    def init(params: PyTree) -> ConditionallyMaskState:
        return ConditionallyMaskState(step=jnp.zeros([], jnp.int32), inner_state=inner.init(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        condition = should_transform_fn(state.step, **(extra_args if forward_extra_args else {}))
        new_updates, inner_state = jax.lax.cond(
            condition,
            lambda: inner.update(updates, state.inner_state, params, **extra_args),
            lambda: (jax.tree.map(jnp.zeros_like, updates), state.inner_state),
        )
        return new_updates, ConditionallyMaskState(safe_increment(state.step), inner_state)

    return GradientTransformation(init, update)


class ApplyIfFiniteState(NamedTuple):
    """:func:`apply_if_finite`'s state, with optax's fields.

    Attributes:
      notfinite_count: non-finite steps in a row, up to now (int32).
      last_finite: whether the last step's updates were all finite (bool).
      total_notfinite: non-finite steps in all (int32).
      inner_state: the wrapped state.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


@names_errors("apply_if_finite")
def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int) -> GradientTransformation:
    r"""Skip the steps whose updates are not all finite, up to ``max_consecutive_errors`` in a
    row.

    A skipped step returns zero updates and leaves ``inner``'s state as it was (Adam's moments
    never see the NaN). After more than ``max_consecutive_errors`` non-finite steps in a row
    the next one is applied anyway (and its NaN reaches the parameters): a persistent fault is
    not hidden forever.

    Args:
      inner: the optimizer to protect.
      max_consecutive_errors: the non-finite steps in a row that are skipped, ``>= 0``.

    Returns:
      A transformation with state :class:`ApplyIfFiniteState`.

    Raises:
      TypeError: ``max_consecutive_errors`` not a real number. ValueError: not a whole
        number >= 0.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import adam
    >>> opt = apply_if_finite(adam(0.1), max_consecutive_errors=2)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([jnp.nan]), state)
    >>> u.tolist(), int(state.total_notfinite), int(state.inner_state[0].count)
    ([0.0], 1, 0)
    """
    _check_inner("apply_if_finite", inner)
    inner = with_extra_args_support(inner)
    check_real("max_consecutive_errors", max_consecutive_errors)
    number = as_concrete_number(max_consecutive_errors)
    limit: Any
    if number is None:  # traced: taken as it is
        limit = jnp.asarray(max_consecutive_errors).astype(jnp.int32)
    elif number < 0 or number != int(number):
        raise ValueError(
            f"`max_consecutive_errors` must be a whole number >= 0 (the non-finite steps in a row "
            f"that are skipped), got {max_consecutive_errors!r}"
        )
    else:
        limit = int(number)

    def init(params: PyTree) -> ApplyIfFiniteState:
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.asarray(True),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(updates)]))
        in_a_row = jnp.where(finite, jnp.zeros([], jnp.int32), safe_increment(state.notfinite_count))
        new_updates, inner_state = jax.lax.cond(
            jnp.logical_or(finite, in_a_row > limit),
            lambda: inner.update(updates, state.inner_state, params, **extra_args),
            lambda: (jax.tree.map(jnp.zeros_like, updates), state.inner_state),
        )
        return new_updates, ApplyIfFiniteState(
            notfinite_count=in_a_row,
            last_finite=finite,
            total_notfinite=jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite)),
            inner_state=inner_state,
        )

    return GradientTransformation(init, update)
