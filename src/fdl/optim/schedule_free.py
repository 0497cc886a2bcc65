r"""Schedule-Free: replace momentum and the learning-rate decay by averaging and interpolation.

A decaying learning rate needs the length of training in advance. Schedule-Free learning
(Defazio et al., 2024) keeps a constant rate and three sequences instead: the base optimizer
steps :math:`z`, :math:`x` is a running (weighted) average of the :math:`z`, and the gradient
is taken at :math:`y`, between the two:

.. math::

    y_t = (1 - \beta_1)\, z_t + \beta_1\, x_t, \qquad
    z_{t+1} = z_t + \Delta(\nabla f(y_t)), \qquad
    x_{t+1} = (1 - c_{t+1})\, x_t + c_{t+1}\, z_{t+1}

The parameters the caller holds are :math:`y`; evaluate the model at :math:`x`
(:func:`schedule_free_eval_params`). Only :math:`z` is stored: :math:`x` is recovered from
:math:`y` and :math:`z`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_decay,
    check_learning_rate,
    check_non_negative,
    check_real,
    check_update_shapes,
    names_errors,
)
from fdl._checks.hyper import as_concrete_number
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
    with_extra_args_support,
)
from fdl.optim.momentum import sgd
from fdl.optim.rms import scale_by_rms
from fdl.optim.schedules import warmup_constant_schedule
from fdl.optim.weight_decay import add_decayed_weights
from fdl.tree import cast, floats

__all__ = [
    "ScheduleFreeState",
    "schedule_free",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedule_free_adamw",
]

PyTree = Any
Scalar = float | jax.Array


class ScheduleFreeState(NamedTuple):
    """The state of :func:`schedule_free`, with optax's field names and order."""

    b1: jax.Array
    r""":math:`\beta_1`, in the parameters' (lowest) dtype."""
    weight_sum: jax.Array
    r"""The sum of the averaging weights so far, :math:`\sum_{s \le t} w_s`."""
    step_count: jax.Array
    """The step count (int32), starting at 1: the learning-rate schedule is called with it."""
    max_lr: jax.Array
    """The largest learning rate so far."""
    base_optimizer_state: Any
    """The state of the base optimizer."""
    z: PyTree
    """The sequence :math:`z` that the base optimizer steps."""


def _check_b1(b1: Any) -> None:
    check_real("b1", b1)
    number = as_concrete_number(b1)
    if number is not None and not 0.0 < number <= 1.0:
        raise ValueError(f"`b1` must be in (0, 1] (the parameters are divided by it), got {b1!r}")


def _times(c: Any, x: jax.Array) -> jax.Array:
    """``c * x`` in the dtype of ``x`` promoted with ``c``'s (a Python number is weak)."""
    dtype = _dtypes.result_type(c, x)
    return jnp.asarray(c).astype(dtype) * x.astype(dtype)


def _average_x(y: jax.Array, z: jax.Array, b1: Any) -> jax.Array:
    r""":math:`x = (y - (1 - \beta_1) z) / \beta_1`, the average recovered from :math:`y, z`."""
    shifted = _times(1.0 - b1, z)
    dtype = _dtypes.result_type(y, shifted)
    numerator = y.astype(dtype) - shifted.astype(dtype)
    return numerator / jnp.asarray(b1).astype(_dtypes.result_type(numerator, b1))


