r"""``torch.optim``'s SGD, RMSprop, Adagrad, Adam and AdamW, composed from fdl's atoms (see
:mod:`fdl.optim.torch` for the conventions they follow)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    as_number,
    check_decay,
    check_learning_rate,
    check_non_negative,
    check_unit_interval,
    names_errors,
)
from fdl.optim.adam import scale_by_adam
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    identity,
    scale_by_required_learning_rate,
)
from fdl.optim.momentum import trace
from fdl.optim.rms import scale_by_rms, scale_by_stddev
from fdl.optim.torch.atoms import dampened_trace, scale_by_rss
from fdl.optim.weight_decay import add_decayed_weights
from fdl.tree import floats

__all__ = ["adagrad", "adam", "adamw", "rmsprop", "sgd"]

PyTree = Any
Scalar = float | jax.Array


def _is_zero(value: Any) -> bool:
    """True for a concrete zero (a traced value or a schedule is never taken for zero)."""
    return not callable(value) and as_number(value) == 0.0


def _weight_decay(weight_decay: ScalarOrSchedule, name: str) -> GradientTransformation:
    r"""``u + weight_decay * params``, or the identity for a concrete 0.

    First in a chain it is torch's coupled L2 decay (added to the gradient), after the Adam
    scaling AdamW's decoupled one. Its state is ``EmptyState`` either way (a scheduled decay
    adds a count), so an optimizer's state has the same structure for every ``weight_decay``.
    """
    check_learning_rate("weight_decay", weight_decay)
    if _is_zero(weight_decay):
        return identity()
    inner = add_decayed_weights(weight_decay)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        if params is None:
            raise ValueError(
                f"fdl.optim.torch.{name} with weight_decay={weight_decay!r} adds "
                "weight_decay * params to the updates, so it needs the parameters: call "
                "`update(grads, state, params)`"
            )
        return inner.update(updates, state, params, **extra_args)

    return GradientTransformation(inner.init, update)


@names_errors("fdl.optim.torch.sgd")
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Scalar = 0.0,
    dampening: Scalar = 0.0,
    nesterov: bool = False,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformation:
    r"""``torch.optim.SGD``: SGD with coupled weight decay, dampened (Nesterov) momentum.

    .. math::

        g_t &\leftarrow g_t + \lambda\, \theta_t \\
        b_1 &= g_1, \qquad b_t = \mu\, b_{t-1} + (1 - d)\, g_t \\
        \theta_{t+1} &= \theta_t - \eta_t \begin{cases}
            g_t & \mu = 0 \\ b_t & \texttt{nesterov=False} \\ g_t + \mu\, b_t &
            \texttt{nesterov=True} \end{cases}

    ``chain(add_decayed_weights(λ) or identity(), trace(μ, nesterov) if d = 0 else
    dampened_trace(μ, d, nesterov), or identity() if μ = 0, scale_by_learning_rate(η))``.

    Args:
      learning_rate: :math:`\eta \ge 0` (torch's ``lr``), a number or a schedule.
      momentum: :math:`\mu \in [0, 1)`.
      dampening: :math:`d \in [0, 1]`; ignored without momentum, as in torch.
      nesterov: Nesterov momentum (needs :math:`\mu > 0` and :math:`d = 0`, as in torch).
      weight_decay: :math:`\lambda \ge 0`, coupled (added to the gradient).

    Returns:
      The optimizer; its state is ``(EmptyState, momentum state, learning-rate state)``, the
      momentum state being ``EmptyState`` (:math:`\mu = 0`),
      :class:`~fdl.optim.momentum.TraceState` (:math:`d = 0`) or
      :class:`DampenedTraceState`.

    Raises:
      ValueError: an invalid argument, ``nesterov`` with :math:`\mu = 0` or :math:`d \ne 0`,
        or (in ``update``) a nonzero ``weight_decay`` without ``params``.

    References:
      Sutskever et al., *On the importance of initialization and momentum in deep learning*,
      ICML 2013. PyTorch documentation, ``torch.optim.SGD``.

    Differs from optax / fdl: :func:`fdl.optim.momentum.sgd` has no dampening and no weight
    decay (``momentum=None`` there is :math:`\mu = 0` here); for :math:`d = 0,\ \lambda = 0`
    the two are the same optimizer.

    >>> import jax.numpy as jnp
    >>> opt = sgd(learning_rate=0.1, momentum=0.9, weight_decay=0.5)
    >>> params = jnp.asarray([2.0])
    >>> updates, state = opt.update(jnp.asarray([1.0]), opt.init(params), params)
    >>> [round(x, 6) for x in updates.tolist()]  # -0.1 * (1 + 0.5 * 2)
    [-0.2]
    """
    check_learning_rate("learning_rate", learning_rate)
    check_decay("momentum", momentum)
    check_unit_interval("dampening", dampening)
    if nesterov and (_is_zero(momentum) or not _is_zero(dampening)):
        raise ValueError(
            "Nesterov momentum requires a momentum > 0 and zero dampening (as in torch), got "
            f"momentum={momentum!r}, dampening={dampening!r}"
        )
    if _is_zero(momentum):
        accumulate = identity()
    elif _is_zero(dampening):
        accumulate = trace(decay=momentum, nesterov=nesterov)
    else:
        accumulate = dampened_trace(momentum, dampening, nesterov)
    return chain(
        _weight_decay(weight_decay, "sgd"),
        accumulate,
        scale_by_required_learning_rate(learning_rate),
    )


@names_errors("fdl.optim.torch.rmsprop")
def rmsprop(
    learning_rate: ScalarOrSchedule = 1e-2,
    alpha: Scalar = 0.99,
    eps: Scalar = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    momentum: Scalar = 0.0,
    centered: bool = False,
) -> GradientTransformation:
    r"""``torch.optim.RMSprop``: ``eps`` outside the root, momentum before the learning rate.

    .. math::

        g_t &\leftarrow g_t + \lambda\, \theta_t \\
        v_t &= \alpha\, v_{t-1} + (1 - \alpha)\, g_t^2, \qquad v_0 = 0 \\
        m_t &= \alpha\, m_{t-1} + (1 - \alpha)\, g_t, \qquad m_0 = 0
            \quad (\texttt{centered} \text{ only}) \\
        s_t &= \frac{g_t}{\sqrt{v_t - m_t^2} + \epsilon}
            \quad (\text{or } \sqrt{v_t} \text{ if not centered}) \\
        b_t &= \mu\, b_{t-1} + s_t, \qquad b_0 = 0 \\
        \theta_{t+1} &= \theta_t - \eta_t\, b_t \quad (\theta_t - \eta_t\, s_t \text{ if }
            \mu = 0)

    ``chain(add_decayed_weights(λ) or identity(), scale_by_rms(α, ε, 0, eps_in_sqrt=False) or
    scale_by_stddev(...) if centered, trace(μ) or identity(), scale_by_learning_rate(η))``.

    Args:
      learning_rate: :math:`\eta \ge 0` (torch's ``lr``), a number or a schedule.
      alpha: :math:`\alpha \in [0, 1)`, the decay of the averages.
      eps: :math:`\epsilon \ge 0`, outside the square root.
      weight_decay: :math:`\lambda \ge 0`, coupled.
      momentum: :math:`\mu \in [0, 1)`.
      centered: divide by the running standard deviation instead of the RMS.

    Returns:
      The optimizer; its state is ``(EmptyState, ScaleByRmsState(nu)`` or
      ``ScaleByRStdDevState(mu, nu), TraceState(trace)`` or ``EmptyState, EmptyState)``.

    Raises:
      ValueError: an invalid argument, or (in ``update``) a nonzero ``weight_decay`` without
        ``params``.

    References:
      Hinton, Srivastava and Swersky, *Neural Networks for Machine Learning*, lecture 6e, 2012.
      Graves, *Generating sequences with recurrent neural networks*, 2013 (the centered form).
      PyTorch documentation, ``torch.optim.RMSprop``.

    Differs from optax / fdl: :func:`fdl.optim.rms.rmsprop` defaults to ``decay=0.9`` and
    puts :math:`\epsilon` inside the root, :math:`g / \sqrt{v + \epsilon}`; and its momentum
    accumulates the step *after* the learning rate, :math:`b_t = \mu b_{t-1} - \eta_t s_t`,
    :math:`\theta_{t+1} = \theta_t + b_t`, which equals torch's for a constant :math:`\eta`
    and differs under a schedule.

    >>> import jax.numpy as jnp
    >>> opt = rmsprop(learning_rate=0.1, alpha=0.75, eps=0.0)
    >>> updates, _ = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 6) for x in updates.tolist()]  # -0.1 * 2 / sqrt(0.25 * 4)
    [-0.2]
    """
    check_learning_rate("learning_rate", learning_rate)
    check_decay("alpha", alpha)
    check_non_negative("eps", eps)
    check_decay("momentum", momentum)
    scaling = scale_by_stddev if centered else scale_by_rms
    return chain(
        _weight_decay(weight_decay, "rmsprop"),
        scaling(decay=alpha, eps=eps, initial_scale=0.0, eps_in_sqrt=False),
        identity() if _is_zero(momentum) else trace(decay=momentum),
        scale_by_required_learning_rate(learning_rate),
    )


@names_errors("fdl.optim.torch.adagrad")
def adagrad(
    learning_rate: ScalarOrSchedule = 1e-2,
    lr_decay: Scalar = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    initial_accumulator_value: Scalar = 0.0,
    eps: Scalar = 1e-10,
) -> GradientTransformation:
    r"""``torch.optim.Adagrad``: ``eps`` outside the root, a decaying learning rate.

    .. math::

        g_t &\leftarrow g_t + \lambda\, \theta_t \\
        G_t &= G_{t-1} + g_t^2, \qquad G_0 = \text{initial\_accumulator\_value} \\
        \theta_{t+1} &= \theta_t - \frac{\eta}{1 + (t - 1)\, \text{lr\_decay}}\,
            \frac{g_t}{\sqrt{G_t} + \epsilon}, \qquad t = 1, 2, \ldots

    ``chain(add_decayed_weights(λ) or identity(), scale_by_rss(G_0, ε),
    scale_by_learning_rate(t ↦ η(t) / (1 + t·lr_decay)))``, with :func:`scale_by_rss` of this
    module and the schedule evaluated at the count :math:`t - 1 = 0, 1, \ldots`.

    Args:
      learning_rate: :math:`\eta \ge 0` (torch's ``lr``), a number or a schedule.
      lr_decay: :math:`\ge 0`, the learning rate's hyperbolic decay.
      weight_decay: :math:`\lambda \ge 0`, coupled.
      initial_accumulator_value: :math:`G_0 \ge 0`.
      eps: :math:`\epsilon \ge 0`, outside the root.

    Returns:
      The optimizer; its state is ``(EmptyState, ScaleByRssState(sum_of_squares),
      EmptyState`` or ``ScaleByScheduleState(count))`` (the count when ``lr_decay`` or the
      learning rate needs the step).

    Raises:
      ValueError: an invalid argument, or (in ``update``) a nonzero ``weight_decay`` without
        ``params``.

    References:
      Duchi, Hazan and Singer, *Adaptive subgradient methods for online learning and
      stochastic optimization*, JMLR 2011. PyTorch documentation, ``torch.optim.Adagrad``.

    Differs from optax / fdl: :func:`fdl.optim.adagrad.adagrad` computes
    :math:`g_t / \sqrt{G_t + \epsilon}` with :math:`G_0 = 0.1`, :math:`\epsilon = 10^{-7}`,
    and has no ``lr_decay`` (use a schedule) and no weight decay.

    >>> import jax.numpy as jnp
    >>> opt = adagrad(learning_rate=1.0, lr_decay=1.0, eps=0.0)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([3.0]), state)  # -1 * 3 / 3
    >>> u, state = opt.update(jnp.asarray([4.0]), state)  # -(1 / 2) * 4 / 5
    >>> [round(x, 6) for x in u.tolist()]
    [-0.4]
    """
    check_learning_rate("learning_rate", learning_rate)
    check_non_negative("lr_decay", lr_decay)
    if _is_zero(lr_decay):
        rate = learning_rate
    else:

        def rate(count: jax.Array) -> jax.Array:
            value = learning_rate(count) if callable(learning_rate) else learning_rate
            dtype = _dtypes.result_type(value, jnp.result_type(float))  # float32, or float64 (x64)
            steps = jnp.asarray(count).astype(dtype)  # t - 1
            return jnp.asarray(value, dtype) / (1 + steps * lr_decay)

    return chain(
        _weight_decay(weight_decay, "adagrad"),
        scale_by_rss(initial_accumulator_value=initial_accumulator_value, eps=eps),
        scale_by_required_learning_rate(rate),
    )


@names_errors("fdl.optim.torch.adam")
def adam(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
) -> GradientTransformation:
    r"""``torch.optim.Adam``: Adam with coupled (L2) weight decay.

    .. math::

        g_t &\leftarrow g_t + \lambda\, \theta_t \\
        m_t &= b_1 m_{t-1} + (1 - b_1)\, g_t, \qquad v_t = b_2 v_{t-1} + (1 - b_2)\, g_t^2 \\
        \theta_{t+1} &= \theta_t - \frac{\eta_t}{1 - b_1^t}\,
            \frac{m_t}{\sqrt{v_t} / \sqrt{1 - b_2^t} + \epsilon}

    ``chain(add_decayed_weights(λ) or identity(), scale_by_adam(b1, b2, eps),
    scale_by_learning_rate(η))``: the decay term enters the moments, so it is rescaled with the
    gradient (this is *not* AdamW; see :func:`adamw`).

    Args:
      learning_rate: :math:`\eta \ge 0` (torch's ``lr``), a number or a schedule.
      b1, b2: the moments' decays in ``[0, 1)`` (torch's ``betas``).
      eps: :math:`\epsilon \ge 0`, outside the root.
      weight_decay: :math:`\lambda \ge 0`, coupled.

    Returns:
      The optimizer; its state is ``(EmptyState, ScaleByAdamState(count, mu, nu),
      EmptyState)``.

    Raises:
      ValueError: an invalid argument, or (in ``update``) a nonzero ``weight_decay`` without
        ``params``.

    References:
      Kingma and Ba, *Adam: a method for stochastic optimization*, ICLR 2015. PyTorch
      documentation, ``torch.optim.Adam``.

    Differs from optax / fdl: :func:`fdl.optim.adam.adam` computes the same update as
    :math:`\hat m_t / (\sqrt{\hat v_t} + \epsilon)` (equal in exact arithmetic) and has no
    weight decay; the defaults match (optax's ``learning_rate`` has none).

    >>> import jax.numpy as jnp
    >>> opt = adam(learning_rate=0.1)
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in updates.tolist()]  # the first step has size lr
    [-0.1]
    """
    check_learning_rate("learning_rate", learning_rate)
    return chain(
        _weight_decay(weight_decay, "adam"),
        scale_by_adam(b1=b1, b2=b2, eps=eps),
        scale_by_required_learning_rate(learning_rate),
    )


@names_errors("fdl.optim.torch.adamw")
def adamw(
    learning_rate: ScalarOrSchedule = 1e-3,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-2,
) -> GradientTransformation:
    r"""``torch.optim.AdamW``: Adam with decoupled weight decay.

    .. math::

        m_t &= b_1 m_{t-1} + (1 - b_1)\, g_t, \qquad v_t = b_2 v_{t-1} + (1 - b_2)\, g_t^2 \\
        \theta_{t+1} &= \theta_t - \eta_t \left(
            \frac{m_t / (1 - b_1^t)}{\sqrt{v_t / (1 - b_2^t)} + \epsilon}
            + \lambda\, \theta_t \right)

    ``chain(scale_by_adam(b1, b2, eps), add_decayed_weights(λ), scale_by_learning_rate(η))``.
    torch shrinks first, :math:`\theta \leftarrow \theta (1 - \eta\lambda)`, then takes the Adam
    step; since the Adam step does not depend on :math:`\theta`, that is the same update
    (rounded differently).

    Args:
      learning_rate: :math:`\eta \ge 0` (torch's ``lr``), a number or a schedule.
      b1, b2: the moments' decays in ``[0, 1)`` (torch's ``betas``).
      eps: :math:`\epsilon \ge 0`, outside the root.
      weight_decay: :math:`\lambda \ge 0`, decoupled (torch's default 1e-2).

    Returns:
      The optimizer; its state is ``(ScaleByAdamState(count, mu, nu), EmptyState,
      EmptyState)``.

    Raises:
      ValueError: an invalid argument, or (in ``update``) a nonzero ``weight_decay`` without
        ``params``.

    References:
      Loshchilov and Hutter, *Decoupled weight decay regularization*, ICLR 2019. PyTorch
      documentation, ``torch.optim.AdamW``.

    Differs from optax / fdl: :func:`fdl.optim.adam.adamw` is the same chain with optax's
    default ``weight_decay=1e-4`` (and ``eps_root``, ``mu_dtype``, ``mask``, ``nesterov``).

    >>> import jax.numpy as jnp
    >>> opt = adamw(learning_rate=0.1, weight_decay=0.5)
    >>> params = jnp.asarray([2.0])
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(params), params)
    >>> [round(x, 4) for x in updates.tolist()]  # -0.1 * (1 + 0.5 * 2)
    [-0.2]
    """
    check_learning_rate("learning_rate", learning_rate)
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps),
        _weight_decay(weight_decay, "adamw"),
        scale_by_required_learning_rate(learning_rate),
    )
