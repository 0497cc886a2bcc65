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
helpers :func:`update_moment` and :func:`bias_correction` compute these for every optimizer in
:mod:`fdl.optim`.

Every function here works on whole pytrees, keeps the state's dtype from step to step and
returns updates in the gradients' dtype.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    check_decay,
    identity,
    scale_by_learning_rate,
    tree_zeros_like,
)

__all__ = ["TraceState", "trace", "sgd", "update_moment", "bias_correction"]

PyTree = Any


class TraceState(NamedTuple):
    """The trace :math:`m` of past updates (optax's ``TraceState``)."""

    trace: PyTree


def _canonical_dtype(dtype: Any) -> Any:
    """``dtype`` as JAX would store it (float64 becomes float32 unless x64 is on); None stays."""
    return None if dtype is None else jax.dtypes.canonicalize_dtype(dtype)


def _cast_like(tree: PyTree, like: PyTree) -> PyTree:
    """Each leaf of ``tree`` cast to the dtype of the matching leaf of ``like``."""
    return jax.tree.map(lambda x, y: x.astype(jnp.result_type(y)), tree, like)


def _promoted_dtype(*values: Any) -> Any:
    """The dtype JAX's standard lattice gives ``values`` together (bfloat16 and float32 make
    float32). fdl casts to it explicitly, so the code also runs under strict promotion."""
    with jax.numpy_dtype_promotion("standard"):
        return jnp.result_type(*values)


def update_moment(updates: PyTree, moments: PyTree, decay: Any, order: int) -> PyTree:
    r"""One step of the exponential moving average of the ``order``-th power of the updates.

    .. math:: m_t = (1 - \text{decay})\, g_t^{\text{order}} + \text{decay}\; m_{t-1}

    Each term is computed in its own operand's dtype and the sum in the two promoted together
    (JAX's standard rule, written out so it also runs under strict promotion): a bfloat16
    moment fed float32 gradients decays in bfloat16 and accumulates in float32. ``decay`` is
    cast to each operand's dtype. The caller casts the result back to the state's dtype.

    Args:
      updates: the gradients :math:`g_t` (a pytree).
      moments: the previous average :math:`m_{t-1}`, same structure.
      decay: :math:`\beta \in [0, 1)`, a number or a scalar array.
      order: the power :math:`k` (1 for the mean, 2 for the uncentered variance).

    Returns:
      The new average :math:`m_t`, same structure.

    >>> import jax.numpy as jnp
    >>> update_moment(jnp.asarray([2.0]), jnp.asarray([1.0]), 0.5, 2).tolist()
    [2.5]
    """

    def one(g, m):
        power = g if order == 1 else g * g if order == 2 else g**order
        fresh = jnp.asarray(1 - decay, power.dtype) * power
        old = jnp.asarray(decay, m.dtype) * m
        dtype = _promoted_dtype(fresh, old)
        return fresh.astype(dtype) + old.astype(dtype)

    return jax.tree.map(one, updates, moments)


def bias_correction(moment: PyTree, decay: Any, count: jax.Array) -> PyTree:
    r"""Remove the bias of a zero-initialised moving average after ``count`` steps.

    .. math:: \hat m_t = \frac{m_t}{1 - \text{decay}^{\,t}}

    The factor :math:`1 - \text{decay}^t` is computed in float32 (float64 under x64) and only
    then cast to each moment's dtype: in bfloat16, :math:`0.999^t` rounds to 1 for small
    :math:`t` and the factor would be zero.

    Args:
      moment: the average :math:`m_t` (a pytree).
      decay: :math:`\beta`, a number or a scalar array.
      count: the step number :math:`t \ge 1` (int32 scalar).

    Returns:
      :math:`\hat m_t`, same structure and dtypes as ``moment``.

    >>> import jax.numpy as jnp
    >>> m_hat = bias_correction(jnp.asarray([0.1]), 0.9, jnp.asarray(1, jnp.int32))
    >>> [round(x, 6) for x in m_hat.tolist()]  # 0.1 / (1 - 0.9)
    [1.0]
    """
    if isinstance(decay, int | float):  # a Python number: JAX's default float type, as optax
        dtype = jnp.result_type(float)
    else:
        dtype = _promoted_dtype(jnp.float32, decay)
    base = jnp.asarray(decay, dtype)
    factor = 1 - jax.lax.pow(base, jnp.asarray(count).astype(dtype))
    return jax.tree.map(lambda m: m / factor.astype(jnp.result_type(m)), moment)


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
    check_decay(decay, "decay")
    accumulator_dtype = _canonical_dtype(accumulator_dtype)

    def init(params: PyTree) -> TraceState:
        return TraceState(trace=tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra_args):
        del params, extra_args

        def accumulate(g, t):
            decayed = jnp.asarray(decay, t.dtype) * t
            dtype = _promoted_dtype(g, decayed)
            return g.astype(dtype) + decayed.astype(dtype)

        new_trace = jax.tree.map(accumulate, updates, state.trace)
        out = jax.tree.map(accumulate, updates, new_trace) if nesterov else new_trace
        return _cast_like(out, updates), TraceState(trace=_cast_like(new_trace, state.trace))

    return GradientTransformation(init, update)


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
    >>> from fdl.optim.base import apply_updates
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
    step = scale_by_learning_rate(learning_rate)
    if momentum is None:
        accumulate = identity()
    else:
        check_decay(momentum, "momentum")  # named as the caller spelled it, not trace's `decay`
        accumulate = trace(decay=momentum, nesterov=nesterov, accumulator_dtype=accumulator_dtype)
    return chain(accumulate, step)
