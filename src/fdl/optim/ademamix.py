r"""AdEMAMix: Adam with a second, much slower momentum added to the fast one.

One exponential moving average cannot both react to the latest gradients and remember old
ones: with :math:`\beta = 0.9` a gradient's weight halves in 7 steps, with :math:`\beta = 0.9999`
in 7000. AdEMAMix (Pagliardini et al., 2024) keeps both and adds them, the slow one weighted by
:math:`\alpha`, over Adam's denominator:

.. math::

    u_t = \frac{\hat m^{(1)}_t + \alpha\, m^{(2)}_t}{\sqrt{\hat v_t} + \epsilon}

Simplified AdEMAMix (Morwani et al., 2025) keeps a single, *undamped* momentum
:math:`m_t = \beta_1 m_{t-1} + g_t` and adds the current gradient :math:`\alpha g_t` instead.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_decay,
    check_non_negative,
    check_real,
    check_state_dtype,
    check_update_shapes,
    names_errors,
)
from fdl.optim._adam import adam_ratio
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import abs_sq, as_float, bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = [
    "ScaleByAdemamixState",
    "scale_by_ademamix",
    "ademamix",
    "ScaleBySimplifiedAdEMAMixState",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]

PyTree = Any
Scalar = float | jax.Array

_SCHEDULE = "or a schedule (a function of the step)"


class ScaleByAdemamixState(NamedTuple):
    """The state of :func:`scale_by_ademamix`, with optax's field names and order."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    """The step count :math:`t` (int32) of the fast moment and the second moment."""
    count_m2: jax.Array
    """The step count (int32) at which the schedules of ``b3`` and ``alpha`` are evaluated."""
    m1: PyTree
    """The fast average :math:`m^{(1)}` of the gradients."""
    m2: PyTree
    """The slow average :math:`m^{(2)}` of the gradients."""
    nu: PyTree
    """The average :math:`v` of the squared gradients."""


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    """The state of :func:`scale_by_simplified_ademamix`, with optax's field names and order."""

    t: jax.Array
    """The step count (int32)."""
    m: PyTree
    """The undamped momentum :math:`m`."""
    n: PyTree
    """The average :math:`n` of the squared gradients."""


def _decay_or_schedule(name: str, value: Any) -> None:
    """A decay rate in ``[0, 1)`` or a schedule of it."""
    if not callable(value):
        check_real(name, value, _SCHEDULE)
        check_decay(name, value)


def _at(value: Any, count: jax.Array) -> Any:
    """``value``, or the schedule ``value`` evaluated at ``count``."""
    return value(count) if callable(value) else value


def _times(scale: Any, x: jax.Array) -> jax.Array:
    """``scale * x`` in ``x``'s dtype (a Python number is weak in optax; a schedule's array
    is cast)."""
    return jnp.asarray(scale, x.dtype) * x


