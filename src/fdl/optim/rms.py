r"""RMSProp: dividing by a running root-mean-square of the gradient.

Hinton's RMSProp keeps an exponential moving average of the squared gradient and divides the
gradient by its root, so every coordinate's step has roughly unit scale:

.. math::

    v_t = \text{decay}\; v_{t-1} + (1 - \text{decay})\, g_t^2, \qquad
    u_t = \frac{g_t}{\sqrt{v_t + \epsilon}} .

The *centered* variant divides by an estimate of the standard deviation instead,
:math:`\sqrt{v_t - m_t^2}`, where :math:`m` is the moving average of the gradient itself.
Implementations differ in where :math:`\epsilon` goes (inside the root, as TensorFlow and optax
by default, or outside, as PyTorch), in the initial :math:`v_0`, and in whether momentum is
applied after the division; every choice is an argument here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, check_update_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    identity,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.momentum import trace
from fdl.tree import abs_sq, cast_like, floats, full_like, update_moment, zeros_like
from fdl.tree import bias_correction as _bias_correct  # the argument shadows the name

__all__ = [
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "scale_by_rms",
    "scale_by_stddev",
    "rmsprop",
]

PyTree = Any
Scalar = float | jax.Array


class ScaleByRmsState(NamedTuple):
    """RMSProp's state: the moving average :math:`v` of squared gradients."""

    nu: PyTree


class ScaleByRmsWithCountState(NamedTuple):
    """RMSProp's state with bias correction: the step count :math:`t` (int32) and :math:`v`."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    nu: PyTree


class ScaleByRStdDevState(NamedTuple):
    """Centered RMSProp's state: moving averages of the gradient (:math:`m`) and its square."""

    mu: PyTree
    nu: PyTree


class ScaleByRStdDevWithCountState(NamedTuple):
    """Centered RMSProp's state with bias correction: count :math:`t`, :math:`m` and :math:`v`."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree
    nu: PyTree


def _check_rms_args(decay: Any, eps: Any, initial_scale: Any) -> None:
    check_decay("decay", decay)
    check_non_negative("eps", eps)
    check_non_negative("initial_scale", initial_scale)


def _inverse_root(variance: jax.Array, eps: Any, eps_in_sqrt: bool) -> jax.Array:
    r""":math:`1/\sqrt{x + \epsilon}` (``eps_in_sqrt``) or :math:`1/(\sqrt{x} + \epsilon)`."""
    eps = jnp.asarray(eps, variance.dtype)
    if eps_in_sqrt:
        return jax.lax.rsqrt(variance + eps)
    return 1 / (jnp.sqrt(variance) + eps)


def _times(scaling: PyTree, updates: PyTree) -> PyTree:
    """``scaling * updates`` leaf by leaf, returned in the updates' dtype."""

    def one(s, g):
        dtype = _dtypes.result_type(s, g)
        return (s.astype(dtype) * g.astype(dtype)).astype(g.dtype)

    return jax.tree.map(one, scaling, updates)


