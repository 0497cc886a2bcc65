r"""Gradient accumulation: one optimizer step from the gradients of several mini-batches.

When a batch of size :math:`kB` does not fit in memory, take :math:`k` mini-batches of size
:math:`B`, average their gradients, and step once:

.. math::

    \bar g = \frac1k \sum_{j=1}^{k} g^{(j)}, \qquad \theta \leftarrow \theta + T(\bar g)

which is exactly the step on the big batch when the loss is a mean over examples.

* :class:`MultiSteps` wraps an optimizer :math:`T`: for :math:`k-1` calls it only accumulates
  (a running mean, or a sum) and returns zero updates; the :math:`k`-th call hands the
  accumulated gradient to :math:`T` and returns its update. The inner optimizer's state moves
  once per :math:`k` calls, so its step counts (Adam's bias correction, schedules) count
  *optimizer* steps. A ``should_skip_update_fn`` (:func:`skip_not_finite`,
  :func:`skip_large_updates`) can refuse a mini-batch's gradient.
* :func:`apply_every` is the simpler transformation for the end of a chain: it sums the
  updates that reach it and lets the sum through every :math:`k`-th call. Everything before it
  in the chain still steps on every call, so it is *not* the big-batch step (use
  :class:`MultiSteps` for that).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_concrete_number, check_non_negative, check_real, check_same_shapes, names_errors
from fdl.optim.base import GradientTransformation, safe_increment, with_extra_args_support
from fdl.tree import floats, zeros_like

__all__ = [
    "ApplyEvery",
    "apply_every",
    "MultiStepsState",
    "MultiSteps",
    "skip_not_finite",
    "skip_large_updates",
]

PyTree = Any


class ApplyEvery(NamedTuple):
    """:func:`apply_every`'s state: the call count modulo :math:`k` (int32) and the running sum
    of the updates since the last emission."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    grad_acc: PyTree


@names_errors("apply_every")
def apply_every(k: int = 1) -> GradientTransformation:
    r"""Sum the updates over :math:`k` calls and let the sum through on every :math:`k`-th.

    .. math::

        a_t = \begin{cases} g_t & t \bmod k = 0 \\ a_{t-1} + g_t & \text{otherwise}
        \end{cases}, \qquad
        u_t = \begin{cases} a_t & t \bmod k = k - 1 \\ 0 & \text{otherwise} \end{cases}

    for calls :math:`t = 0, 1, \ldots`. The transformations before it in a chain still update
    their states on every call; for the step on the mean gradient of :math:`k` mini-batches,
    wrap the optimizer in :class:`MultiSteps`.

    Args:
      k: a whole number >= 1 (a traced value is taken as it is, rounded towards zero).

    Returns:
      A transformation with state :class:`ApplyEvery` ``(count, grad_acc)``.

    Raises:
      TypeError: ``k`` not a real number. ValueError: ``k`` not a whole number >= 1.

    >>> import jax.numpy as jnp
    >>> opt = apply_every(k=2)
    >>> state = opt.init(jnp.zeros(1))
    >>> u1, state = opt.update(jnp.asarray([1.0]), state)
    >>> u2, state = opt.update(jnp.asarray([2.0]), state)
    >>> u1.tolist(), u2.tolist()
    ([0.0], [3.0])
    """
    k = _whole_at_least("k", k, 1, "calls per emitted sum")

    def init(params: PyTree) -> ApplyEvery:
        return ApplyEvery(count=jnp.zeros([], jnp.int32), grad_acc=zeros_like(params))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_same_shapes("apply_every", "`updates`", updates, "`state.grad_acc`", state.grad_acc)
        del params, extra_args
        position = state.count % k
        keep = position != 0  # False on the first call of a group: the sum restarts

        def add(g, acc):
            dtype = _dtypes.result_type(g, acc)
            return jnp.where(keep, acc.astype(dtype), jnp.zeros((), dtype)) + g.astype(dtype)

        grad_acc = jax.tree.map(add, updates, state.grad_acc)
        emit = position == k - 1
        out = jax.tree.map(lambda acc: jnp.where(emit, acc, jnp.zeros((), acc.dtype)), grad_acc)
        return out, ApplyEvery(count=safe_increment(state.count) % k, grad_acc=grad_acc)

    return GradientTransformation(init, update)


def _whole_at_least(name: str, value: Any, least: int, meaning: str) -> Any:
    """``value`` as an int if it is a concrete whole number >= ``least``; a traced value as an
    int32 array; else raise naming ``name`` (``meaning``: what the number counts)."""
    check_real(name, value)
    number = as_concrete_number(value)
    if number is None:
        return jnp.asarray(value).astype(jnp.int32)
    if number < least or number != int(number):
        raise ValueError(f"`{name}` must be a whole number >= {least} ({meaning}), got {value!r}")
    return int(number)


