r"""Adam, NAdam and AdamW: per-coordinate step sizes from moving averages of the gradient.

Adam keeps two exponential moving averages per parameter, of the gradient (:math:`m`, the
*first moment*, a momentum) and of its square (:math:`v`, the *second moment*), removes their
zero-initialisation bias, and steps along

.. math:: u_t = \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon},

so every coordinate moves by roughly the learning rate, whatever the scale of its gradient.
The relatives differ in one ingredient each:

* **NAdam** (``nesterov=True``) replaces :math:`\hat m_t` by a Nesterov look-ahead.
* **AdamW** adds decoupled weight decay :math:`\lambda\theta` to the update
  (:func:`~fdl.optim.weight_decay.add_decayed_weights`).
* **AMSGrad** divides by the running *maximum* of :math:`\hat v`, so step sizes never grow
  (:mod:`fdl.optim.amsgrad`).
* **Adamax** replaces the second moment by an exponentially weighted infinity norm
  (:mod:`fdl.optim.adamax`).

The atoms (``scale_by_*``) hold the math; the aliases only chain an atom with
:func:`~fdl.optim.base.scale_by_learning_rate`, exactly as optax does, so fdl and optax states
compare leaf by leaf.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_state_dtype, check_update_shapes, names_errors
from fdl.optim._adam import adam_ratio, check_adam_args, first_moment_hat
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = [
    "ScaleByAdamState",
    "scale_by_adam",
    "adam",
    "adamw",
    "nadam",
    "nadamw",
]

PyTree = Any
Scalar = float | jax.Array


class ScaleByAdamState(NamedTuple):
    """Adam's state: the step count :math:`t` (int32) and the moments :math:`m`, :math:`v`."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree
    nu: PyTree


@names_errors("scale_by_adam")
def scale_by_adam(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Rescale updates by Adam's bias-corrected moments (and NAdam's, with ``nesterov``).

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t, \qquad
        v_t = \text{b2}\; v_{t-1} + (1 - \text{b2})\, g_t^2, \qquad m_0 = v_0 = 0 \\
        \hat m_t &= \begin{cases}
            \dfrac{m_t}{1 - \text{b1}^t} & \text{nesterov=False} \\[1ex]
            \text{b1}\, \dfrac{m_t}{1 - \text{b1}^{t+1}}
                + (1 - \text{b1})\, \dfrac{g_t}{1 - \text{b1}^t} & \text{nesterov=True (NAdam)}
        \end{cases} \qquad
        \hat v_t = \frac{v_t}{1 - \text{b2}^t} \\
        u_t &= \frac{\hat m_t}{\sqrt{\hat v_t + \text{eps\_root}} + \text{eps}}

    for :math:`t = 1, 2, \ldots` (the count stored in the state is :math:`t` after the step).

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added inside the square root, ``>= 0`` (keeps the derivative of the update
        finite at :math:`v = 0` when meta-learning through it).
      mu_dtype: dtype to store :math:`m` in (e.g. bfloat16 to halve its memory); default the
        parameters'. It is computed in the promoted dtype of gradient and state, then cast.
      nesterov: NAdam's look-ahead first moment (Dozat, 2016).

    Returns:
      A transformation with state :class:`ScaleByAdamState` ``(count, mu, nu)``.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, negative ``eps``/``eps_root``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_adam()
    >>> u, state = opt.update(jnp.asarray([0.5, -2.0]), opt.init(jnp.zeros(2)))
    >>> [round(x, 4) for x in u.tolist()]  # the first step is sign(g), up to rounding
    [1.0, -1.0]

    References:
      Kingma and Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015.
      Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR 2016 workshop.

    Differs from optax:
      The updates keep the gradients' dtype and the moments keep their stored dtype. optax
      returns the promoted dtype instead when they differ (bfloat16 gradients with
      ``mu_dtype=float32`` give float32 updates there). With equal dtypes the two agree bit
      for bit.

    Differs from PyTorch:
      ``torch.optim.Adam`` computes :math:`\sqrt{v_t} / \sqrt{1 - \text{b2}^t} + \epsilon`
      and folds :math:`1/(1 - \text{b1}^t)` into the step size: the same update in exact
      arithmetic, rounded differently (and :math:`\epsilon` is scaled differently in early
      steps). ``torch.optim.NAdam`` uses a *momentum schedule*
      :math:`\mu_t = \text{b1}(1 - \tfrac12 0.96^{0.004 t})`; here ``b1`` is constant, as in
      Dozat's Algorithm 2 without its extra factor ``b2`` on :math:`\hat v`.
    """
    check_adam_args(b1, b2, eps, eps_root)
    mu_dtype = _dtypes.canonical(mu_dtype)

    def init(params: PyTree) -> ScaleByAdamState:
        check_state_dtype("mu_dtype", mu_dtype, params)
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_adam", updates, params, "nu", state.nu)
        del params, extra_args
        mu = update_moment(updates, state.mu, b1, 1)
        nu = update_moment(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        mu_hat = first_moment_hat(mu, updates, b1, count, nesterov)
        nu_hat = bias_correction(nu, b2, count)
        new_updates = cast_like(adam_ratio(mu_hat, nu_hat, eps, eps_root), updates)
        new_state = ScaleByAdamState(count=count, mu=cast_like(mu, state.mu), nu=cast_like(nu, state.nu))
        return new_updates, new_state

    return GradientTransformation(init, update)


# ------------------------------------------------------------------------------------- aliases


@names_errors("adam")
def adam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""Adam: :math:`\theta_{t+1} = \theta_t - \eta_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)`.

    ``chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
    scale_by_learning_rate(learning_rate))``; see :func:`scale_by_adam` for the moments.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, eps_root, mu_dtype, nesterov: as in :func:`scale_by_adam`.

    Returns:
      The optimizer (state ``(ScaleByAdamState, step-size state)``).

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_adam` argument.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import apply_updates
    >>> opt = adam(learning_rate=0.1)
    >>> params = {"w": jnp.asarray([1.0])}
    >>> updates, state = opt.update({"w": jnp.asarray([3.0])}, opt.init(params))
    >>> [round(x, 4) for x in apply_updates(params, updates)["w"].tolist()]  # a step of size lr
    [0.9]

    References:
      Kingma and Ba, *Adam: A Method for Stochastic Optimization*, ICLR 2015.
    """
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_required_learning_rate(learning_rate),
    )


