r"""Learning-rate schedules: a hyperparameter as a function of the step count.

A *schedule* is a pure function :math:`t \mapsto \eta(t)` of the step count
:math:`t = 0, 1, 2, \ldots` (the number of updates already applied). Give one to any optimizer
in place of a constant learning rate: :func:`~fdl.optim.base.scale_by_schedule` keeps the count
in the optimizer state (int32) and evaluates the schedule at it *before* incrementing, so the
first update uses :math:`\eta(0)`.

**Why decay.** Stochastic gradient descent converges to a minimum only if the steps shrink
(Robbins & Monro, 1951: :math:`\sum_t \eta_t = \infty`, :math:`\sum_t \eta_t^2 < \infty`);
with a constant rate the iterates keep bouncing in a noise ball of radius
:math:`\propto \eta`. In practice one trains with a large rate to travel fast, then lowers it to
settle: in steps (:func:`piecewise_constant_schedule`, He et al., 2016), smoothly
(:func:`exponential_decay`, :func:`polynomial_schedule`) or along half a cosine
(:func:`cosine_decay_schedule`, Loshchilov & Hutter, 2017).

**Why warm up.** Early in training the gradients are large and Adam's second-moment estimate
is built from few samples, so a large first step can throw the weights far away. A short linear
ramp from a small value to the peak (Goyal et al., 2017) avoids that:
:func:`warmup_cosine_decay_schedule` is the usual recipe for transformers, and
:func:`join_schedules` builds any other sequence of phases.

**The contract.** Every schedule here

* takes the count as a Python int or an integer array (an int32 scalar from the optimizer
  state, or ``jnp.arange(n)`` to tabulate a whole schedule at once), and works under
  ``jax.jit``, ``jax.vmap`` and ``lax.scan``;
* returns a floating array shaped like the count, in the *schedule dtype*: the values'
  dtypes (``init_value``, ``end_value``, ...) promoted with JAX's default float type, which is
  float32 (float64 with ``jax_enable_x64``). Python numbers enter as weak types, so they are
  rounded once, as in optax;
* evaluates its formula in the same order of floating-point operations as optax 0.2.8, so
  fdl's and optax's schedules agree to the last bit or two (tested at every step).

**Differs from optax.** optax returns some values unchanged (``constant_schedule(5)(0)`` is the
Python int ``5``); fdl always returns an array of the schedule dtype. Where optax silently
accepts a configuration that cannot be what was meant (a negative ``transition_begin``, which it
clamps to 0; a ``decay_rate`` of 0, which it turns into a constant schedule; a negative
``warmup_steps``; more boundaries than schedules, which its ``zip`` drops), fdl raises a
``ValueError`` naming the argument and its value. Each function's docstring lists its own cases.

References
----------
* Robbins & Monro (1951). A stochastic approximation method. Ann. Math. Statist. 22(3).
* He, Zhang, Ren & Sun (2016). Deep residual learning for image recognition. CVPR.
* Loshchilov & Hutter (2017). SGDR: stochastic gradient descent with warm restarts. ICLR.
* Goyal et al. (2017). Accurate, large minibatch SGD: training ImageNet in 1 hour.
  arXiv:1706.02677.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    as_number,
    check_concrete_non_negative,
    check_concrete_number,
    check_positive_exponent,
    check_whole_steps,
)
from fdl.optim.base import Schedule

__all__ = [
    "constant_schedule",
    "linear_schedule",
    "polynomial_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "piecewise_constant_schedule",
    "join_schedules",
]

Value = Any  # a Python number, a NumPy scalar or a (possibly traced) JAX array

# -------------------------------------------------------------------------------------- helpers


def _prepare(value: Value, dtype: jnp.dtype) -> Value:
    """Keep a Python number as is (a weak type, rounded once, as optax does); cast arrays."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return jnp.asarray(value, dtype)


