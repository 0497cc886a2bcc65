r"""Prodigy: AdamW that estimates its own learning rate from how far the parameters moved.

The best constant step size of (sub)gradient descent is about :math:`D / G\sqrt{T}`, with
:math:`D = \lVert \theta_0 - \theta^\star \rVert` the distance to a solution, unknown in
advance. Prodigy (Mishchenko and Defazio, 2023), a faster variant of D-Adaptation, keeps an
estimate :math:`d` that only grows, from the correlation of the gradients with the distance
travelled, :math:`\langle g_t, \theta_0 - \theta_t \rangle`, and runs AdamW on the gradients
scaled by :math:`d`. ``learning_rate`` is then a schedule *around* 1, not a step size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_decay,
    check_learning_rate,
    check_non_negative,
    check_real,
    check_update_shapes,
    names_errors,
)
from fdl._checks.hyper import as_concrete_number
from fdl.optim.base import GradientTransformation, ScalarOrSchedule, safe_increment
from fdl.tree import cast_like, floats, zeros_like

__all__ = ["ProdigyState", "prodigy"]

PyTree = Any
Scalar = float | jax.Array


class ProdigyState(NamedTuple):
    """The state of :func:`prodigy`, with optax's field names and order."""

    exp_avg: PyTree
    r"""Adam's first moment :math:`m` of the scaled gradients :math:`d\, g`."""
    exp_avg_sq: PyTree
    r"""Adam's second moment :math:`v` of the scaled gradients."""
    grad_sum: PyTree
    r"""The weighted sum :math:`s` of the scaled gradients (the denominator of :math:`d`)."""
    params0: PyTree
    r"""The initial parameters :math:`\theta_0`."""
    estim_lr: jax.Array
    """The estimate :math:`d` (the parameters' lowest dtype)."""
    numerator_weighted: jax.Array
    """The weighted sum :math:`r` of the correlations (the numerator of :math:`d`)."""
    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    """The step count :math:`t` (int32)."""


def _as(x: Any, like: jax.Array) -> jax.Array:
    """``x`` in ``like``'s dtype, as a weakly typed Python number would be."""
    return jnp.asarray(x).astype(like.dtype)


def _mul(a: jax.Array, b: jax.Array) -> jax.Array:
    dtype = _dtypes.result_type(a, b)
    return a.astype(dtype) * b.astype(dtype)


def _sub(a: jax.Array, b: jax.Array) -> jax.Array:
    dtype = _dtypes.result_type(a, b)
    return a.astype(dtype) - b.astype(dtype)


def _add(a: jax.Array, b: jax.Array) -> jax.Array:
    dtype = _dtypes.result_type(a, b)
    return a.astype(dtype) + b.astype(dtype)


