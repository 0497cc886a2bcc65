r"""Cyclical schedules: interpolation between scaled values, the one-cycle policy, and warm
restarts (SGDR)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_number, check_concrete_number, check_real, check_whole_steps, names_errors
from fdl.optim.base import Schedule
from fdl.optim.schedules._values import Value, float_count, prepare, sorted_phases
from fdl.optim.schedules.decay import warmup_cosine_decay_schedule
from fdl.optim.schedules.piecewise import join_schedules

__all__ = [
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "piecewise_interpolate_schedule",
    "sgdr_schedule",
]

_INTERPOLATIONS = ("linear", "cosine")


def _linear(start: Any, end: Any, pct: Any) -> Any:
    return (end - start) * pct + start  # optax's order of operations


def _cosine(start: Any, end: Any, pct: Any) -> Any:
    return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)  # optax's order


def _interpolated(interpolate_type: str, init_value: Value, phases: Sequence[tuple[int, float]]) -> Schedule:
    """The schedule of :func:`piecewise_interpolate_schedule` from phases ``[(boundary, scale),
    ...]`` in order; two phases may share a boundary (a jump), which a mapping cannot hold."""
    interpolate = _linear if interpolate_type == "linear" else _cosine
    dtype = _dtypes.with_default_float(init_value)
    bounds = [0] + [boundary for boundary, _ in phases]
    values = [jnp.asarray(prepare(init_value, dtype), dtype)]
    for _, scale in phases:
        values.append(values[-1] * scale)  # the running product, in the schedule dtype
    pieces = list(zip(bounds[:-1], bounds[1:], values[:-1], values[1:], strict=True))

    def schedule(count):
        count = jnp.asarray(count)
        value = jnp.full(jnp.shape(count), values[-1], dtype)  # past the last boundary
        for start, end, v_start, v_end in reversed(pieces):
            pct = (float_count(count - start, dtype)) / max(end - start, 1)
            inside = (count >= start) & (count < end)
            value = jnp.where(inside, interpolate(v_start, v_end, pct).astype(dtype), value)
        return jnp.where(count < 0, values[0], value)

    return schedule


def _check_interpolate_type(interpolate_type: Any) -> str:
    if interpolate_type not in _INTERPOLATIONS:
        raise ValueError(f"`interpolate_type` must be 'linear' or 'cosine', got {interpolate_type!r}")
    return interpolate_type


@names_errors("piecewise_interpolate_schedule")
def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: Value,
    boundaries_and_scales: Mapping[int, float] | None = None,
) -> Schedule:
    r"""Values scaled at given steps, as in :func:`piecewise_constant_schedule`, but reached by
    a linear or cosine interpolation from the previous boundary instead of a jump.

    With boundaries :math:`0 = b_0 < b_1 < \ldots < b_n` and scales :math:`s_1, \ldots, s_n`,
    the values at the boundaries are :math:`v_0 = I` and :math:`v_k = v_{k-1} s_k`, and between
    two boundaries, with :math:`p = (t - b_k) / \max(b_{k+1} - b_k, 1)`:

    .. math::

        \eta(t) = \begin{cases}
            v_k + (v_{k+1} - v_k)\, p & \text{linear}, \\
            v_{k+1} + \tfrac12 (v_k - v_{k+1}) (1 + \cos \pi p) & \text{cosine},
        \end{cases}
        \qquad b_k \le t < b_{k+1},

    and :math:`\eta(t) = v_n` from :math:`b_n` on. A boundary at step 0 scales the value from
    the start.

    Args:
      interpolate_type: ``"linear"`` or ``"cosine"``.
      init_value: :math:`I`, the value at step 0.
      boundaries_and_scales: ``{step b_k: scale s_k}`` (any order), or ``None`` (constant).

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: an unknown ``interpolate_type``, a negative scale (as optax), a boundary that
        is not a whole number of steps >= 0, or a ``boundaries_and_scales`` that is not a mapping.

    Differs from optax: before step 0 (a negative count) the value is ``init_value``; optax's
    is 0.

    >>> sched = piecewise_interpolate_schedule("linear", 1.0, {4: 2.0, 6: 0.25})
    >>> [float(sched(t)) for t in range(8)]
    [1.0, 1.25, 1.5, 1.75, 2.0, 1.25, 0.5, 0.5]
    """
    _check_interpolate_type(interpolate_type)
    check_real("init_value", init_value)
    phases = sorted_phases(boundaries_and_scales, "its keys are steps")
    return _interpolated(interpolate_type, init_value, phases)


def _check_onecycle(transition_steps: Any, peak_value: Any, fractions: dict, factors: dict) -> int:
    """Check a one-cycle's arguments; the fractions place boundaries (concrete), the factors
    only scale values (a traced one is accepted unchecked, as every optimizer's)."""
    check_real("peak_value", peak_value)
    steps = check_whole_steps("transition_steps", transition_steps, "the length of the cycle")
    if steps == 0:
        raise ValueError("`transition_steps` must be a positive number of steps, got 0")
    for name, value in fractions.items():
        if not 0.0 <= check_concrete_number(name, value) <= 1.0:
            raise ValueError(f"`{name}` must be a fraction of the cycle in [0, 1], got {value!r}")
    for name, value in factors.items():
        check_real(name, value)
        number = as_number(value)
        if number is not None and not (number > 0 and math.isfinite(number)):
            raise ValueError(f"`{name}` must be a finite number > 0 (it divides the peak), got {value!r}")
    return steps


@names_errors("linear_onecycle_schedule")
def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: Value,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The one-cycle policy with linear phases (Smith & Topin, 2018): up from
    :math:`P/d` to the peak :math:`P`, back down to :math:`P/d`, then down to
    :math:`P/(d f)`.

    With :math:`T` = ``transition_steps``, the three phases end at
    :math:`\lfloor s T \rfloor`, :math:`\lfloor e T \rfloor` and :math:`T`
    (:math:`s` = ``pct_start``, :math:`e` = ``pct_final``); from :math:`T` on the value is
    :math:`P / (d f)`. This is :func:`piecewise_interpolate_schedule` ``("linear", P / d,
    {⌊sT⌋: d, ⌊eT⌋: 1/d, T: 1/f})``.

    Args:
      transition_steps: :math:`T`, the length of the cycle, a whole number of steps > 0.
      peak_value: :math:`P`, reached at step :math:`\lfloor s T \rfloor`.
      pct_start: :math:`s \in [0, 1]`, the fraction of the cycle spent rising.
      pct_final: :math:`e \in [s, 1]`, where the descent back to :math:`P/d` ends.
      div_factor: :math:`d > 0`: the cycle starts at :math:`P/d`.
      final_div_factor: :math:`f > 0`: it ends at :math:`P/(d f)`.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: a ``transition_steps`` that is not a whole number > 0 (as optax), a fraction
        outside [0, 1] or ``pct_final < pct_start``, or a factor that is not a finite number > 0.

    Differs from optax: when two phases end on the same step (a short cycle, ``pct_final`` equal
    to ``pct_start``), fdl keeps every phase (the value jumps there); optax builds a dict whose
    equal keys drop a phase, so its cycle then never reaches the peak.

    References: Smith & Topin (2018), Super-convergence: very fast training of neural networks
    using large learning rates. arXiv:1708.07120.

    >>> sched = linear_onecycle_schedule(10, 1.0, pct_start=0.2, pct_final=0.6, div_factor=4.0,
    ...                                  final_div_factor=8.0)
    >>> [float(sched(t)) for t in range(11)]
    [0.25, 0.625, 1.0, 0.8125, 0.625, 0.4375, 0.25, 0.1953125, 0.140625, 0.0859375, 0.03125]
    """
    steps = _check_onecycle(
        transition_steps,
        peak_value,
        {"pct_start": pct_start, "pct_final": pct_final},
        {"div_factor": div_factor, "final_div_factor": final_div_factor},
    )
    if pct_final < pct_start:
        raise ValueError(
            f"`pct_final` must be >= `pct_start`, got pct_final={pct_final!r}, pct_start={pct_start!r}"
        )
    phases = [
        (int(pct_start * steps), div_factor),
        (int(pct_final * steps), 1.0 / div_factor),
        (steps, 1.0 / final_div_factor),
    ]
    return _interpolated("linear", peak_value / div_factor, phases)


@names_errors("cosine_onecycle_schedule")
def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: Value,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The one-cycle policy with cosine phases (Smith & Topin, 2018; the fastai and PyTorch
    ``OneCycleLR`` default): up from :math:`P/d` to the peak :math:`P` along half a cosine, then
    down to :math:`P/(d f)` along another.

    The rise ends at :math:`\lfloor s T \rfloor` (:math:`s` = ``pct_start``, :math:`T` =
    ``transition_steps``), the fall at :math:`T`: :func:`piecewise_interpolate_schedule`
    ``("cosine", P / d, {⌊sT⌋: d, T: 1/(d f)})``.

    Args:
      transition_steps: :math:`T`, the length of the cycle, a whole number of steps > 0.
      peak_value: :math:`P`.
      pct_start: :math:`s \in [0, 1]`, the fraction of the cycle spent rising.
      div_factor: :math:`d > 0`: the cycle starts at :math:`P/d`.
      final_div_factor: :math:`f > 0`: it ends at :math:`P/(d f)`.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: as :func:`linear_onecycle_schedule`.

    Differs from optax: as :func:`linear_onecycle_schedule` when the rise ends at step
    :math:`T` (``pct_start=1``): fdl rises towards the peak for the whole cycle, then drops to
    :math:`P/(d f)`; optax falls from :math:`P/d` instead.

    >>> sched = cosine_onecycle_schedule(4, 1.0, pct_start=0.5, div_factor=10.0,
    ...                                  final_div_factor=10.0)
    >>> [round(float(sched(t)), 4) for t in range(6)]
    [0.1, 0.55, 1.0, 0.505, 0.01, 0.01]
    """
    steps = _check_onecycle(
        transition_steps,
        peak_value,
        {"pct_start": pct_start},
        {"div_factor": div_factor, "final_div_factor": final_div_factor},
    )
    phases = [(int(pct_start * steps), div_factor), (steps, 1.0 / (div_factor * final_div_factor))]
    return _interpolated("cosine", peak_value / div_factor, phases)


@names_errors("sgdr_schedule")
def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    r"""Stochastic gradient descent with warm restarts (Loshchilov & Hutter, 2017): warmup-cosine
    cycles run one after the other, each restarting from its own warmup.

    Cycle :math:`k` is :func:`warmup_cosine_decay_schedule` ``(**cosine_kwargs[k])``, and it
    starts where the previous one's ``decay_steps`` end: with :math:`D_k` the cycles'
    ``decay_steps``, cycle :math:`k` runs on :math:`[D_0 + \ldots + D_{k-1},\ D_0 + \ldots +
    D_k)` with its count restarted at 0 (:func:`join_schedules`); the last cycle's end value is
    kept after it.

    Args:
      cosine_kwargs: one mapping of :func:`warmup_cosine_decay_schedule`'s arguments
        (``init_value``, ``peak_value``, ``warmup_steps``, ``decay_steps``, and optionally
        ``end_value``, ``exponent``) per cycle, at least one.

    Returns:
      A schedule ``count -> value``.

    Raises:
      ValueError: no cycles, a cycle that is not a mapping, and each cycle's own errors (as
        :func:`warmup_cosine_decay_schedule`), naming the cycle.

    References: Loshchilov & Hutter (2017), SGDR: stochastic gradient descent with warm
    restarts. ICLR.

    >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=1, decay_steps=3)
    >>> sched = sgdr_schedule([cycle, dict(cycle, peak_value=0.5)])
    >>> [round(float(sched(t)), 3) for t in range(7)]
    [0.0, 1.0, 0.5, 0.0, 0.5, 0.25, 0.0]
    """
    schedules, boundaries, start = [], [], 0
    for k, kwargs in enumerate(cosine_kwargs):
        if not isinstance(kwargs, Mapping):
            raise ValueError(
                f"`cosine_kwargs[{k}]` must be a mapping of warmup_cosine_decay_schedule's arguments, got {kwargs!r}"
            )
        try:
            schedules.append(warmup_cosine_decay_schedule(**kwargs))
        except (TypeError, ValueError) as error:
            raise type(error)(f"`cosine_kwargs[{k}]`: {error}") from error
        if schedules[1:]:
            boundaries.append(start)
        start += int(kwargs["decay_steps"])
    if not schedules:
        raise ValueError("`cosine_kwargs` must hold at least one cycle, got none")
    return join_schedules(schedules, boundaries)
