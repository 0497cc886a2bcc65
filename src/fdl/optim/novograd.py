r"""NovoGrad: momentum on gradients normalized by a per-layer second moment.

Adam keeps a second moment per weight; NovoGrad keeps one number per layer (per leaf of the
parameter tree): a moving average of the squared norm of that layer's gradient,
:math:`n_t = \beta_2 n_{t-1} + (1 - \beta_2) \lVert g_t\rVert^2`. Each gradient is divided by
:math:`\sqrt{n_t}` *before* it enters the momentum, and weight decay is added to the normalized
gradient, so the momentum accumulates steps of comparable size in every layer (Ginsburg et al.,
2019). The second moment costs one scalar per layer instead of one per weight.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, check_state_dtype, check_update_shapes, names_errors
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import abs_sq, cast_like, float_dtype, floats, update_moment, zeros_like

__all__ = ["ScaleByNovogradState", "scale_by_novograd", "novograd"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByNovogradState(NamedTuple):
    r"""The step count :math:`t` (int32), the momentum :math:`m_t` (shaped like the parameters)
    and the per-layer second moment :math:`n_t` (one scalar per leaf, in the leaf's dtype)."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree
    nu: PyTree


def _squared_norm(g: jax.Array) -> jax.Array:
    """``jnp.linalg.norm(g) ** 2`` of the leaf, as optax computes it (the square root first)."""
    norm = jnp.sqrt(jnp.sum(abs_sq(g)))
    return norm * norm


@names_errors("scale_by_novograd")
def scale_by_novograd(
    b1: Scalar = 0.9,
    b2: Scalar = 0.25,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    weight_decay: Scalar = 0.0,
    mu_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Rescale updates by NovoGrad's layer-wise normalized momentum.

    For each leaf (layer) :math:`\ell`, with :math:`\theta` the parameters:

    .. math::

        n_t &= \begin{cases} \lVert g_t\rVert_2^2 & t = 1 \\
            \text{b2}\; n_{t-1} + (1 - \text{b2})\, \lVert g_t\rVert_2^2 & t > 1 \end{cases} \\
        d_t &= \frac{g_t}{\sqrt{n_t + \text{eps\_root}} + \text{eps}}
            + \text{weight\_decay}\; \theta_t \\
        m_t &= \begin{cases} d_t & t = 1 \\ \text{b1}\; m_{t-1} + d_t & t > 1 \end{cases}
            \qquad u_t = m_t

    The norm is over the whole leaf, so :math:`n_t` is a scalar per leaf; :math:`m_t` is a
    decayed *sum* (no :math:`1 - \text{b1}` on the new term), as in the paper's Algorithm 1,
    and there is no bias correction: the first step starts both averages at their first term.

    Args:
      b1: decay of the momentum, in ``[0, 1)``.
      b2: decay of the per-layer second moment, in ``[0, 1)``.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added inside the square root, ``>= 0``.
      weight_decay: :math:`\ge 0`, the parameters' share of :math:`d_t` (L2 on the normalized
        gradient, as in the paper).
      mu_dtype: dtype to store :math:`m` in; default the parameters'.

    Returns:
      A transformation with state :class:`ScaleByNovogradState` ``(count, mu, nu)``. Its
      ``update`` needs the parameters (for the weight decay, even when it is 0, as optax's).

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, a negative ``eps``, ``eps_root`` or
        ``weight_decay``; (in ``update``) no ``params``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_novograd(b1=0.5, eps=0.0)
    >>> params = jnp.zeros(2)
    >>> u, state = opt.update(jnp.asarray([3.0, 4.0]), opt.init(params), params)
    >>> u.tolist(), state.nu.tolist()  # g / |g|, |g|^2
    ([0.6000000238418579, 0.800000011920929], 25.0)

    References:
      Ginsburg et al., *Stochastic Gradient Methods with Layer-wise Adaptive Moments for
      Training of Deep Networks*, arXiv:1905.11286, 2019.

    Differs from optax:
      The updates keep the gradients' dtype (optax returns :math:`m_t` in ``mu_dtype``);
      their values are the stored :math:`m_t`, as optax's. Integer parameters get a float
      state. A missing ``params`` raises a ``ValueError`` saying so (optax fails on
      ``weight_decay * None``).
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)
    check_non_negative("weight_decay", weight_decay)
    mu_dtype = _dtypes.canonical(mu_dtype)

    def init(params: PyTree) -> ScaleByNovogradState:
        check_state_dtype("mu_dtype", mu_dtype, params)
        return ScaleByNovogradState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=jax.tree.map(lambda p: jnp.zeros([], float_dtype(p)), params),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_novograd needs the parameters (for `weight_decay`): call "
                "`update(updates, state, params)`"
            )
        updates, params = floats(updates), floats(params)
        check_update_shapes("scale_by_novograd", updates, params, "mu", state.mu)
        count = safe_increment(state.count)
        first = count == 1

        norms = jax.tree.map(_squared_norm, updates)
        averaged = cast_like(update_moment(norms, state.nu, b2, 1), state.nu)
        nu = jax.tree.map(lambda s, a, n: jnp.where(first, s.astype(n.dtype), a), norms, averaged, state.nu)

        def normalized(g, p, n):
            denominator = jnp.sqrt(n + jnp.asarray(eps_root, n.dtype)) + jnp.asarray(eps, n.dtype)
            ratio_dtype = _dtypes.result_type(g, denominator)
            ratio = g.astype(ratio_dtype) / denominator.astype(ratio_dtype)
            decay_dtype = _dtypes.result_type(weight_decay, p)
            decay = jnp.asarray(weight_decay, decay_dtype) * p.astype(decay_dtype)
            dtype = _dtypes.result_type(ratio, decay)
            return ratio.astype(dtype) + decay.astype(dtype)

        def momentum(m, d):
            old = jnp.asarray(b1, m.dtype) * m
            dtype = _dtypes.result_type(old, d)
            summed = old.astype(dtype) + d.astype(dtype)
            return jnp.where(first, d.astype(dtype), summed).astype(m.dtype)

        directions = jax.tree.map(normalized, updates, params, nu)
        mu = jax.tree.map(momentum, state.mu, directions)
        return cast_like(mu, updates), ScaleByNovogradState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