@names_errors("schedule_free_eval_params")
def schedule_free_eval_params(state: Any, params: PyTree) -> PyTree:
    r"""The parameters to evaluate the model at: the average :math:`x` of :func:`schedule_free`.

    .. math:: x = \frac{y - (1 - \beta_1)\, z}{\beta_1}

    where :math:`y` are the parameters being trained and :math:`z`, :math:`\beta_1` come from
    the :class:`ScheduleFreeState`.

    Args:
      state: the :class:`ScheduleFreeState` (the state of :func:`schedule_free` itself, not
        of a chain around it).
      params: the parameters :math:`y`.

    Returns:
      :math:`x`, shaped as ``params``.

    Raises:
      ValueError: a ``state`` without ``b1`` and ``z``.

    >>> import jax.numpy as jnp
    >>> state = ScheduleFreeState(jnp.asarray(0.5), 0.0, 1, 0.0, (), jnp.asarray([1.0]))
    >>> schedule_free_eval_params(state, jnp.asarray([2.0])).tolist()  # (2 - 0.5) / 0.5
    [3.0]
    """
    b1, z = getattr(state, "b1", None), getattr(state, "z", None)
    if b1 is None or z is None:
        raise ValueError(
            f"`state` must be the ScheduleFreeState of schedule_free (with `b1` and `z`), got "
            f"{type(state).__name__}"
        )
    return jax.tree.map(lambda y, zi: _average_x(jnp.asarray(y), jnp.asarray(zi), b1), params, z)


