r"""ADOPT: Adam that normalizes each gradient by the *previous* second moment.

Adam divides :math:`g_t` by a :math:`v_t` that already contains :math:`g_t^2`, so the two are
correlated, and Adam can diverge unless ``b2`` suits the problem. ADOPT (Taniguchi et al., 2024)
divides by :math:`v_{t-1}`, which does not contain :math:`g_t`, and normalizes *before* the
momentum average instead of after:

.. math::

    m_t = \beta_1\, m_{t-1} + (1 - \beta_1)\, \frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},
    \qquad v_t = \beta_2\, v_{t-1} + (1 - \beta_2)\, g_t^2

The first step only fills :math:`v` with :math:`g_1^2` (the update is 0), and the normalized
gradient is clipped to :math:`\pm c(t)` (by default :math:`t^{1/4}`) for stability.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, check_state_dtype, check_update_shapes, names_errors
from fdl.optim.adam import ScaleByAdamState
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    Schedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.tree import as_float, cast_like, floats, update_moment, zeros_like

__all__ = ["scale_by_adopt", "adopt"]

PyTree = Any
Scalar = float | jax.Array


def fourth_root(count: jax.Array) -> jax.Array:
    r"""ADOPT's default clipping bound :math:`c(t) = t^{1/4}` of the step count, in the default
    float dtype (float32; float64 under ``jax.enable_x64``), as optax's ``count ** 0.25``."""
    return jnp.asarray(count).astype(_dtypes.default_float()) ** 0.25


@names_errors("scale_by_adopt")
def scale_by_adopt(
    b1: Scalar = 0.9,
    b2: Scalar = 0.9999,
    eps: Scalar = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Schedule = fourth_root,
) -> GradientTransformation:
    r"""Rescale updates by ADOPT's moments.

    With :math:`t` the step count before the step (:math:`t = 0` at the first call) and
    :math:`c` = ``clip_value_fn``:

    .. math::

        r_t &= \operatorname{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \text{eps})},
            -c(t), c(t)\Big) \quad (\text{no clip when use\_clipping=False}) \\
        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, r_t, \qquad
        v_t = \text{b2}\; v_{t-1} + (1 - \text{b2})\, |g_t|^2 \quad (t \ge 1) \\
        m_0 &= m_{-1} = 0, \qquad v_0 = |g_0|^2 \quad (t = 0) \\
        u_t &= \begin{cases} m_t & \text{nesterov=False} \\
            \text{b1}\; m_t + (1 - \text{b1})\, r_t & \text{nesterov=True} \end{cases}

    No bias correction: the first step leaves :math:`m` at zero (so :math:`u_0 = 0`) and only
    sets :math:`v` to :math:`g_0^2`.

    Args:
      b1: decay of the first moment, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``.
      eps: the floor of :math:`\sqrt{v}` in the denominator, ``>= 0``.
      mu_dtype: dtype to store :math:`m` in; default the parameters'.
      nesterov: add the current normalized gradient to the momentum once more.
      use_clipping: clip the normalized gradient to :math:`[-c(t), c(t)]`.
      clip_value_fn: :math:`c`, a function of the int32 step count :math:`t` (the default is
        :math:`t^{1/4}`, computed in the default float dtype).

    Returns:
      A transformation with state :class:`~fdl.optim.adam.ScaleByAdamState`
      ``(count, mu, nu)``, as optax's.

    Raises:
      TypeError: ``clip_value_fn`` that is not callable.
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, a negative ``eps``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_adopt(b1=0.5)
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.asarray([2.0]), state)  # v = 4, m = 0
    >>> u.tolist(), state.nu.tolist()
    ([0.0], [4.0])
    >>> u, state = opt.update(jnp.asarray([4.0]), state)  # r = clip(4 / 2, -1, 1), m = 0.5 r
    >>> u.tolist()
    [0.5]

    References:
      Taniguchi et al., *ADOPT: Modified Adam Can Converge with Any* :math:`\beta_2` *with the
      Optimal Rate*, NeurIPS 2024.

    Differs from optax:
      The updates keep the gradients' dtype (optax returns :math:`m`'s dtype, float32 for
      bfloat16 gradients with ``mu_dtype=float32``). The default ``clip_value_fn`` computes
      :math:`t^{1/4}` in the default float dtype, explicitly (optax's ``lambda x: x**0.25`` mixes int32 and a Python float),
      and the clipping bound is cast to the gradients' dtype, as optax's weakly typed bound is.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_non_negative("eps", eps)
    if not callable(clip_value_fn):
        raise TypeError(
            f"`clip_value_fn` must be a function of the step count (e.g. lambda t: t ** 0.25), "
            f"got {clip_value_fn!r}"
        )
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
        check_update_shapes("scale_by_adopt", updates, params, "nu", state.nu)
        del params, extra_args
        started = state.count > 0
        # as optax: a Python-number beta stays weakly typed (it takes the moments' dtype in
        # update_moment), an array beta keeps its own dtype
        b1_now = jnp.where(started, b1, 1)
        b2_now = jnp.where(started, b2, 0)
        bound = clip_value_fn(state.count) if use_clipping else None

        def normalized(g, v):
            g, v = as_float(g), as_float(v)
            dtype = _dtypes.result_type(g, v)
            floor = jnp.maximum(jnp.sqrt(v), jnp.asarray(eps, v.dtype))
            ratio = g.astype(dtype) / floor.astype(dtype)
            if bound is None:
                return ratio
            c = jnp.asarray(bound).astype(dtype)
            return jnp.clip(ratio, -c, c)

        ratios = jax.tree.map(normalized, updates, state.nu)
        nu = update_moment(updates, state.nu, b2_now, 2)
        mu = update_moment(ratios, state.mu, b1_now, 1)
        direction = update_moment(ratios, mu, b1_now, 1) if nesterov else mu
        new_state = ScaleByAdamState(
            count=safe_increment(state.count), mu=cast_like(mu, state.mu), nu=cast_like(nu, state.nu)
        )
        return cast_like(direction, updates), new_state

    return GradientTransformation(init, update)


@names_errors("adopt")
def adopt(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.9999,
    eps: Scalar = 1e-6,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Schedule = fourth_root,
) -> GradientTransformation:
    r"""ADOPT: :func:`scale_by_adopt`, then a descent step of size ``learning_rate``.

    .. math:: \theta_{t+1} = \theta_t - \eta_t\, u_t

    ``chain(scale_by_adopt(...), scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, mu_dtype, nesterov, use_clipping, clip_value_fn: as in
        :func:`scale_by_adopt`.

    Returns:
      The optimizer (state ``(ScaleByAdamState, step-size state)``).

    Raises:
      TypeError: a non-callable ``clip_value_fn``.
      ValueError: a negative learning rate, or an invalid :func:`scale_by_adopt` argument.

    >>> import jax.numpy as jnp
    >>> opt = adopt(learning_rate=0.1)
    >>> state = opt.init(jnp.zeros(2))
    >>> u, state = opt.update(jnp.asarray([1.0, -2.0]), state)
    >>> u.tolist()  # the first step only measures the gradient
    [-0.0, -0.0]

    References:
      Taniguchi et al., *ADOPT: Modified Adam Can Converge with Any* :math:`\beta_2` *with the
      Optimal Rate*, NeurIPS 2024.
    """
    return chain(
        scale_by_adopt(
            b1=b1,
            b2=b2,
            eps=eps,
            mu_dtype=mu_dtype,
            nesterov=nesterov,
            use_clipping=use_clipping,
            clip_value_fn=clip_value_fn,
        ),
        scale_by_required_learning_rate(learning_rate),
    )