def _float_count(count: Any, dtype: jnp.dtype) -> jax.Array:
    """The step count as an array of the schedule dtype."""
    return jnp.asarray(count).astype(dtype)


# ------------------------------------------------------------------------------------ schedules


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
    dtype = _dtypes.with_default_float(value)
    value = _prepare(value, dtype)

    def schedule(count):
        return jnp.full(jnp.shape(count), value, dtype)

    return schedule


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
    init_value, end_value, power = (_prepare(v, dtype) for v in (init_value, end_value, power))

    def schedule(count):
        elapsed = jnp.clip(_float_count(count, dtype) - begin, 0, steps)
        frac = (steps - elapsed) / steps  # >= 0 in any rounding
        value = (init_value - end_value) * (frac**power) + end_value
        value = jnp.where(elapsed <= 0, init_value, value)
        return jnp.where(elapsed >= steps, end_value, value)

    return schedule


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
      decay_rate: :math:`r > 0` (a concrete number).
      transition_begin: :math:`B \ge 0`, the number of steps spent at ``init_value``.
      staircase: decay in whole factors of :math:`r` (a step function) instead of smoothly.
      end_value: optional bound :math:`E` on the decayed value.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a ``decay_rate`` that is not a positive concrete number (optax turns 0 into a
        constant schedule and gives NaN for a negative rate), a negative ``transition_begin``
        (optax clamps it to 0), or non-numeric ``transition_steps``.

    >>> sched = exponential_decay(1.0, transition_steps=2, decay_rate=0.5, staircase=True)
    >>> [float(sched(t)) for t in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    steps = check_concrete_number("transition_steps", transition_steps)
    rate = check_concrete_number("decay_rate", decay_rate)
    if rate <= 0:
        raise ValueError(
            "`decay_rate` must be > 0 (for a constant schedule use constant_schedule; a negative "
            f"rate has no real fractional powers), got {decay_rate!r}"
        )
    begin = check_concrete_non_negative(
        "transition_begin", transition_begin, "the number of steps spent at `init_value`"
    )
    dtype = _dtypes.with_default_float(init_value, end_value)
    if steps <= 0:
        return constant_schedule(jnp.asarray(init_value, dtype))
    init_value, decay_rate = _prepare(init_value, dtype), _prepare(decay_rate, dtype)
    bound = None
    if end_value is not None:
        end_value = _prepare(end_value, dtype)
        bound = jnp.maximum if rate < 1.0 else jnp.minimum

    whole_steps = steps == int(steps) and begin == int(begin)

    def schedule(count):
        count = jnp.asarray(count)
        elapsed = _float_count(count, dtype) - begin
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


def cosine_decay_schedule(
    init_value: Value,
    decay_steps: int,
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
    steps = check_concrete_number("decay_steps", decay_steps)
    if steps <= 0:
        raise ValueError(
            f"`decay_steps` must be > 0 (the length of the cosine), got {decay_steps!r}"
        )
    check_positive_exponent(
        "exponent", exponent, "a negative exponent is infinite from `decay_steps` on, and 0 "
        "ignores `alpha`"
    )
    dtype = _dtypes.with_default_float(init_value, alpha, exponent)
    init_value, alpha, exponent = (_prepare(v, dtype) for v in (init_value, alpha, exponent))
    decay_steps = float(decay_steps)

    def schedule(count):
        elapsed = jnp.minimum(_float_count(count, dtype), decay_steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * elapsed / decay_steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


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


def piecewise_constant_schedule(
    init_value: Value,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    r"""Step decay: multiply the value by a factor at each of some given steps.

    With boundaries :math:`b_1 < b_2 < \ldots` and scales :math:`s_1, s_2, \ldots`:

    .. math:: \eta(t) = I \prod_{i:\ t \ge b_i} s_i

    (the factors are applied in increasing order of :math:`b_i`). ``{30: 0.1, 60: 0.1}`` is the
    classic ImageNet recipe: divide by 10 at epochs 30 and 60 (He et al., 2016).

    Args:
      init_value: :math:`I`, the value before the first boundary.
      boundaries_and_scales: a mapping ``{step b_i: scale s_i}``, or ``None`` (constant).

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a negative scale (as optax), a boundary that is not a whole number of steps
        >= 0 (optax silently applies a negative one from step 0), or a
        ``boundaries_and_scales`` that is not a mapping.

    >>> sched = piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.1})
    >>> [round(float(sched(t)), 4) for t in range(6)]
    [1.0, 1.0, 0.5, 0.5, 0.05, 0.05]
    """
    if boundaries_and_scales is None:
        boundaries_and_scales = {}
    if not isinstance(boundaries_and_scales, Mapping):
        raise ValueError(
            "`boundaries_and_scales` must be a mapping {step: scale} or None, got "
            f"{boundaries_and_scales!r}"
        )
    steps = []
    for boundary, factor in boundaries_and_scales.items():
        step = check_whole_steps(
            "boundaries_and_scales", boundary, "its keys are the steps of the jumps"
        )
        if check_concrete_number("boundaries_and_scales", factor) < 0:
            raise ValueError(
                "`boundaries_and_scales` scales must be >= 0, got scale "
                f"{factor!r} at step {boundary!r}"
            )
        steps.append((step, factor))
    steps.sort(key=lambda item: item[0])
    dtype = _dtypes.with_default_float(init_value)
    init_value = _prepare(init_value, dtype)

    def schedule(count):
        count = jnp.asarray(count)
        value = jnp.full(jnp.shape(count), init_value, dtype)
        for boundary, factor in steps:
            value = jnp.where(count < boundary, value, factor * value)
        return value

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Run schedules one after the other, each restarting its count at its boundary.

    With schedules :math:`\eta_0, \ldots, \eta_n` and boundaries :math:`b_1 \le \ldots \le b_n`
    (and :math:`b_0 = 0`):

    .. math:: \eta(t) = \eta_k(t - b_k) \quad \text{for } b_k \le t < b_{k+1}.

    Args:
      schedules: :math:`n + 1` schedules (functions of the count).
      boundaries: :math:`n` non-decreasing steps (whole numbers >= 0) at which the next
        schedule takes over.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: no schedules, a number of boundaries other than ``len(schedules) - 1``
        (optax silently drops the extra schedules or boundaries), a non-callable schedule, or
        boundaries that are not whole numbers >= 0 in non-decreasing order.

    >>> warmup = linear_schedule(0.0, 1.0, transition_steps=2)
    >>> decay = exponential_decay(1.0, transition_steps=1, decay_rate=0.5)
    >>> sched = join_schedules([warmup, decay], boundaries=[2])
    >>> [float(sched(t)) for t in range(5)]
    [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    schedules = list(schedules)
    boundaries = list(boundaries)
    if not schedules:
        raise ValueError("`schedules` must hold at least one schedule, got none")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            "`boundaries` must have one entry fewer than `schedules` (each boundary starts the "
            f"next schedule), got {len(schedules)} schedules and {len(boundaries)} boundaries "
            f"{boundaries!r}"
        )
    for i, sched in enumerate(schedules):
        if not callable(sched):
            raise ValueError(f"`schedules[{i}]` must be a schedule (a callable), got {sched!r}")
    why = "the steps at which the next schedule starts"
    steps = [check_whole_steps("boundaries", boundary, why) for boundary in boundaries]
    if any(later < earlier for earlier, later in zip(steps, steps[1:])):
        raise ValueError(f"`boundaries` must be non-decreasing, got {boundaries!r}")

    def schedule(count):
        count = jnp.asarray(count)
        value = schedules[0](count)
        for boundary, sched in zip(steps, schedules[1:], strict=True):
            value = jnp.where(count < boundary, value, sched(count - boundary))
        return value

    return schedule