@names_errors("schedule_free")
def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    weight_lr_power: Scalar = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Make ``base_optimizer`` schedule-free: its updates step :math:`z`, the parameters
    :math:`y` interpolate between :math:`z` and their running average :math:`x`.

    With :math:`\Delta_t` the base optimizer's update, :math:`\gamma_t` ``learning_rate``
    (at ``step_count`` :math:`t = 1, 2, \ldots`) and :math:`\beta_1` = ``b1``:

    .. math::

        \gamma^{\max}_t &= \max(\gamma^{\max}_{t-1}, \gamma_t), \qquad
        w_t = (\gamma^{\max}_t)^{\text{weight\_lr\_power}}, \qquad
        c_t = \frac{w_t}{\sum_{s \le t} w_s} \\
        z_{t+1} &= z_t + \Delta_t, \qquad
        x_t = \frac{y_t - (1 - \beta_1) z_t}{\beta_1}, \qquad
        x_{t+1} = (1 - c_t)\, x_t + c_t\, z_{t+1} \\
        u_t &= \beta_1 x_{t+1} + (1 - \beta_1) z_{t+1} - y_t

    so that :math:`y_{t+1} = y_t + u_t`. :math:`c_t` is 0 where the weights sum to zero
    (a warmup from 0) and NaN where a weight is. Turn the base optimizer's momentum off
    (e.g. Adam with ``b1=0``): the interpolation replaces it.

    Args:
      base_optimizer: the transformation whose updates step :math:`z` (its learning rate
        included, usually the same ``learning_rate``).
      learning_rate: :math:`\gamma \ge 0`, a number or a schedule (with warmup, no decay),
        for the averaging weights.
      b1: :math:`\beta_1 \in (0, 1]`, the interpolation.
      weight_lr_power: the power of the largest learning rate in the averaging weights,
        ``>= 0`` (downweights the warmup steps).
      state_dtype: dtype to store :math:`z` in; default the parameters'.

    Returns:
      A transformation with state :class:`ScheduleFreeState`. ``update`` needs ``params``
      and passes extra keyword arguments on to the base optimizer.

    Raises:
      TypeError: a ``base_optimizer`` without ``init`` and ``update``.
      ValueError: ``b1`` outside ``(0, 1]``, a negative ``learning_rate`` or
        ``weight_lr_power``; ``update`` without ``params``.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import sgd
    >>> opt = schedule_free(sgd(1.0), learning_rate=1.0, b1=0.5)
    >>> y = jnp.asarray([0.0])
    >>> u, state = opt.update(jnp.asarray([1.0]), opt.init(y), y)  # z = -1, x = -1
    >>> u.tolist(), state.z.tolist()
    ([-1.0], [-1.0])

    References:
      Defazio et al., *The Road Less Scheduled*, NeurIPS 2024.

    Differs from optax:
      The updates keep the gradients' dtype (optax returns the promoted dtype of parameters
      and :math:`z`, float32 for bfloat16 parameters with ``state_dtype=float32``).
    """
    if not (
        callable(getattr(base_optimizer, "init", None)) and callable(getattr(base_optimizer, "update", None))
    ):
        raise TypeError(
            f"`base_optimizer` must be a gradient transformation (init, update), e.g. "
            f"fdl.optim.adam(1e-3, b1=0.0), got {base_optimizer!r}"
        )
    check_learning_rate("learning_rate", learning_rate)
    _check_b1(b1)
    check_non_negative("weight_lr_power", weight_lr_power)
    base = with_extra_args_support(base_optimizer)
    state_dtype = _dtypes.canonical(state_dtype)

    def init(params: PyTree) -> ScheduleFreeState:
        dtype = _dtypes.lowest_float(params)
        # a float copy, not the caller's buffers
        z = jax.tree.map(jnp.array, cast(floats(params), state_dtype))
        return ScheduleFreeState(
            b1=jnp.asarray(b1, dtype),
            weight_sum=jnp.zeros([], dtype),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], dtype),
            base_optimizer_state=base.init(params),
            z=z,
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("schedule_free needs the parameters: call `update(grads, state, params)`")
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("schedule_free", updates, params, "z", state.z)
        dtype = state.max_lr.dtype
        lr = jnp.asarray(learning_rate(state.step_count), dtype) if callable(learning_rate) else learning_rate
        max_lr = jnp.maximum(state.max_lr, jnp.asarray(lr).astype(dtype))
        weight = max_lr ** jnp.asarray(weight_lr_power).astype(dtype)
        weight_sum = state.weight_sum + weight
        ratio = jnp.nan_to_num(weight / weight_sum, nan=0.0, posinf=jnp.inf)
        c = jnp.where(
            jnp.isnan(weight) | jnp.isnan(weight_sum), jnp.full(weight.shape, jnp.nan, dtype), ratio
        )
        base_updates, base_state = base.update(updates, state.base_optimizer_state, params, **extra_args)

        def step_z(zi, du):
            zi = jnp.asarray(zi)
            return (zi.astype(_dtypes.result_type(zi, du)) + du.astype(_dtypes.result_type(zi, du))).astype(
                zi.dtype
            )

        z = jax.tree.map(step_z, state.z, base_updates)

        def new_update(y, z_old, z_new, g):
            y = jnp.asarray(y)
            x_old = _average_x(y, z_old, b1)
            dtype_x = _dtypes.result_type(x_old, z_new)
            c_ = c.astype(dtype_x)
            x = (1.0 - c_) * x_old.astype(dtype_x) + c_ * z_new.astype(dtype_x)
            left, right = _times(b1, x), _times(1.0 - b1, z_new)
            dtype_y = _dtypes.result_type(left, right)
            new_y = left.astype(dtype_y) + right.astype(dtype_y)
            dtype_u = _dtypes.result_type(new_y, y)
            return (new_y.astype(dtype_u) - y.astype(dtype_u)).astype(jnp.result_type(g))

        new_updates = jax.tree.map(new_update, params, state.z, z, updates)
        new_state = ScheduleFreeState(
            b1=state.b1,
            weight_sum=weight_sum,
            step_count=safe_increment(state.step_count),
            max_lr=max_lr,
            base_optimizer_state=base_state,
            z=z,
        )
        return new_updates, new_state

    return GradientTransformation(init, update)


def _warmed_up(learning_rate: Any, warmup_steps: int | None) -> Any:
    if warmup_steps is None:
        return learning_rate
    return warmup_constant_schedule(init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps)


@names_errors("schedule_free_sgd")
def schedule_free_sgd(
    learning_rate: Scalar = 1.0,
    warmup_steps: int | None = None,
    b1: Scalar = 0.9,
    weight_decay: Scalar | None = None,
    weight_lr_power: Scalar = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Schedule-Free SGD: :func:`schedule_free` around plain SGD (no momentum).

    .. math:: \Delta_t = -\gamma_t\,(g_t + \text{weight\_decay}\; y_t)

    with :math:`\gamma_t` a linear warmup from 0 over ``warmup_steps``, then constant
    ``learning_rate`` (constant from the start when ``warmup_steps`` is ``None``).

    Args:
      learning_rate: the peak :math:`\gamma \ge 0`.
      warmup_steps: the length of the linear warmup, or ``None``.
      b1, weight_lr_power, state_dtype: as in :func:`schedule_free`.
      weight_decay: :math:`\ge 0`, added to the gradients (L2), or ``None`` for none.

    Returns:
      The optimizer (state :class:`ScheduleFreeState`).

    Raises:
      ValueError: an invalid argument (see :func:`schedule_free`), a negative
        ``weight_decay``, or a ``warmup_steps`` that is not a whole number of steps.

    >>> import jax.numpy as jnp
    >>> opt = schedule_free_sgd(learning_rate=0.5, b1=1.0)
    >>> y = jnp.asarray([2.0])
    >>> u, state = opt.update(jnp.asarray([1.0]), opt.init(y), y)  # b1 = 1: y = x, c = 1
    >>> u.tolist()
    [-0.5]

    References:
      Defazio et al., *The Road Less Scheduled*, NeurIPS 2024.
    """
    check_non_negative("learning_rate", learning_rate)
    if weight_decay is not None:
        check_non_negative("weight_decay", weight_decay)
    learning_rate = _warmed_up(learning_rate, warmup_steps)
    optimizer = sgd(learning_rate)
    if weight_decay is not None:
        optimizer = chain(add_decayed_weights(weight_decay), optimizer)
    return schedule_free(
        optimizer,
        learning_rate=learning_rate,
        b1=b1,
        weight_lr_power=weight_lr_power,
        state_dtype=state_dtype,
    )


