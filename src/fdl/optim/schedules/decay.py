r"""Decaying schedules: exponential and cosine, and a linear warmup followed by a constant, an
exponential or a cosine decay."""

from __future__ import annotations

import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    as_number,
    check_concrete_non_negative,
    check_concrete_number,
    check_positive_exponent,
    check_real,
    check_whole_steps,
    names_errors,
)
from fdl.optim.base import Schedule
from fdl.optim.schedules._values import Value, float_count, prepare
from fdl.optim.schedules.piecewise import join_schedules
from fdl.optim.schedules.polynomial import constant_schedule, linear_schedule

__all__ = [
    "cosine_decay_schedule",
    "exponential_decay",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]


@names_errors("exponential_decay")
def exponential_decay(
    init_value: Value,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Value | None = None,
) -> Schedule:
    r"""Multiply by ``decay_rate`` every ``transition_steps`` steps, smoothly or in stairs.

    With :math:`I` = ``init_value``, :math:`r` = ``decay_rate``, :math:`T` =
    ``transition_steps``, :math:`B` = ``transition_begin``:

    .. math::

        e(t) = \frac{t - B}{T} \quad \left(\text{or } \left\lfloor \frac{t - B}{T}
        \right\rfloor \text{ with } \texttt{staircase}\right), \qquad
        \eta(t) = \begin{cases} I, & t \le B, \\ I\, r^{e(t)}, & t > B. \end{cases}

    With ``end_value`` :math:`E` the decay stops there: :math:`\max(\eta, E)` when
    :math:`r < 1` (a floor), :math:`\min(\eta, E)` when :math:`r > 1` (a ceiling).

    Differs from optax:
      with ``staircase=True``, whole :math:`T` and :math:`B` and an integer count, fdl counts
      the stairs by integer division. optax divides in floating point, which XLA compiles to a
      multiplication by the rounded reciprocal :math:`\operatorname{fl}(1/T)`; under ``jit`` its
      floor then lands one stair late at some multiples of :math:`T` (in float32 on CPU, for
      :math:`T` = 41, 47, 55, ... among 1..200).

    Args:
      init_value: :math:`I`.
      transition_steps: :math:`T`, the number of steps per factor :math:`r`. If :math:`T \le 0`
        the schedule is the constant ``init_value`` (as in optax).
      decay_rate: :math:`r \ge 0` (a concrete number). :math:`r = 0` gives the constant
        ``init_value`` (as in optax).
      transition_begin: :math:`B \ge 0`, the number of steps spent at ``init_value``.
      staircase: decay in whole factors of :math:`r` (a step function) instead of smoothly.
      end_value: optional bound :math:`E` on the decayed value.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a negative ``decay_rate`` or one that is not a concrete number (optax gives
        NaN for a negative rate), a negative ``transition_begin``
        (optax clamps it to 0), or non-numeric ``transition_steps``.

    >>> sched = exponential_decay(1.0, transition_steps=2, decay_rate=0.5, staircase=True)
    >>> [float(sched(t)) for t in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    check_real("init_value", init_value)
    if end_value is not None:
        check_real("end_value", end_value)
    steps = check_concrete_number("transition_steps", transition_steps)
    rate = check_concrete_number("decay_rate", decay_rate)
    if rate < 0:
        raise ValueError(
            f"`decay_rate` must be >= 0 (a negative rate has no real fractional powers), got {decay_rate!r}"
        )
    begin = check_concrete_non_negative(
        "transition_begin", transition_begin, "the number of steps spent at `init_value`"
    )
    dtype = _dtypes.with_default_float(init_value, end_value)
    if steps <= 0 or rate == 0:
        return constant_schedule(jnp.asarray(init_value, dtype))
    init_value, decay_rate = prepare(init_value, dtype), prepare(decay_rate, dtype)
    bound = None
    if end_value is not None:
        end_value = prepare(end_value, dtype)
        bound = jnp.maximum if rate < 1.0 else jnp.minimum

    whole_steps = steps == int(steps) and begin == int(begin)

    def schedule(count):
        count = jnp.asarray(count)
        elapsed = float_count(count, dtype) - begin
        if staircase and whole_steps and jnp.issubdtype(count.dtype, jnp.integer):
            # Integer division: XLA computes a float x / T as x * fl(1/T), whose floor is one
            # stair late at some multiples of T (e.g. T = 41 in float32).
            stairs = (count - int(begin)) // int(steps)
            exponent = stairs.astype(dtype)
        else:
            exponent = elapsed / steps
            if staircase:
                exponent = jnp.floor(exponent)
        value = jnp.where(elapsed <= 0, init_value, init_value * jnp.power(decay_rate, exponent))
        if bound is not None:
            value = bound(value, end_value)
        return value

    return schedule


@names_errors("cosine_decay_schedule")
def cosine_decay_schedule(
    init_value: Value,
    decay_steps: float,
    alpha: Value = 0.0,
    exponent: Value = 1.0,
) -> Schedule:
    r"""Half a cosine from ``init_value`` down to ``alpha * init_value`` (SGDR without restarts).

    With :math:`I` = ``init_value``, :math:`T` = ``decay_steps``, :math:`\alpha` = ``alpha``,
    :math:`p` = ``exponent``:

    .. math::

        c(t) = \frac12\left(1 + \cos\frac{\pi \min(t, T)}{T}\right), \qquad
        \eta(t) = I\left((1 - \alpha)\, c(t)^{p} + \alpha\right).

    :math:`c` falls from 1 to 0 over :math:`T` steps, slowly at both ends and fastest in the
    middle, so :math:`\eta` goes from :math:`I` to :math:`\alpha I` and stays there.
    ``exponent`` > 1 makes the fall earlier and steeper.

    Args:
      init_value: :math:`I`.
      decay_steps: :math:`T > 0`.
      alpha: :math:`\alpha`, the final value as a fraction of ``init_value``.
      exponent: :math:`p > 0`.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: ``decay_steps`` not a positive number (as optax), or a concrete ``exponent``
        <= 0 (optax returns :math:`\infty` from step :math:`T` on for a negative one).

    References: Loshchilov & Hutter (2017), SGDR, ICLR.

    >>> sched = cosine_decay_schedule(1.0, decay_steps=4, alpha=0.1)
    >>> [round(float(sched(t)), 4) for t in range(6)]
    [1.0, 0.8682, 0.55, 0.2318, 0.1, 0.1]
    """
    check_real("init_value", init_value)
    check_real("alpha", alpha)
    steps = check_concrete_number("decay_steps", decay_steps)
    if steps <= 0:
        raise ValueError(f"`decay_steps` must be > 0 (the length of the cosine), got {decay_steps!r}")
    check_positive_exponent(
        "exponent", exponent, "a negative exponent is infinite from `decay_steps` on, and 0 ignores `alpha`"
    )
    dtype = _dtypes.with_default_float(init_value, alpha, exponent)
    init_value, alpha, exponent = (prepare(v, dtype) for v in (init_value, alpha, exponent))
    decay_steps = float(decay_steps)

    def schedule(count):
        elapsed = jnp.minimum(float_count(count, dtype), decay_steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * elapsed / decay_steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


@names_errors("warmup_cosine_decay_schedule")
def warmup_cosine_decay_schedule(
    init_value: Value,
    peak_value: Value,
    warmup_steps: int,
    decay_steps: int,
    end_value: Value = 0.0,
    exponent: Value = 1.0,
) -> Schedule:
    r"""A linear warmup to ``peak_value``, then a cosine decay to ``end_value``.

    With :math:`I` = ``init_value``, :math:`P` = ``peak_value``, :math:`W` = ``warmup_steps``,
    :math:`T` = ``decay_steps`` (the *total* length, warmup included), :math:`E` = ``end_value``:

    .. math::

        \eta(t) = \begin{cases}
            I + (P - I)\,\dfrac{t}{W}, & t < W \quad (\text{computed as }
                (I - P)(1 - t/W) + P), \\[1ex]
            P\left((1 - \alpha)\, c(t - W)^{p} + \alpha\right), & t \ge W,
        \end{cases}
        \qquad \alpha = E / P \ (0 \text{ if } P = 0),

    where :math:`c(s) = \frac12(1 + \cos(\pi \min(s, T - W) / (T - W)))`: the
    :func:`linear_schedule` and the :func:`cosine_decay_schedule` joined at step :math:`W`
    (:func:`join_schedules`). The usual learning-rate recipe for transformers.

    Args:
      init_value: :math:`I`, the value at step 0.
      peak_value: :math:`P`, reached at step ``warmup_steps``.
      warmup_steps: :math:`W \ge 0`.
      decay_steps: :math:`T > W`, the step at which ``end_value`` is reached.
      end_value: :math:`E`, the value from step ``decay_steps`` on.
      exponent: :math:`p > 0` of the cosine.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a ``warmup_steps`` that is not a whole number >= 0 (optax silently shifts the
        cosine for a negative one), or
        ``decay_steps <= warmup_steps`` (optax raises too, but names only the difference).

    >>> sched = warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=6)
    >>> [round(float(sched(t)), 4) for t in range(8)]
    [0.0, 0.5, 1.0, 0.8536, 0.5, 0.1464, 0.0, 0.0]
    """
    for name, value in (("init_value", init_value), ("peak_value", peak_value), ("end_value", end_value)):
        check_real(name, value)
    warmup = check_whole_steps("warmup_steps", warmup_steps, "the length of the warmup")
    total = check_concrete_number("decay_steps", decay_steps)
    if total <= warmup:
        raise ValueError(
            "`decay_steps` is the total length of the schedule, warmup included, so it must be "
            f"greater than `warmup_steps`; got decay_steps={decay_steps!r}, "
            f"warmup_steps={warmup_steps!r}"
        )
    peak = as_number(peak_value)
    if peak is not None:
        alpha = 0.0 if peak == 0.0 else end_value / peak_value
    else:  # a traced peak: decide at run time
        dtype = _dtypes.with_default_float(peak_value, end_value)
        peak_array = jnp.asarray(peak_value, dtype)
        safe_peak = jnp.where(peak_array == 0, jnp.ones_like(peak_array), peak_array)
        alpha = jnp.where(peak_array == 0, jnp.zeros_like(peak_array), end_value / safe_peak)
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, warmup),
            cosine_decay_schedule(peak_value, total - warmup, alpha, exponent),
        ],
        [warmup],
    )


@names_errors("warmup_constant_schedule")
def warmup_constant_schedule(init_value: Value, peak_value: Value, warmup_steps: int) -> Schedule:
    r"""A linear warmup from ``init_value`` to ``peak_value``, then ``peak_value`` for good.

    .. math::

        \eta(t) = \begin{cases}
            I + (P - I)\,\dfrac{t}{W}, & t < W \quad (\text{computed as } (I - P)(1 - t/W) + P), \\
            P, & t \ge W.
        \end{cases}

    Args:
      init_value: :math:`I`, the value at step 0.
      peak_value: :math:`P`, reached at step ``warmup_steps`` and kept.
      warmup_steps: :math:`W`, a whole number of steps >= 0.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a ``warmup_steps`` that is not a whole number >= 0.

    Differs from optax: with ``warmup_steps=0`` the schedule is ``peak_value`` from step 0 (no
    warmup); optax's (a :func:`linear_schedule` of 0 steps) stays at ``init_value`` for good.

    >>> sched = warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
    >>> [float(sched(t)) for t in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    check_real("init_value", init_value)
    check_real("peak_value", peak_value)
    warmup = check_whole_steps("warmup_steps", warmup_steps, "the length of the warmup")
    # join at W: from W on the constant takes over (the linear schedule also ends exactly at P)
    return join_schedules(
        [linear_schedule(init_value, peak_value, warmup), constant_schedule(peak_value)], [warmup]
    )


@names_errors("warmup_exponential_decay_schedule")
def warmup_exponential_decay_schedule(
    init_value: Value,
    peak_value: Value,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Value | None = None,
) -> Schedule:
    r"""A linear warmup to ``peak_value``, then an exponential decay from it.

    .. math::

        \eta(t) = \begin{cases}
            I + (P - I)\,\dfrac{t}{W}, & t < W, \\
            \operatorname{exponential\_decay}(P, K, r, B, \text{staircase}, E)(t - W), & t \ge W,
        \end{cases}

    with :math:`K` = ``transition_steps``, :math:`r` = ``decay_rate``, :math:`B` =
    ``transition_begin`` (counted from the end of the warmup) and :math:`E` = ``end_value``: the
    :func:`linear_schedule` and the :func:`exponential_decay` joined at step :math:`W`
    (:func:`join_schedules`).

    Args:
      init_value: :math:`I`, the value at step 0.
      peak_value: :math:`P`, reached at step ``warmup_steps``, where the decay starts.
      warmup_steps: :math:`W`, a whole number of steps >= 0.
      transition_steps, decay_rate, transition_begin, staircase, end_value: as in
        :func:`exponential_decay`.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a ``warmup_steps`` that is not a whole number >= 0, and the errors of
        :func:`exponential_decay`.

    >>> sched = warmup_exponential_decay_schedule(0.0, 1.0, warmup_steps=2, transition_steps=1,
    ...                                           decay_rate=0.5)
    >>> [float(sched(t)) for t in range(6)]
    [0.0, 0.5, 1.0, 0.5, 0.25, 0.125]
    """
    check_real("init_value", init_value)
    check_real("peak_value", peak_value)
    warmup = check_whole_steps("warmup_steps", warmup_steps, "the length of the warmup")
    decay = exponential_decay(
        peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
    )
    return join_schedules([linear_schedule(init_value, peak_value, warmup), decay], [warmup])
