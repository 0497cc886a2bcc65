r"""Momentum: remembering past gradients.

A plain gradient step forgets everything but the current gradient. *Momentum* keeps a running
sum of past gradients (a *trace*) and steps along it, which damps oscillations across a narrow
valley and speeds travel along it (Polyak's heavy ball):

.. math::

    m_t = g_t + \mu\, m_{t-1}, \qquad \theta_{t+1} = \theta_t - \eta\, m_t .

*Nesterov's* variant looks one step ahead, stepping along :math:`g_t + \mu\, m_t` instead.

The adaptive optimizers (Adam, RMSProp, Lion, ...) keep *exponential moving averages* (EMAs) of
the gradient and of its square instead of a plain trace:

.. math::

    m_t = \beta\, m_{t-1} + (1 - \beta)\, g_t^k ,

started at :math:`m_0 = 0`, which biases early estimates toward zero by a factor
:math:`1 - \beta^t`; dividing by that factor (*bias correction*) removes the bias. The two
functions :func:`fdl.tree.update_moment` and :func:`fdl.tree.bias_correction` compute these for
every optimizer in :mod:`fdl.optim`.

Every function here works on whole pytrees, keeps the state's dtype from step to step and
returns updates in the gradients' dtype.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_state_dtype, check_update_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    identity,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = ["TraceState", "trace", "EmaState", "ema", "sgd"]

PyTree = Any


class TraceState(NamedTuple):
    """The trace :math:`m` of past updates (optax's ``TraceState``)."""

    trace: PyTree


@names_errors("trace")
def trace(
    decay: float | jax.Array,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Heavy-ball momentum: a decaying sum of past updates.

    .. math::

        m_t &= g_t + \text{decay}\; m_{t-1}, \qquad m_0 = 0 \\
        u_t &= \begin{cases}
            m_t & \text{nesterov=False (Polyak)} \\
            g_t + \text{decay}\; m_t & \text{nesterov=True}
        \end{cases}

    The trace is a *sum*, not an average: with a constant gradient it grows to
    :math:`g / (1 - \text{decay})`.

    Args:
      decay: the momentum :math:`\mu \in [0, 1)`.
      nesterov: look one step ahead (Nesterov's accelerated gradient, in Sutskever et al.'s
        form).
      accumulator_dtype: dtype to store the trace in (default: the parameters' dtype).

    Returns:
      A transformation with state :class:`TraceState` ``(trace,)``.

    Raises:
      ValueError: ``decay`` outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> opt = trace(decay=0.5)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.ones(1), state)  # m = 1
    >>> u, state = opt.update(jnp.ones(1), state)  # m = 1 + 0.5 * 1
    >>> u.tolist()
    [1.5]

    References:
      Polyak, *Some methods of speeding up the convergence of iteration methods*, 1964.
      Sutskever et al., *On the importance of initialization and momentum in deep learning*,
      ICML 2013.

    Differs from PyTorch:
      ``torch.optim.SGD`` folds the same sum into its buffer, ``buf = momentum * buf +
      (1 - dampening) * g``; with ``dampening=0`` (its default) the two agree. Its first step
      copies ``g`` into the buffer, which equals ``g + momentum * 0`` here.
    """
    check_decay("decay", decay)
    accumulator_dtype = _dtypes.canonical(accumulator_dtype)

    def init(params: PyTree) -> TraceState:
        check_state_dtype("accumulator_dtype", accumulator_dtype, params)
        return TraceState(trace=zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("trace", updates, params, "trace", state.trace)
        del params, extra_args

        def accumulate(g, t):
            decayed = jnp.asarray(decay, t.dtype) * t
            dtype = _dtypes.result_type(g, decayed)
            return g.astype(dtype) + decayed.astype(dtype)

        new_trace = jax.tree.map(accumulate, updates, state.trace)
        out = jax.tree.map(accumulate, updates, new_trace) if nesterov else new_trace
        return cast_like(out, updates), TraceState(trace=cast_like(new_trace, state.trace))

    return GradientTransformation(init, update)


class EmaState(NamedTuple):
    """The step count :math:`t` (int32) and the moving average :math:`m` (optax's ``EmaState``)."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    ema: PyTree


@names_errors("ema")
def ema(
    decay: float | jax.Array,
    debias: bool = True,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""An exponential moving average of past updates, optionally bias-corrected.

    .. math::

        m_t = \text{decay}\; m_{t-1} + (1 - \text{decay})\, g_t, \quad m_0 = 0, \qquad
        u_t = \begin{cases}
            m_t / (1 - \text{decay}^t) & \text{debias=True} \\
            m_t & \text{debias=False}
        \end{cases}

    An *average*, where :func:`trace` is a decaying *sum*: with a constant gradient :math:`g`,
    :math:`m_t` rises to :math:`g` (and the debiased :math:`u_t` is :math:`g` from the first
    step), where the trace rises to :math:`g / (1 - \text{decay})`.

    Args:
      decay: :math:`\beta \in [0, 1)`.
      debias: divide by :math:`1 - \beta^t` (Adam's bias correction of the zero start).
      accumulator_dtype: dtype to store :math:`m` in (default: the parameters').

    Returns:
      A transformation with state :class:`EmaState` ``(count, ema)``.

    Raises:
      ValueError: ``decay`` outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> opt = ema(decay=0.5)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([2.0]), state)  # m = 1, debiased 1 / 0.5
    >>> u.tolist(), state.ema.tolist()
    ([2.0], [1.0])
    """
    check_decay("decay", decay)
    accumulator_dtype = _dtypes.canonical(accumulator_dtype)

    def init(params: PyTree) -> EmaState:
        check_state_dtype("accumulator_dtype", accumulator_dtype, params)
        return EmaState(count=jnp.zeros([], jnp.int32), ema=zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("ema", updates, params, "ema", state.ema)
        del params, extra_args
        new_ema = update_moment(updates, state.ema, decay, 1)
        count = safe_increment(state.count)
        out = bias_correction(new_ema, decay, count) if debias else new_ema
        return cast_like(out, updates), EmaState(count=count, ema=cast_like(new_ema, state.ema))

    return GradientTransformation(init, update)


@names_errors("sgd")
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | jax.Array | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional (Nesterov) momentum.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t\, u_t, \qquad
        u_t = \begin{cases}
            g_t & \text{momentum=None} \\
            \text{trace}(g)_t & \text{otherwise (see } \texttt{trace}\text{)}
        \end{cases}

    ``chain(trace(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(lr))``, or
    ``chain(identity(), scale_by_learning_rate(lr))`` without momentum, as optax composes it
    (so the two states compare leaf by leaf).

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule :math:`\eta(t)`.
      momentum: :math:`\mu \in [0, 1)`, or ``None`` for plain SGD.
      nesterov: use Nesterov momentum.
      accumulator_dtype: dtype of the momentum buffer (default: the parameters').

    Returns:
      The optimizer.

    Raises:
      ValueError: a negative learning rate or a momentum outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import apply_updates
    >>> opt = sgd(learning_rate=0.1, momentum=0.9)
    >>> params = {"w": jnp.asarray([1.0])}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({"w": jnp.asarray([2.0])}, state)
    >>> [round(x, 6) for x in apply_updates(params, updates)["w"].tolist()]  # 1 - 0.1 * 2
    [0.8]

    References:
      Robbins and Monro, *A stochastic approximation method*, 1951.

    Differs from PyTorch:
      ``torch.optim.SGD`` multiplies the learning rate into the step *after* the momentum
      buffer, as here, so the two agree for ``dampening=0``; its ``weight_decay`` adds
      :math:`\lambda\theta` to the gradient (coupled L2), which here is
      ``chain(add_decayed_weights(wd), sgd(...))``.
    """
    step = scale_by_required_learning_rate(learning_rate)
    if momentum is None:
        accumulate = identity()
    else:
        check_decay("momentum", momentum)  # named as the caller spelled it, not trace's `decay`
        accumulate = trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    return chain(accumulate, step)