@names_errors("nadam")
def nadam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""NAdam: :func:`adam` with Nesterov's look-ahead first moment (``nesterov=True``).

    .. math::

        \hat m_t = \text{b1}\, \frac{m_t}{1 - \text{b1}^{t+1}}
            + (1 - \text{b1})\, \frac{g_t}{1 - \text{b1}^t}, \qquad
        \theta_{t+1} = \theta_t - \eta_t\, \frac{\hat m_t}{\sqrt{\hat v_t + \text{eps\_root}}
            + \text{eps}}

    Args and Raises: as in :func:`adam` (``nesterov`` defaults to True, as optax's
    ``functools.partial(adam, nesterov=True)``).

    >>> import jax.numpy as jnp
    >>> opt = nadam(learning_rate=0.1)
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in updates.tolist()]  # -0.1 * (0.9 * 0.1 / 0.19 + 0.1 / 0.1)
    [-0.1474]

    References:
      Dozat, *Incorporating Nesterov Momentum into Adam*, ICLR 2016 workshop.

    Differs from PyTorch:
      ``torch.optim.NAdam`` decays its momentum coefficient with a schedule; see
      :func:`scale_by_adam`.
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)


@names_errors("adamw")
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask | None = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdamW: Adam with decoupled weight decay.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \left(
            \frac{\hat m_t}{\sqrt{\hat v_t + \text{eps\_root}} + \text{eps}}
            + \text{weight\_decay}\; \theta_t \right)

    ``chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
    scale_by_learning_rate(learning_rate))``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, eps_root, mu_dtype, nesterov: as in :func:`scale_by_adam`.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      mask: which parameters to decay (a bool pytree or a function of the parameters; see
        :func:`~fdl.optim.weight_decay.masked`). Masked-out leaves get the plain Adam update.

    Returns:
      The optimizer.

    Raises:
      ValueError: a negative learning rate or weight decay, or an invalid Adam argument.

    >>> import jax.numpy as jnp
    >>> opt = adamw(learning_rate=0.1, weight_decay=0.5, mask={"w": True, "b": False})
    >>> params = {"w": jnp.asarray([2.0]), "b": jnp.asarray([2.0])}
    >>> grads = {"w": jnp.asarray([1.0]), "b": jnp.asarray([1.0])}
    >>> updates, _ = opt.update(grads, opt.init(params), params)
    >>> {k: round(float(v[0]), 4) for k, v in updates.items()}  # w: -0.1 * (1 + 0.5 * 2)
    {'b': -0.1, 'w': -0.2}

    References:
      Loshchilov and Hutter, *Decoupled Weight Decay Regularization*, ICLR 2019.

    Differs from PyTorch:
      ``torch.optim.AdamW`` defaults to ``weight_decay=0.01`` (here 1e-4, as optax) and shrinks
      the parameters before the Adam step (same value, different rounding).
    """
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_required_learning_rate(learning_rate),
    )


@names_errors("nadamw")
def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""NAdamW: :func:`adamw` with NAdam's look-ahead first moment (``nesterov=True``).

    .. math::

        \theta_{t+1} = \theta_t - \eta_t \left(
            \frac{\hat m^{\text{nesterov}}_t}{\sqrt{\hat v_t + \text{eps\_root}} + \text{eps}}
            + \text{weight\_decay}\; \theta_t \right)

    with :math:`\hat m^{\text{nesterov}}_t` as in :func:`nadam`. Args, Returns, Raises: as in
    :func:`adamw`.

    >>> import jax.numpy as jnp
    >>> opt = nadamw(learning_rate=0.1, weight_decay=0.0)
    >>> params = jnp.zeros(1)
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(params), params)
    >>> [round(x, 4) for x in updates.tolist()]
    [-0.1474]

    References:
      Dozat, 2016; Loshchilov and Hutter, 2019 (see :func:`nadam`, :func:`adamw`).
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov)