# ----------------------------------------------------------------------------- skip functions


def skip_not_finite(
    updates: PyTree, gradient_step: Any, params: PyTree
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""A ``should_skip_update_fn`` for :class:`MultiSteps`: skip a gradient with any NaN or inf.

    Returns:
      ``(should_skip, {"should_skip": ..., "num_not_finite": ...})``: a bool scalar, and the
      record kept in the state (the count of non-finite entries over all leaves, int32).

    >>> import jax.numpy as jnp
    >>> skip, record = skip_not_finite({"w": jnp.asarray([1.0, jnp.inf])}, 0, None)
    >>> bool(skip), int(record["num_not_finite"])
    (True, 1)
    """
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(leaf)) for leaf in jax.tree.leaves(updates)]
    num_not_finite = jnp.sum(jnp.asarray(counts))
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: PyTree, gradient_step: Any, params: PyTree, max_squared_norm: Any
) -> tuple[jax.Array, dict[str, jax.Array]]:
    r"""A ``should_skip_update_fn`` for :class:`MultiSteps` (bind ``max_squared_norm`` with
    ``functools.partial``): skip a gradient unless :math:`\|g\|^2 <` ``max_squared_norm``
    (so a NaN norm is skipped too).

    Returns:
      ``(should_skip, {"should_skip": ..., "norm_squared": ...})``.

    >>> import jax.numpy as jnp
    >>> skip, record = skip_large_updates({"w": jnp.asarray([3.0, 4.0])}, 0, None, 20.0)
    >>> bool(skip), float(record["norm_squared"])
    (True, 25.0)
    """
    del gradient_step, params
    check_non_negative("max_squared_norm", max_squared_norm)
    norm_squared = jnp.sum(jnp.asarray([jnp.sum(leaf**2) for leaf in jax.tree.leaves(updates)]))
    should_skip = ~(norm_squared < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_squared}


def _never_skip(updates: PyTree, gradient_step: Any, params: PyTree) -> tuple[jax.Array, tuple]:
    del updates, gradient_step, params
    return jnp.asarray(False), ()


# --------------------------------------------------------------------------------- MultiSteps


class MultiStepsState(NamedTuple):
    """:class:`MultiSteps`' state, with optax's fields.

    Attributes:
      mini_step: calls since the last optimizer step, in ``[0, k)`` (int32).
      gradient_step: optimizer steps taken (int32).
      inner_opt_state: the wrapped optimizer's state (moves once per :math:`k` calls).
      acc_grads: the accumulated gradient (``accumulator_dtype``).
      skip_state: what ``should_skip_update_fn`` recorded about the last call.
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: PyTree
    skip_state: Any = ()


class MultiSteps:
    r"""Accumulate the gradients of :math:`k` calls, then take one step of ``opt`` on them.

    With ``use_grad_mean`` the accumulator is the running mean
    :math:`a_j = a_{j-1} + (g_j - a_{j-1}) / j` (:math:`a_k = \bar g`, the mean of the
    :math:`k` gradients), else the sum. Calls :math:`1..k-1` of a group return zero updates;
    call :math:`k` returns ``opt``'s update on :math:`a_k` (cast to the gradients' dtype) and
    resets the accumulator. ``opt``'s state and ``gradient_step`` change only then.

    Use :meth:`gradient_transformation` (or the object itself: it has ``init`` and
    ``update``) in place of ``opt``.

    Args:
      opt: the optimizer to step.
      every_k_schedule: :math:`k`, a positive int, or a function of ``gradient_step``
        returning it (a schedule of accumulation lengths).
      use_grad_mean: average (True) or sum (False) the gradients.
      should_skip_update_fn: ``fn(updates, gradient_step, params) -> (bool scalar,
        record)``; a call it refuses leaves the state as it was (but for the record, kept in
        ``skip_state``) and returns zero updates. :func:`skip_not_finite`,
        :func:`skip_large_updates`.
      accumulator_dtype: the dtype of ``acc_grads`` (float32 by default, as optax's: bfloat16
        gradients are summed in float32).

    Raises:
      ValueError: ``every_k_schedule`` an int below 1 (a schedule's values are not checked:
        they may be traced), an ``opt`` that is not a transformation.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import sgd
    >>> opt = MultiSteps(sgd(1.0), every_k_schedule=2)
    >>> state = opt.init(jnp.zeros(1))
    >>> u1, state = opt.update(jnp.asarray([1.0]), state)
    >>> u2, state = opt.update(jnp.asarray([3.0]), state)
    >>> u1.tolist(), u2.tolist(), bool(opt.has_updated(state))  # one step on the mean, 2
    ([0.0], [-2.0], True)

    As in optax, ``opt.update`` runs on every call and its result is kept only on the
    :math:`k`-th (running it under ``lax.cond`` instead was measured to round differently from
    optax's program, by up to 1.5e-6 relative in Adam's ``nu`` after 200 calls).
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[jax.Array], Any],
        use_grad_mean: bool = True,
        should_skip_update_fn: Callable[..., tuple[jax.Array, Any]] | None = None,
        accumulator_dtype: Any = jnp.float32,
    ):
        if not (hasattr(opt, "init") and hasattr(opt, "update")):
            raise ValueError(
                f"MultiSteps: `opt` must be a GradientTransformation (init, update), got {opt!r}"
            )
        if callable(every_k_schedule):
            self._every_k = every_k_schedule
        else:
            if (
                isinstance(every_k_schedule, bool)
                or not isinstance(every_k_schedule, int)
                or every_k_schedule < 1
            ):
                raise ValueError(
                    "MultiSteps: `every_k_schedule` must be an int >= 1 (the number of calls per "
                    f"optimizer step) or a function of the step, got {every_k_schedule!r}"
                )
            k = every_k_schedule
            self._every_k = lambda step: k
        self._opt = with_extra_args_support(opt)
        self._use_grad_mean = use_grad_mean
        self._skip = _never_skip if should_skip_update_fn is None else should_skip_update_fn
        self._accumulator_dtype = _dtypes.canonical(accumulator_dtype)

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped optimizer."""
        return self._opt

    def gradient_transformation(self) -> GradientTransformation:
        """``GradientTransformation(self.init, self.update)``."""
        return GradientTransformation(self.init, self.update)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """Whether the last call took an optimizer step (``mini_step == 0`` after at least one
        step)."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def init(self, params: PyTree) -> MultiStepsState:
        gradient_step = jnp.zeros([], jnp.int32)
        _, skip_state = self._skip(zeros_like(params), gradient_step, params)
        return MultiStepsState(
            mini_step=jnp.zeros([], jnp.int32),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=zeros_like(params, self._accumulator_dtype),
            skip_state=skip_state,
        )

    def update(self, updates, state: MultiStepsState, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_same_shapes("MultiSteps", "`updates`", updates, "`state.acc_grads`", state.acc_grads)
        k = self._every_k(state.gradient_step)
        should_skip, skip_state = self._skip(updates, state.gradient_step, params)
        should_skip = jnp.asarray(should_skip)
        if should_skip.dtype != jnp.bool_ or should_skip.shape != ():
            raise ValueError(
                "MultiSteps: `should_skip_update_fn` must return a bool scalar first, got an array "
                f"of dtype {should_skip.dtype} and shape {should_skip.shape}"
            )
        n = state.mini_step

        def accumulate(g, acc):
            dtype = _dtypes.result_type(g, acc)  # JAX's standard promotion, written out
            g, acc = g.astype(dtype), acc.astype(dtype)
            if self._use_grad_mean:
                return acc + (g - acc) / (n + 1).astype(dtype)
            return g + acc

        def as_dtype_of(new, old):
            return jax.tree.map(lambda a, b: jnp.asarray(a).astype(jnp.result_type(b)), new, old)

        def zero_updates(inner_state):
            shapes = jax.eval_shape(
                lambda: self._opt.update(
                    as_dtype_of(state.acc_grads, updates), inner_state, params, **extra_args
                )
            )[0]
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def take(_):
            acc_grads = jax.tree.map(accumulate, updates, state.acc_grads)
            emit = n == k - 1
            # The inner step runs on every call and counts only on the k-th (as optax's): the
            # same program as optax's, so the same rounding.
            out, new_inner = self._opt.update(
                as_dtype_of(acc_grads, updates), state.inner_opt_state, params, **extra_args
            )
            new_state = MultiStepsState(
                mini_step=safe_increment(n) % k,
                gradient_step=jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step),
                inner_opt_state=jax.tree.map(
                    lambda old, new: jnp.where(emit, jnp.asarray(new).astype(old.dtype), old),
                    state.inner_opt_state,
                    new_inner,
                ),
                acc_grads=jax.tree.map(
                    lambda acc: jnp.where(emit, jnp.zeros((), acc.dtype), acc).astype(
                        self._accumulator_dtype
                    ),
                    acc_grads,
                ),
                skip_state=skip_state,
            )
            return jax.tree.map(lambda u: jnp.where(emit, u, jnp.zeros((), u.dtype)), out), new_state

        def skip(_):
            return zero_updates(state.inner_opt_state), state._replace(skip_state=skip_state)

        return jax.lax.cond(should_skip, skip, take, None)