@names_errors("prodigy")
def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Scalar, Scalar] = (0.9, 0.999),
    beta3: Scalar | None = None,
    eps: Scalar = 1e-8,
    estim_lr0: Scalar = 1e-6,
    estim_lr_coef: Scalar = 1.0,
    weight_decay: Scalar = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    r"""Prodigy: AdamW on :math:`d\, g` with a learning rate :math:`d` estimated on the fly.

    With :math:`(\beta_1, \beta_2)` = ``betas``, :math:`\beta_3` = ``beta3`` (default
    :math:`\sqrt{\beta_2}`), :math:`\eta_t` = ``learning_rate`` at the count before the step,
    :math:`d_0` = ``estim_lr0`` and :math:`t = 1, 2, \ldots`:

    .. math::

        \hat d_t &= d_t\, \eta_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}, \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\, d_t g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, (d_t g_t)^2 \\
        s_t &= \beta_3 s_{t-1} + \frac{c_t\, d_t g_t}{d_0}, \qquad
        r_t = \beta_3 r_{t-1} + \frac{d_t}{d_0} \hat d_t\, \langle g_t, \theta_0 - \theta_t \rangle,
        \qquad c_t = d_t \text{ if safeguard\_warmup else } \hat d_t \\
        d_{t+1} &= \max\Big(d_t,\ \text{estim\_lr\_coef}\ \frac{r_t}{\lVert s_t \rVert_1}\Big) \\
        u_t &= -\text{weight\_decay}\; \hat d_t\, \theta_t
            - \frac{\hat d_t\, m_t}{\sqrt{v_t} + d_{t+1}\, \text{eps}}

    from :math:`m_0 = v_0 = s_0 = 0`, :math:`r_0 = 0`, :math:`d_1 = d_0`.

    Args:
      learning_rate: a multiplier of the estimated step, ``>= 0``, or a schedule (e.g. a
        warmup then a linear decay from 1 to 0).
      betas: :math:`(\beta_1, \beta_2)` of the underlying Adam, each in ``[0, 1)``.
      beta3: the decay of the estimate's sums, in ``[0, 1)``; ``None``: :math:`\sqrt{\beta_2}`.
      eps: added to Adam's denominator (scaled by :math:`d`), ``>= 0``.
      estim_lr0: the initial (under-)estimate :math:`d_0 > 0`.
      estim_lr_coef: multiplies every later estimate, ``>= 0``.
      weight_decay: AdamW's decoupled weight decay, ``>= 0``.
      safeguard_warmup: leave :math:`\eta_t` out of :math:`s` (for warmup schedules).

    Returns:
      A transformation with state :class:`ProdigyState`. ``update`` needs ``params``.

    Raises:
      ValueError: ``betas`` not two numbers in ``[0, 1)``, ``beta3`` outside ``[0, 1)``, a
        non-positive ``estim_lr0``, a negative ``eps``, ``estim_lr_coef``,
        ``weight_decay`` or learning rate; ``update`` without ``params``.

    >>> import jax.numpy as jnp
    >>> opt = prodigy()
    >>> params = jnp.asarray([1.0, -1.0])
    >>> u, state = opt.update(jnp.asarray([1.0, -1.0]), opt.init(params), params)
    >>> [round(x, 4) for x in (u / 1e-6).tolist()]  # the first step: d0 sign(g), about
    [-1.0, 1.0]

    References:
      Mishchenko and Defazio, *Prodigy: An Expeditiously Adaptive Parameter-Free Learner*,
      ICML 2024.

    Differs from optax:
      The updates keep the gradients' dtype and the moments the parameters' (optax returns
      the promoted dtypes when they differ). In a tree that mixes bfloat16 and float32 leaves,
      :math:`d` stays in the lowest dtype, bfloat16, as both libraries start it; optax's turns
      float32 at the first step (promoted with the float32 leaves), so from the second step the
      float32 leaves' updates differ from optax's by :math:`d`'s bfloat16 rounding, about
      ``1e-3`` relative. A tree of one dtype matches optax exactly.
    """
    check_learning_rate("learning_rate", learning_rate)
    if not isinstance(betas, tuple | list) or len(betas) != 2:
        raise ValueError(f"`betas` must be a pair (b1, b2) of numbers in [0, 1), got {betas!r}")
    beta1, beta2 = betas
    check_decay("betas[0]", beta1)
    check_decay("betas[1]", beta2)
    if beta3 is None:
        beta3 = beta2**0.5
    else:
        check_decay("beta3", beta3)
    check_non_negative("eps", eps)
    check_real("estim_lr0", estim_lr0)
    number = as_concrete_number(estim_lr0)
    if number is not None and not number > 0:
        raise ValueError(f"`estim_lr0` must be > 0 (sums are divided by it), got {estim_lr0!r}")
    check_non_negative("estim_lr_coef", estim_lr_coef)
    check_non_negative("weight_decay", weight_decay)

    def init(params: PyTree) -> ProdigyState:
        dtype = _dtypes.lowest_float(params)
        return ProdigyState(
            exp_avg=zeros_like(params),
            exp_avg_sq=zeros_like(params),
            grad_sum=zeros_like(params),
            # a copy (integer parameters: their values as floats), not the params themselves, so
            # that a step may donate both params and state (optax keeps the same arrays)
            params0=jax.tree.map(jnp.array, floats(params)),
            estim_lr=jnp.asarray(estim_lr0, dtype),
            numerator_weighted=jnp.zeros((), dtype),
            count=jnp.zeros((), jnp.int32),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("prodigy needs the parameters: call `update(updates, state, params)`")
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("prodigy", updates, params, "exp_avg", state.exp_avg)
        d = state.estim_lr
        count = safe_increment(state.count)
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        real = _dtypes.default_float()  # optax's Python-number betas to an int32 power
        correction = (1 - jax.lax.pow(jnp.asarray(beta2, real), count)) ** 0.5 / (
            1 - jax.lax.pow(jnp.asarray(beta1, real), count)
        )
        d_hat = _mul(d * _as(eta, d), correction).astype(
            d.dtype
        )  # the correction in the default float, as optax
        scaled = jax.tree.map(lambda g: _mul(d, jnp.asarray(g)), updates)
        moved = jax.tree.map(lambda p0, p: _sub(jnp.asarray(p0), jnp.asarray(p)), state.params0, params)

        def inner(g, diff):
            g = jnp.asarray(g)
            dtype = _dtypes.result_type(g, diff)
            return jnp.tensordot(
                g.astype(dtype), diff.astype(dtype), g.ndim, precision=jax.lax.Precision.HIGHEST
            )

        correlations = jax.tree.leaves(jax.tree.map(inner, updates, moved))
        correlation = correlations[0] if correlations else jnp.zeros((), d.dtype)
        for c in correlations[1:]:
            correlation = _add(correlation, c)

        def first(m, dg):
            return _add(_as(beta1, m) * m, _as(1 - beta1, dg) * dg)

        def second(v, dg):
            return _add(_as(beta2, v) * v, _as(1 - beta2, dg) * dg * dg)

        weight = d if safeguard_warmup else d_hat

        def summed(s, dg):
            return _add(_as(beta3, s) * s, _mul(weight, dg) / _as(estim_lr0, _mul(weight, dg)))

        exp_avg = jax.tree.map(first, state.exp_avg, scaled)
        exp_avg_sq = jax.tree.map(second, state.exp_avg_sq, scaled)
        grad_sum = jax.tree.map(summed, state.grad_sum, scaled)
        numerator = _as(beta3, state.numerator_weighted) * state.numerator_weighted
        numerator = _add(numerator, _mul((d / _as(estim_lr0, d)) * d_hat, correlation))
        sums = [jnp.sum(jnp.abs(s)) for s in jax.tree.leaves(grad_sum)]
        denominator = sums[0] if sums else jnp.zeros((), d.dtype)
        for s in sums[1:]:
            denominator = _add(denominator, s)
        estimate = _as(estim_lr_coef, numerator) * numerator / denominator.astype(numerator.dtype)
        new_d = jnp.maximum(d, estimate.astype(d.dtype))

        def step(m, v, p, g):
            p = jnp.asarray(p)
            decay = _mul(_as(-weight_decay, d_hat) * d_hat, p)
            denom = _add(jnp.sqrt(v), _mul(new_d, _as(eps, new_d)))
            adam = _mul(d_hat, m)
            adam = adam / denom.astype(_dtypes.result_type(adam, denom))
            return _sub(decay, adam).astype(jnp.result_type(g))

        new_updates = jax.tree.map(step, exp_avg, exp_avg_sq, params, updates)
        new_state = ProdigyState(
            exp_avg=cast_like(exp_avg, state.exp_avg),
            exp_avg_sq=cast_like(exp_avg_sq, state.exp_avg_sq),
            grad_sum=cast_like(grad_sum, state.grad_sum),
            params0=state.params0,
            estim_lr=new_d,
            numerator_weighted=numerator.astype(state.numerator_weighted.dtype),
            count=count,
        )
        return new_updates, new_state

    return GradientTransformation(init, update)