@names_errors("novograd")
def novograd(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.25,
    eps: Scalar = 1e-6,
    eps_root: Scalar = 0.0,
    weight_decay: Scalar = 0.0,
) -> GradientTransformation:
    r"""NovoGrad (:func:`scale_by_novograd`), then the learning rate.

    ``chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay),
    scale_by_learning_rate(learning_rate))``, as optax composes it: the step is
    :math:`-\eta\, m_t`. Note the default ``eps=1e-6`` here against 1e-8 in the atom, as in
    optax.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, eps_root, weight_decay: as in :func:`scale_by_novograd`.

    Returns:
      The optimizer (state ``(ScaleByNovogradState, step-size state)``); its ``update``
      needs the parameters.

    Raises:
      ValueError: a negative learning rate, or an invalid :func:`scale_by_novograd` argument.

    >>> import jax.numpy as jnp
    >>> opt = novograd(learning_rate=0.1)
    >>> params = jnp.zeros(2)
    >>> u, _ = opt.update(jnp.asarray([3.0, 4.0]), opt.init(params), params)
    >>> [round(x, 5) for x in u.tolist()]  # -0.1 * g / |g|
    [-0.06, -0.08]

    References:
      Ginsburg et al., *Stochastic Gradient Methods with Layer-wise Adaptive Moments for
      Training of Deep Networks*, arXiv:1905.11286, 2019.

    Differs from optax:
      ``weight_decay`` is a number: optax's annotation also allows a schedule, which its
      ``scale_by_novograd`` cannot use (it multiplies the parameters by the function).
    """
    return chain(
        scale_by_novograd(b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay),
        scale_by_required_learning_rate(learning_rate),
    )
