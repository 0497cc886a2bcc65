r"""Constant and polynomial schedules (the linear one is the polynomial of power 1)."""

from __future__ import annotations

import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_concrete_non_negative,
    check_concrete_number,
    check_positive_exponent,
    check_real,
    names_errors,
)
from fdl.optim.base import Schedule
from fdl.optim.schedules._values import Value, float_count, prepare

__all__ = ["constant_schedule", "linear_schedule", "polynomial_schedule"]


@names_errors("constant_schedule")
def constant_schedule(value: Value) -> Schedule:
    r"""The same value at every step.

    .. math:: \eta(t) = v

    Args:
      value: the value :math:`v`.

    Returns:
      A schedule ``count -> value``, the value broadcast to the count's shape.

    Differs from optax: optax returns ``value`` itself (``5`` stays the Python int ``5``); fdl
    returns an array of the schedule dtype (see the module docstring).

    >>> sched = constant_schedule(0.1)
    >>> [round(float(sched(t)), 6) for t in (0, 1000)]
    [0.1, 0.1]
    """
    check_real("value", value)
    dtype = _dtypes.with_default_float(value)
    value = prepare(value, dtype)

    def schedule(count):
        return jnp.full(jnp.shape(count), value, dtype)

    return schedule


@names_errors("polynomial_schedule")
def polynomial_schedule(
    init_value: Value,
    end_value: Value,
    power: Value,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""A polynomial transition from ``init_value`` to ``end_value``.

    With :math:`I` = ``init_value``, :math:`E` = ``end_value``, :math:`p` = ``power``,
    :math:`T` = ``transition_steps`` and :math:`B` = ``transition_begin``:

    .. math::

        \tau(t) = \operatorname{clip}(t - B,\ 0,\ T), \qquad
        \eta(t) = \begin{cases}
            I, & t \le B, \\
            (I - E)\left(\dfrac{T - \tau(t)}{T}\right)^{p} + E, & B < t < B + T, \\
            E, & t \ge B + T.
        \end{cases}

    ``power=1`` is a straight line (:func:`linear_schedule`); ``power=2`` decays fast first,
    then flattens; ``power=0.5`` the other way round.

    Args:
      init_value: :math:`I`, the value up to step ``transition_begin``.
      end_value: :math:`E`, the value from step ``transition_begin + transition_steps`` on.
      power: :math:`p > 0`.
      transition_steps: :math:`T`. If :math:`T \le 0` the schedule is the constant
        ``init_value`` (as in optax).
      transition_begin: :math:`B \ge 0`, the number of steps spent at ``init_value``.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``transition_steps`` or ``transition_begin`` not a concrete number, a negative
        ``transition_begin`` (optax clamps it to 0 silently), or a concrete ``power`` <= 0
        (optax returns :math:`\infty` at the end for a negative power, and ignores
        ``end_value`` for 0).

    Differs from optax:
      optax evaluates :math:`(I - E)(1 - \tau/T)^p + E` everywhere. Under ``jit``, XLA turns
      :math:`\tau / T` into :math:`\tau \cdot \operatorname{fl}(1/T)` and fuses
      :math:`1 - \tau \cdot \operatorname{fl}(1/T)` into one multiply-add, which is slightly
      *negative* at :math:`\tau = T` for most :math:`T`; so optax 0.2.8's jitted schedule with a
      fractional power is NaN from step :math:`B + T` on (e.g. ``power=0.5``,
      ``transition_steps=9``, on CPU). fdl computes :math:`(T - \tau)/T`, which is never
      negative, and returns :math:`I` and :math:`E` exactly on the two plateaus (optax's
      :math:`(I - E) + E` can differ from :math:`I` in the last bit). In between, the two agree
      to a couple of float32 roundings.

    >>> sched = polynomial_schedule(1.0, 0.0, power=2, transition_steps=4)
    >>> [round(float(sched(t)), 4) for t in range(6)]
    [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]
    """
    check_real("init_value", init_value)
    check_real("end_value", end_value)
    steps = check_concrete_number("transition_steps", transition_steps)
    begin = check_concrete_non_negative(
        "transition_begin", transition_begin, "the number of steps spent at `init_value`"
    )
    check_positive_exponent(
        "power", power, "a negative power is infinite at the end, and 0 ignores `end_value`"
    )
    dtype = _dtypes.with_default_float(init_value, end_value, power)
    if steps <= 0:
        return constant_schedule(jnp.asarray(init_value, dtype))
    init_value, end_value, power = (prepare(v, dtype) for v in (init_value, end_value, power))

    def schedule(count):
        elapsed = jnp.clip(float_count(count, dtype) - begin, 0, steps)
        frac = (steps - elapsed) / steps  # >= 0 in any rounding
        value = (init_value - end_value) * (frac**power) + end_value
        value = jnp.where(elapsed <= 0, init_value, value)
        return jnp.where(elapsed >= steps, end_value, value)

    return schedule


@names_errors("linear_schedule")
def linear_schedule(
    init_value: Value,
    end_value: Value,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""A straight line from ``init_value`` to ``end_value`` over ``transition_steps`` steps.

    .. math::

        \eta(t) = (I - E)\,\frac{T - \operatorname{clip}(t - B, 0, T)}{T} + E
        \qquad (\text{exactly } I \text{ for } t \le B \text{ and } E \text{ for } t \ge B + T),

    :func:`polynomial_schedule` with ``power=1`` (same arguments, same errors, same difference
    from optax). A warmup from 0 to the peak is ``linear_schedule(0.0, peak, warmup_steps)``.

    >>> sched = linear_schedule(0.0, 1.0, transition_steps=4, transition_begin=1)
    >>> [float(sched(t)) for t in range(7)]
    [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)