@names_errors("schedule_free_adamw")
def schedule_free_adamw(
    learning_rate: Scalar = 0.0025,
    warmup_steps: int | None = None,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: Scalar = 0.0,
    weight_lr_power: Scalar = 2.0,
    state_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Schedule-Free AdamW: :func:`schedule_free` around Adam without momentum.

    .. math::

        v_t = \text{b2}\; v_{t-1} + (1 - \text{b2})\, g_t^2, \qquad
        \Delta_t = -\gamma_t \Big(\frac{g_t}{\sqrt{v_t / (1 - \text{b2}^t)} + \text{eps}}
            + \text{weight\_decay}\; y_t\Big)

    (:func:`~fdl.optim.rms.scale_by_rms` with ``eps_in_sqrt=False, bias_correction=True``,
    as optax: Adam with ``b1=0`` without its zero first moment), with the warmup of
    :func:`schedule_free_sgd`.

    Args:
      learning_rate: the peak :math:`\gamma \ge 0`.
      warmup_steps: the length of the linear warmup, or ``None``.
      b1, weight_lr_power, state_dtype: as in :func:`schedule_free`.
      b2: decay of the second moment, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0``.
      weight_decay: :math:`\ge 0`, decoupled, multiplied by the learning rate.

    Returns:
      The optimizer (state :class:`ScheduleFreeState`).

    Raises:
      ValueError: an invalid argument of this function or of its parts.

    >>> import jax.numpy as jnp
    >>> opt = schedule_free_adamw(learning_rate=0.1, b1=1.0)
    >>> y = jnp.asarray([2.0])
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(y), y)
    >>> [round(x, 4) for x in u.tolist()]  # -lr sign(g): Adam's first step
    [-0.1]

    References:
      Defazio et al., *The Road Less Scheduled*, NeurIPS 2024.
    """
    check_non_negative("learning_rate", learning_rate)
    check_decay("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("weight_decay", weight_decay)
    learning_rate = _warmed_up(learning_rate, warmup_steps)
    optimizer = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_required_learning_rate(learning_rate),
    )
    return schedule_free(
        optimizer,
        learning_rate=learning_rate,
        b1=b1,
        weight_lr_power=weight_lr_power,
        state_dtype=state_dtype,
    )
