r"""Monitoring: record measurements of the updates in the optimizer state, as they pass.

:func:`monitor` sits anywhere in a :func:`fdl.optim.chain` and lets the updates through
unchanged, :math:`u = g`, while it stores what its measures make of them, for instance the
global norm before clipping:

.. math:: \text{measurements}[\text{name}] = \mu_\text{name}(g_t)

A measure is a plain function of the updates (stateless), or a transformation whose output is
the measurement and whose state carries over from step to step, such as
:func:`measure_with_ema`, a bias-corrected exponential moving average of a measurement. Read a
measurement back from the state by its name, e.g. ``optax.tree.get(state, "grad_norm")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import check_decay, names_errors
from fdl.optim.base import EmptyState, GradientTransformation, with_extra_args_support
from fdl.optim.momentum import ema
from fdl.optim.stateless import stateless
from fdl.tree import floats

__all__ = ["MonitorState", "monitor", "measure_with_ema", "SnapshotState", "snapshot"]

PyTree = Any
Scalar = float | jax.Array
Measure = Callable[[PyTree], PyTree]


class MonitorState(NamedTuple):
    """:func:`monitor`'s state (optax's fields).

    Attributes:
      measurements: ``{name: measurement}`` of the last updates (zeros before the first).
      measure_states: the states of the measures, in the order of ``measures``.
    """

    measurements: dict[str, PyTree]
    measure_states: tuple[Any, ...]


def _is_transformation(value: Any) -> bool:
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def _of_updates(measure: Measure) -> Callable[[PyTree, PyTree | None], PyTree]:
    """``measure`` as a :func:`stateless` function: of the updates, ignoring the parameters."""

    def measured(updates: PyTree, params: PyTree | None) -> PyTree:
        del params
        return measure(updates)

    return measured


class SnapshotState(NamedTuple):
    """:func:`snapshot`'s state (optax's field).

    Attributes:
      measurement: ``{measure_name: measure(updates)}`` of the last updates (of the
        parameters, before the first).
    """

    measurement: dict[str, PyTree]


@names_errors("snapshot")
def snapshot(measure_name: str, measure: Measure) -> GradientTransformation:
    r"""Keep ``measure`` of the updates that reach this point of a chain in the state.

    .. math::

        u_t \mapsto u_t, \qquad s_t = \{\text{measure\_name}: \text{measure}(u_t)\},
        \qquad s_0 = \{\text{measure\_name}: \text{measure}(\theta_0)\}

    The updates pass unchanged; read the snapshot from the chain's state (its
    ``measurement[measure_name]``). The state at ``init`` measures the parameters, so it has
    the structure of every later state (as optax's).

    Args:
      measure_name: the key of the measurement in the state.
      measure: ``updates -> tree of arrays``, e.g. :func:`fdl.tree.norm`; it also gets the
        parameters at ``init``.

    Returns:
      A transformation with state :class:`SnapshotState`.

    Raises:
      TypeError: ``measure_name`` is not a string, or ``measure`` is not callable.

    >>> import jax.numpy as jnp, fdl
    >>> opt = fdl.optim.chain(fdl.optim.sgd(0.1), snapshot("step_norm", fdl.tree.norm))
    >>> params = jnp.asarray([3.0, 4.0])
    >>> _, state = opt.update(params, opt.init(params))
    >>> float(state[1].measurement["step_norm"])  # |0.1 * (3, 4)|
    0.5
    """
    if not isinstance(measure_name, str):
        raise TypeError(f"`measure_name` must be a string, got {measure_name!r}")
    if not callable(measure):
        raise TypeError(f"`measure` must be a function of the updates, got {measure!r}")

    def init(params):
        return SnapshotState({measure_name: measure(params)})

    def update(updates, state, params=None, **extra_args):
        del state, params, extra_args
        return updates, SnapshotState({measure_name: measure(updates)})

    return GradientTransformation(init, update)


@names_errors("monitor")
def monitor(measures: Mapping[str, GradientTransformation | Measure]) -> GradientTransformation:
    r"""Record measurements of the updates in the state, and pass the updates on unchanged.

    .. math::

        u_t = g_t, \qquad
        \text{measurements}_t[n] = \begin{cases}
            \mu_n(g_t) & \mu_n \text{ a function} \\
            M_n(g_t; s_{n,t-1}) & M_n \text{ a transformation with state } s_n
        \end{cases}

    A transformation measure's ``update`` gets the updates, its state, the parameters and
    the extra keyword arguments, and its *output* is the measurement.

    Args:
      measures: ``{name: measure}``; a measure is a function of the updates (for instance
        :func:`fdl.tree.norm`) or a transformation (for instance :func:`measure_with_ema`).

    Returns:
      A transformation with state :class:`MonitorState` ``(measurements, measure_states)``.
      ``init`` fills ``measurements`` with zeros shaped as the measurements will be (each
      measure applied to the parameters, shapes only), so the state keeps one structure.

    Raises:
      TypeError: ``measures`` not a mapping, or a measure that is neither callable nor a
        transformation with ``init`` and ``update``.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import norm
    >>> opt = monitor({"grad_norm": norm})
    >>> state = opt.init(jnp.zeros(2))
    >>> updates, state = opt.update(jnp.asarray([3.0, 4.0]), state)
    >>> updates.tolist(), float(state.measurements["grad_norm"])
    ([3.0, 4.0], 5.0)

    Differs from optax:
      optax's ``init`` leaves ``measurements`` empty (``{}``) until the first update, so its
      state changes structure and cannot be the carry of a ``jax.lax.scan``; fdl's starts
      with zeros of the measurements' shapes and dtypes (which requires each measure to
      accept the parameters in place of the updates, as :func:`measure_with_ema` does in
      optax too). After an update the states agree leaf for leaf.
    """
    if not isinstance(measures, Mapping):
        raise TypeError(
            "`measures` must be a dict of names to measures (functions of the updates or "
            f"transformations), got {measures!r} ({type(measures).__name__})"
        )
    built: dict[str, GradientTransformation] = {}
    for name, measure in measures.items():
        if _is_transformation(measure):
            built[name] = with_extra_args_support(measure)
        elif callable(measure):
            built[name] = stateless(_of_updates(measure))
        else:
            raise TypeError(
                f"`measures[{name!r}]` must be a function of the updates or a transformation with "
                f"init and update (e.g. fdl.tree.norm or measure_with_ema(fdl.tree.norm, 0.9)), "
                f"got {measure!r}"
            )
    names = tuple(built)

    def measure_all(updates, states, params, extra_args):
        measurements, new_states = {}, []
        for name, state in zip(names, states, strict=True):
            measurements[name], state = built[name].update(updates, state, params, **extra_args)
            new_states.append(state)
        return measurements, tuple(new_states)

    def init(params: PyTree) -> MonitorState:
        states = tuple(built[name].init(params) for name in names)
        shapes, _ = jax.eval_shape(lambda p, s: measure_all(floats(p), s, p, {}), params, states)
        zeros = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), shapes)
        return MonitorState(measurements=zeros, measure_states=states)

    def update(updates, state, params=None, **extra_args):
        measurements, states = measure_all(updates, state.measure_states, params, extra_args)
        return updates, MonitorState(measurements=measurements, measure_states=states)

    return GradientTransformation(init, update)


@names_errors("measure_with_ema")
def measure_with_ema(
    measure: Measure,
    decay: Scalar,
    debias: bool = True,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""A measure for :func:`monitor`: the exponential moving average of ``measure(updates)``.

    .. math::

        m_t = \text{decay}\; m_{t-1} + (1 - \text{decay})\, \mu(g_t), \quad m_0 = 0, \qquad
        \text{output}_t = \begin{cases}
            m_t / (1 - \text{decay}^t) & \text{debias=True} \\
            m_t & \text{debias=False}
        \end{cases}

    (:func:`fdl.optim.ema` applied to the measurement). A boolean measurement (``norm > c``)
    averages to the fraction of recent steps where it held.

    Args:
      measure: :math:`\mu`, a function of the updates; it must also accept the parameters
        (``init`` shapes the average as ``measure(params)``).
      decay: :math:`\beta \in [0, 1)`.
      debias: divide by :math:`1 - \beta^t`.
      accumulator_dtype: dtype to store :math:`m` in (default: the measurement's float dtype).

    Returns:
      A transformation whose output is the averaged measurement, with optax's state
      ``(EmptyState(), EmaState(count, ema))``.

    Raises:
      TypeError: ``measure`` not callable; a non-numeric ``decay``.
      ValueError: ``decay`` outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import norm
    >>> opt = monitor({"norm_ema": measure_with_ema(norm, decay=0.5, debias=False)})
    >>> state = opt.init(jnp.zeros(2))
    >>> _, state = opt.update(jnp.asarray([3.0, 4.0]), state)  # 0.5 * 0 + 0.5 * 5
    >>> float(state.measurements["norm_ema"])
    2.5

    Differs from optax:
      The average of a boolean or integer measurement is a float from ``init`` on (optax's
      starts in the measurement's dtype and turns float after the first update), and is
      returned in the default float dtype (optax's, with an ``accumulator_dtype``, in that
      dtype).
    """
    if not callable(measure):
        raise TypeError(f"`measure` must be a function of the updates (e.g. fdl.tree.norm), got {measure!r}")
    check_decay("decay", decay)
    average = ema(decay, debias=debias, accumulator_dtype=accumulator_dtype)

    def init(params: PyTree) -> tuple[EmptyState, Any]:
        return EmptyState(), average.init(measure(params))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        output, ema_state = average.update(measure(updates), state[1])
        return output, (EmptyState(), ema_state)

    return GradientTransformation(init, update)