@names_errors("scale_by_ademamix")
def scale_by_ademamix(
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
) -> GradientTransformation:
    r"""Rescale updates by AdEMAMix's two momenta and Adam's second moment.

    .. math::

        m^{(1)}_t &= \text{b1}\; m^{(1)}_{t-1} + (1 - \text{b1})\, g_t, \qquad
        m^{(2)}_t = \text{b3}_t\; m^{(2)}_{t-1} + (1 - \text{b3}_t)\, g_t, \qquad
        v_t = \text{b2}\; v_{t-1} + (1 - \text{b2})\, |g_t|^2 \\
        u_t &= \frac{m^{(1)}_t / (1 - \text{b1}^t) + \text{alpha}_t\, m^{(2)}_t}
            {\sqrt{v_t / (1 - \text{b2}^t) + \text{eps\_root}} + \text{eps}}

    for :math:`t = 1, 2, \ldots`, all moments starting at zero. The slow momentum
    :math:`m^{(2)}` is *not* bias-corrected: it fills slowly, so that it weighs little early
    on. ``b3`` and ``alpha`` may be schedules of the step (the paper warms both up), evaluated
    at ``count_m2`` before the step.

    Args:
      b1: decay of the fast momentum, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``.
      b3: decay of the slow momentum, in ``[0, 1)``, or a schedule of it.
      alpha: weight of the slow momentum, ``>= 0``, or a schedule of it.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added inside the square root, ``>= 0``.
      mu_dtype: dtype to store all three moments in (as optax); default the parameters'.

    Returns:
      A transformation with state :class:`ScaleByAdemamixState`
      ``(count, count_m2, m1, m2, nu)``.

    Raises:
      ValueError: ``b1``/``b2``/``b3`` outside ``[0, 1)``, a negative ``alpha``, ``eps`` or
        ``eps_root``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_ademamix(b3=0.5, alpha=2.0, eps=0.0)
    >>> u, state = opt.update(jnp.asarray([4.0]), opt.init(jnp.zeros(1)))
    >>> [round(x, 4) for x in u.tolist()]  # (4 + 2 * 0.5 * 4) / 4 = 1 + alpha (1 - b3)
    [2.0]

    References:
      Pagliardini, Ablin and Grangier, *The AdEMAMix Optimizer: Better, Faster, Older*, 2024.

    Differs from optax:
      The moments keep the dtype ``init`` gave them and the updates the gradients' dtype;
      optax returns them in the promoted dtype when ``mu_dtype`` differs from the gradients'
      (so its state's dtype changes after the first step). A schedule's ``alpha`` is cast to
      the moment's dtype, as a Python number is.
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    _decay_or_schedule("b3", b3)
    if not callable(alpha):
        check_non_negative("alpha", alpha, also=_SCHEDULE)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)
    mu_dtype = _dtypes.canonical(mu_dtype)

    def init(params: PyTree) -> ScaleByAdemamixState:
        check_state_dtype("mu_dtype", mu_dtype, params)
        return ScaleByAdemamixState(
            count=jnp.zeros([], jnp.int32),
            count_m2=jnp.zeros([], jnp.int32),
            m1=zeros_like(params, mu_dtype),
            m2=zeros_like(params, mu_dtype),
            nu=zeros_like(params, mu_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_ademamix", updates, params, "nu", state.nu)
        del params, extra_args
        b3_now, alpha_now = _at(b3, state.count_m2), _at(alpha, state.count_m2)
        m1 = update_moment(updates, state.m1, b1, 1)
        m2 = update_moment(updates, state.m2, b3_now, 1)
        nu = update_moment(updates, state.nu, b2, 2)
        count = safe_increment(state.count)
        m1_hat = bias_correction(m1, b1, count)
        nu_hat = bias_correction(nu, b2, count)

        def mix(fast, slow):
            slow = _times(alpha_now, slow)
            dtype = _dtypes.result_type(fast, slow)
            return fast.astype(dtype) + slow.astype(dtype)

        numerator = jax.tree.map(mix, m1_hat, m2)
        new_updates = cast_like(adam_ratio(numerator, nu_hat, eps, eps_root), updates)
        new_state = ScaleByAdemamixState(
            count=count,
            count_m2=safe_increment(state.count_m2),
            m1=cast_like(m1, state.m1),
            m2=cast_like(m2, state.m2),
            nu=cast_like(nu, state.nu),
        )
        return new_updates, new_state

    return GradientTransformation(init, update)


@names_errors("ademamix")
def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: Scalar = 0.0,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""AdEMAMix with decoupled weight decay.

    .. math:: \theta_{t+1} = \theta_t - \eta_t \big(u_t + \text{weight\_decay}\; \theta_t\big)

    with :math:`u_t` from :func:`scale_by_ademamix`: ``chain(scale_by_ademamix(...),
    add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``, as
    optax composes it. Note the default ``alpha`` is 5 here and 6 in the atom, as in optax.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, b3, alpha, eps, eps_root, mu_dtype: as in :func:`scale_by_ademamix`.
      weight_decay: :math:`\lambda \ge 0`, multiplied by the learning rate.
      mask: which parameters decay (a tree of bools or a function of the parameters).

    Returns:
      The optimizer (state ``(ScaleByAdemamixState, decay state, step-size state)``).

    Raises:
      ValueError: a negative learning rate or weight decay, or an invalid
        :func:`scale_by_ademamix` argument.

    >>> import jax.numpy as jnp
    >>> opt = ademamix(learning_rate=0.1, alpha=0.0)
    >>> params = jnp.zeros(1)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(params), params)
    >>> [round(x, 4) for x in u.tolist()]  # with alpha = 0, Adam's first step
    [-0.1]

    References:
      Pagliardini, Ablin and Grangier, *The AdEMAMix Optimizer: Better, Faster, Older*, 2024.
    """
    check_non_negative("weight_decay", weight_decay)
    return chain(
        scale_by_ademamix(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_required_learning_rate(learning_rate),
    )


@names_errors("scale_by_simplified_ademamix")
def scale_by_simplified_ademamix(
    b1: Scalar = 0.99,
    b2: Scalar = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
) -> GradientTransformation:
    r"""Rescale updates by Simplified AdEMAMix: an undamped momentum plus the gradient.

    .. math::

        m_t &= g_t + \text{b1}\; m_{t-1}, \qquad
        n_t = |g_t|^2 + \text{b2}\,(n_{t-1} - |g_t|^2) \\
        u_t &= \frac{m_t + \text{alpha}_t\, g_t}{\sqrt{n_t / (1 - \text{b2}^t) + \text{eps\_root}}
            + \text{eps}}

    for :math:`t = 1, 2, \ldots`, from :math:`m_0 = n_0 = 0`. :math:`m` is not damped by
    :math:`1 - \text{b1}` nor bias-corrected (it grows to about :math:`g / (1 - \text{b1})`);
    ``alpha`` may be a schedule, evaluated at the count before the step.

    Args:
      b1: decay of the momentum, in ``[0, 1)``.
      b2: decay of the second moment, in ``[0, 1)``.
      alpha: weight of the current gradient, ``>= 0``, or a schedule of it.
      eps: added to the denominator outside the square root, ``>= 0``.
      eps_root: added inside the square root, ``>= 0``.

    Returns:
      A transformation with state :class:`ScaleBySimplifiedAdEMAMixState` ``(t, m, n)``.

    Raises:
      ValueError: ``b1``/``b2`` outside ``[0, 1)``, a negative ``alpha``, ``eps`` or
        ``eps_root``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_simplified_ademamix(b2=0.5, alpha=1.0, eps=0.0)
    >>> u, state = opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))
    >>> u.tolist()  # (2 + 1 * 2) / sqrt(0.5 * 4 / 0.5)
    [2.0]

    References:
      Morwani et al., *Connections between Schedule-Free Optimizers, AdEMAMix, and
      Accelerated SGD Variants*, 2025.

    Differs from optax:
      optax multiplies by ``b1`` as a float32 array, so bfloat16 gradients give float32
      moments and updates there; here the moments keep the parameters' dtype and the updates
      the gradients'. In float32 the two agree bit for bit. For complex gradients :math:`n`
      averages :math:`|g|^2` (real), where optax averages :math:`g^2` (complex).
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    if not callable(alpha):
        check_non_negative("alpha", alpha, also=_SCHEDULE)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)

    def init(params: PyTree) -> ScaleBySimplifiedAdEMAMixState:
        return ScaleBySimplifiedAdEMAMixState(
            t=jnp.zeros([], jnp.int32), m=zeros_like(params), n=zeros_like(params)
        )

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_simplified_ademamix", updates, params, "n", state.n)
        del params, extra_args
        alpha_now = _at(alpha, state.t)

        def momentum(g, m):
            g, m = as_float(g), as_float(m)
            dtype = _dtypes.result_type(g, m)
            return g.astype(dtype) + _times(b1, m).astype(dtype)

        def second(g, n):
            g2, n = abs_sq(as_float(g)), as_float(n)
            dtype = _dtypes.result_type(g2, n)
            g2, n = g2.astype(dtype), n.astype(dtype)
            return g2 + jnp.asarray(b2, dtype) * (n - g2)

        m = jax.tree.map(momentum, updates, state.m)
        n = jax.tree.map(second, updates, state.n)
        t = safe_increment(state.t)
        n_hat = bias_correction(n, b2, t)

        def plus_gradient(m_, g):
            g = _times(alpha_now, g)
            dtype = _dtypes.result_type(m_, g)
            return m_.astype(dtype) + g.astype(dtype)

        numerator = jax.tree.map(plus_gradient, m, updates)
        new_updates = cast_like(adam_ratio(numerator, n_hat, eps, eps_root), updates)
        new_state = ScaleBySimplifiedAdEMAMixState(t=t, m=cast_like(m, state.m), n=cast_like(n, state.n))
        return new_updates, new_state

    return GradientTransformation(init, update)


@names_errors("simplified_ademamix")
def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.99,
    b2: Scalar = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    weight_decay: Scalar = 0.0,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""Simplified AdEMAMix with decoupled weight decay.

    .. math:: \theta_{t+1} = \theta_t - \eta_t \big(u_t + \text{weight\_decay}\; \theta_t\big)

    with :math:`u_t` from :func:`scale_by_simplified_ademamix`, composed as optax does
    (``add_decayed_weights``, then ``scale_by_learning_rate``). Since :math:`m` is undamped,
    a learning rate about :math:`1 - \text{b1}` times Adam's gives steps of Adam's size.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, alpha, eps, eps_root: as in :func:`scale_by_simplified_ademamix`.
      weight_decay: :math:`\lambda \ge 0`, multiplied by the learning rate.
      mask: which parameters decay (a tree of bools or a function of the parameters).

    Returns:
      The optimizer (state ``(ScaleBySimplifiedAdEMAMixState, decay state, step-size state)``).

    Raises:
      ValueError: a negative learning rate or weight decay, or an invalid
        :func:`scale_by_simplified_ademamix` argument.

    >>> import jax.numpy as jnp
    >>> opt = simplified_ademamix(learning_rate=0.01)
    >>> params = jnp.zeros(1)
    >>> u, _ = opt.update(jnp.asarray([3.0]), opt.init(params), params)
    >>> [round(x, 4) for x in u.tolist()]  # -0.01 * 3 / sqrt(9): the first step is -lr sign(g)
    [-0.01]

    References:
      Morwani et al., *Connections between Schedule-Free Optimizers, AdEMAMix, and
      Accelerated SGD Variants*, 2025.
    """
    check_non_negative("weight_decay", weight_decay)
    return chain(
        scale_by_simplified_ademamix(b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_required_learning_rate(learning_rate),
    )