@names_errors("scale_by_rms")
def scale_by_rms(
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Divide updates by the root of a moving average of their squares (RMSProp).

    .. math::

        v_t &= \text{decay}\; v_{t-1} + (1 - \text{decay})\, g_t^2, \qquad
        v_0 = \text{initial\_scale} \\
        \hat v_t &= \begin{cases}
            v_t / (1 - \text{decay}^t) & \text{bias\_correction=True} \\
            v_t & \text{otherwise} \end{cases} \\
        u_t &= \begin{cases}
            g_t / \sqrt{\hat v_t + \text{eps}} & \text{eps\_in\_sqrt=True} \\
            g_t / (\sqrt{\hat v_t} + \text{eps}) & \text{eps\_in\_sqrt=False}
        \end{cases}

    With ``decay=b2, eps_in_sqrt=False, bias_correction=True`` this is Adam with ``b1=0``.

    Args:
      decay: decay of the squared-gradient average, in ``[0, 1)``.
      eps: :math:`\epsilon \ge 0`.
      initial_scale: :math:`v_0 \ge 0` (TensorFlow 1 used 1.0).
      eps_in_sqrt: put ``eps`` inside the square root.
      bias_correction: divide :math:`v_t` by :math:`1 - \text{decay}^t` (meaningful only with
        ``initial_scale=0``).

    Returns:
      A transformation with state :class:`ScaleByRmsState` ``(nu,)``, or
      :class:`ScaleByRmsWithCountState` ``(count, nu)`` with ``bias_correction``.

    Raises:
      ValueError: ``decay`` outside ``[0, 1)``, a negative ``eps`` or ``initial_scale``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_rms(decay=0.75, eps=0.0)
    >>> u, _ = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> u.tolist()  # 2 / sqrt(0.25 * 4)
    [2.0]

    References:
      Hinton, Srivastava and Swersky, *Neural Networks for Machine Learning*, lecture 6e, 2012.

    Differs from PyTorch:
      ``torch.optim.RMSprop`` puts ``eps`` outside the root (``eps_in_sqrt=False``) and
      defaults to ``alpha=0.99`` (``decay`` here, default 0.9 as optax).
    """
    _check_rms_args(decay, eps, initial_scale)

    def init(params: PyTree) -> ScaleByRmsState | ScaleByRmsWithCountState:
        nu = full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=jnp.zeros([], jnp.int32), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_rms", updates, params, "nu", state.nu)
        del params, extra_args
        nu = update_moment(updates, state.nu, decay, 2)
        if bias_correction:
            count = safe_increment(state.count)
            nu_hat = _bias_correct(nu, decay, count)
        else:
            nu_hat = nu
        scaling = jax.tree.map(lambda v: _inverse_root(v, eps, eps_in_sqrt), nu_hat)
        nu = cast_like(nu, state.nu)
        if bias_correction:
            return _times(scaling, updates), ScaleByRmsWithCountState(count=count, nu=nu)
        return _times(scaling, updates), ScaleByRmsState(nu=nu)

    return GradientTransformation(init, update)


@names_errors("scale_by_stddev")
def scale_by_stddev(
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""Divide updates by a running standard deviation (centered RMSProp).

    .. math::

        m_t &= \text{decay}\; m_{t-1} + (1 - \text{decay})\, g_t, \qquad m_0 = 0 \\
        v_t &= \text{decay}\; v_{t-1} + (1 - \text{decay})\, g_t^2, \qquad
        v_0 = \text{initial\_scale} \\
        u_t &= \begin{cases}
            g_t / \sqrt{\hat v_t - \hat m_t^2 + \text{eps}} & \text{eps\_in\_sqrt=True} \\
            g_t / (\sqrt{\hat v_t - \hat m_t^2} + \text{eps}) & \text{eps\_in\_sqrt=False}
        \end{cases}

    where :math:`\hat m, \hat v` are :math:`m, v` divided by :math:`1 - \text{decay}^t` with
    ``bias_correction``, and :math:`m, v` otherwise.

    Args:
      decay, eps, initial_scale, eps_in_sqrt, bias_correction: as in :func:`scale_by_rms`.

    Returns:
      A transformation with state :class:`ScaleByRStdDevState` ``(mu, nu)``, or
      :class:`ScaleByRStdDevWithCountState` ``(count, mu, nu)`` with ``bias_correction``.

    Raises:
      ValueError: ``decay`` outside ``[0, 1)``, a negative ``eps`` or ``initial_scale``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_stddev(decay=0.5, eps=0.0)
    >>> u, _ = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> u.tolist()  # 2 / sqrt(0.5 * 4 - (0.5 * 2)**2)
    [2.0]

    References:
      Graves, *Generating Sequences With Recurrent Neural Networks*, 2013, eq. 38-41.

    Differs from PyTorch:
      ``torch.optim.RMSprop(centered=True)`` puts ``eps`` outside the root
      (``eps_in_sqrt=False``).
    """
    _check_rms_args(decay, eps, initial_scale)

    def init(params: PyTree) -> ScaleByRStdDevState | ScaleByRStdDevWithCountState:
        mu = zeros_like(params)
        nu = full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_stddev", updates, params, "nu", state.nu)
        del params, extra_args
        mu = update_moment(updates, state.mu, decay, 1)
        nu = update_moment(updates, state.nu, decay, 2)
        if bias_correction:
            count = safe_increment(state.count)
            mu_hat = _bias_correct(mu, decay, count)
            nu_hat = _bias_correct(nu, decay, count)
        else:
            mu_hat, nu_hat = mu, nu

        def one(m, v):
            dtype = _dtypes.result_type(m, v)
            m, v = m.astype(dtype), v.astype(dtype)
            return _inverse_root(v - abs_sq(m).astype(dtype), eps, eps_in_sqrt)  # |m|^2 is real

        scaling = jax.tree.map(one, mu_hat, nu_hat)
        mu, nu = cast_like(mu, state.mu), cast_like(nu, state.nu)
        if bias_correction:
            new_state = ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        else:
            new_state = ScaleByRStdDevState(mu=mu, nu=nu)
        return _times(scaling, updates), new_state

    return GradientTransformation(init, update)


@names_errors("rmsprop")
def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Scalar | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    r"""RMSProp, optionally centered and with momentum on the scaled step.

    .. math::

        s_t = -\eta_t\, \frac{g_t}{\sqrt{\hat v_t + \epsilon}}, \qquad
        \theta_{t+1} = \theta_t + \begin{cases}
            s_t & \text{momentum=None} \\
            \text{trace}(s)_t & \text{otherwise}
        \end{cases}

    ``chain(scale_by_rms(...) or scale_by_stddev(...) if centered,
    scale_by_learning_rate(learning_rate), trace(momentum, nesterov) or identity())``, as
    optax composes it: the momentum accumulates the already scaled step.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      decay, eps, initial_scale, eps_in_sqrt, bias_correction: as in :func:`scale_by_rms`.
      centered: divide by the running standard deviation (:func:`scale_by_stddev`).
      momentum: :math:`\mu \in [0, 1)` of a :func:`~fdl.optim.momentum.trace` applied after
        the learning rate, or ``None``.
      nesterov: Nesterov momentum.

    Returns:
      The optimizer.

    Raises:
      ValueError: a negative learning rate, an invalid RMS argument, or a momentum outside
      ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> opt = rmsprop(learning_rate=0.1, decay=0.75, eps=0.0)
    >>> updates, _ = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 6) for x in updates.tolist()]  # -0.1 * 2 / sqrt(0.25 * 4)
    [-0.2]

    References:
      Hinton, Srivastava and Swersky, *Neural Networks for Machine Learning*, lecture 6e, 2012.

    Differs from PyTorch:
      ``torch.optim.RMSprop`` (``eps`` outside the root) applies the learning rate *after*
      its momentum buffer, ``buf = momentum * buf + g / (sqrt(v) + eps)``, ``θ -= lr * buf``:
      equal to this for a constant learning rate, different under a schedule.
    """
    if centered:
        scaling = scale_by_stddev(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        )
    else:
        scaling = scale_by_rms(
            decay=decay,
            eps=eps,
            initial_scale=initial_scale,
            eps_in_sqrt=eps_in_sqrt,
            bias_correction=bias_correction,
        )
    if momentum is None:
        accumulate = identity()
    else:
        check_decay("momentum", momentum)  # named as the caller spelled it, not trace's `decay`
        accumulate = trace(decay=momentum, nesterov=nesterov)
    return chain(scaling, scale_by_required_learning_rate(learning_rate), accumulate)
