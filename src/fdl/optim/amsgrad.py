r"""AMSGrad: Adam dividing by the running maximum of its second moment, so step sizes never
grow (Reddi, Kale & Kumar, 2018)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_update_shapes, names_errors
from fdl.optim._adam import adam_ratio, check_adam_args
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = ["ScaleByAmsgradState", "amsgrad", "scale_by_amsgrad"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByAmsgradState(NamedTuple):
    r"""AMSGrad's state: Adam's, plus the running maximum :math:`v^{\max}` of the second moment."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree
    nu: PyTree
    nu_max: PyTree


@names_errors("scale_by_amsgrad")
def scale_by_amsgrad(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""Rescale updates by AMSGrad: Adam with a never-decreasing second moment.

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t, \qquad
        v_t = \text{b2}\; v_{t-1} + (1 - \text{b2})\, g_t^2 \\
        \hat m_t &= \frac{m_t}{1 - \text{b1}^t} \text{ (if bias\_correction\_mu)}, \qquad
        \tilde v_t = \frac{v_t}{1 - \text{b2}^t} \text{ (if bias\_correction\_nu)} \\
        v^{\max}_t &= \max(v^{\max}_{t-1}, \tilde v_t), \qquad
        u_t = \frac{\hat m_t}{\sqrt{v^{\max}_t + \text{eps\_root}} + \text{eps}}

    Without a bias correction the uncorrected moment is used in its place (the original paper
    corrects neither).

    Args:
      b1, b2, eps, eps_root, mu_dtype: as in :func:`scale_by_adam`.
      bias_correction_mu: divide :math:`m_t` by :math:`1 - \text{b1}^t`.
      bias_correction_nu: divide :math:`v_t` by :math:`1 - \text{b2}^t` before the maximum.

    Returns:
      A transformation with state :class:`ScaleByAmsgradState` ``(count, mu, nu, nu_max)``.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, negative ``eps``/``eps_root``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_amsgrad()
    >>> state = opt.init(jnp.zeros(1))
    >>> _, state = opt.update(jnp.asarray([3.0]), state)
    >>> _, state = opt.update(jnp.asarray([0.0]), state)
    >>> bool(state.nu_max[0] > state.nu[0] / (1 - 0.999**2))  # the maximum remembers step 1
    True

    References:
      Reddi, Kale and Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018.

    Differs from PyTorch:
      ``torch.optim.Adam(amsgrad=True)`` takes the maximum of the *uncorrected* :math:`v_t` and
      divides the maximum by :math:`1 - \text{b2}^t` afterwards; here (and in optax) the
      maximum is over corrected values. ``bias_correction_nu=False`` takes it over
      uncorrected values but then never corrects.
    """
    check_adam_args(b1, b2, eps, eps_root)
    mu_dtype = _dtypes.canonical(mu_dtype)

    def init(params: PyTree) -> ScaleByAmsgradState:
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=zeros_like(params),
            nu_max=zeros_like(params),
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_amsgrad", updates, params, "nu", state.nu)
        del params, extra_args
        mu = update_moment(updates, state.mu, b1, 1)
        nu = update_moment(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        mu_hat = bias_correction(mu, b1, count) if bias_correction_mu else mu
        nu_seen = bias_correction(nu, b2, count) if bias_correction_nu else nu
        nu_max = jax.tree.map(lambda old, new: jnp.maximum(old.astype(new.dtype), new), state.nu_max, nu_seen)
        new_updates = cast_like(adam_ratio(mu_hat, nu_max, eps, eps_root), updates)
        new_state = ScaleByAmsgradState(
            count=count,
            mu=cast_like(mu, state.mu),
            nu=cast_like(nu, state.nu),
            nu_max=cast_like(nu_max, state.nu_max),
        )
        return new_updates, new_state

    return GradientTransformation(init, update)


@names_errors("amsgrad")
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""AMSGrad: :math:`\theta_{t+1} = \theta_t - \eta_t \hat m_t / (\sqrt{v^{\max}_t} + \epsilon)`.

    ``chain(scale_by_amsgrad(...), scale_by_learning_rate(learning_rate))``; see
    :func:`scale_by_amsgrad` for the equations, arguments and the PyTorch difference.

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_amsgrad` argument.

    >>> import jax.numpy as jnp
    >>> opt = amsgrad(learning_rate=0.1)
    >>> updates, _ = opt.update(jnp.asarray([3.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in updates.tolist()]
    [-0.1]

    References:
      Reddi, Kale and Kumar, *On the Convergence of Adam and Beyond*, ICLR 2018.
    """
    return chain(
        scale_by_amsgrad(
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            mu_dtype=mu_dtype,
            bias_correction_mu=bias_correction_mu,
            bias_correction_nu=bias_correction_nu,
        ),
        scale_by_required_learning_rate(learning_rate),
    )
