r"""Piecewise schedules: constant pieces scaled at boundaries, and schedules joined end to end."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_real, check_whole_steps, names_errors
from fdl.optim.base import Schedule
from fdl.optim.schedules._values import Value, prepare, sorted_phases

__all__ = ["join_schedules", "piecewise_constant_schedule"]


@names_errors("piecewise_constant_schedule")
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
    check_real("init_value", init_value)
    steps = sorted_phases(boundaries_and_scales, "its keys are the steps of the jumps")
    dtype = _dtypes.with_default_float(init_value)
    init_value = prepare(init_value, dtype)

    def schedule(count):
        count = jnp.asarray(count)
        value = jnp.full(jnp.shape(count), init_value, dtype)
        for boundary, factor in steps:
            value = jnp.where(count < boundary, value, factor * value)
        return value

    return schedule


@names_errors("join_schedules")
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

    >>> from fdl.optim import exponential_decay, linear_schedule
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
    if any(later < earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError(f"`boundaries` must be non-decreasing, got {boundaries!r}")

    def schedule(count):
        count = jnp.asarray(count)
        value = schedules[0](count)
        for boundary, sched in zip(steps, schedules[1:], strict=True):
            value = jnp.where(count < boundary, value, sched(count - boundary))
        return value

    return schedule
