r"""Layer-wise trust ratios: LARS and LAMB rescale each parameter's update to its own size.

With very large batches one global learning rate is too large for some layers and too small for
others: the ratio :math:`\|\theta\| / \|u\|` differs by orders of magnitude between them. LARS
and LAMB multiply the update of each parameter array (each leaf: a layer's weights, its bias)
by its **trust ratio**

.. math:: \tau = c\, \frac{\|\theta\|}{\|u\| + \epsilon},

so that every layer moves by about the same *relative* amount :math:`\eta c` per step,
whatever the scale of its gradient. LARS applies it to momentum SGD (You et al., 2017), LAMB
to Adam's update plus decoupled weight decay (You et al., 2020). Where either norm is zero
(a bias initialized at zero, say) the ratio is 1, so the parameter still moves.

:func:`scale_by_param_block_norm` and :func:`scale_by_param_block_rms` are the numerator
alone: they multiply each leaf's update by the norm (or root mean square) of its parameters,
so a step is relative to the size of what it moves.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_decay, check_non_negative, check_same_shapes, names_errors
from fdl.optim.adam import scale_by_adam
from fdl.optim.base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    init_empty_state,
    scale_by_required_learning_rate,
)
from fdl.optim.momentum import trace
from fdl.optim.weight_decay import Mask, add_decayed_weights, masked
from fdl.tree import abs_sq, floats

__all__ = [
    "ScaleByTrustRatioState",
    "scale_by_trust_ratio",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "lars",
    "lamb",
]

PyTree = Any

ScaleByTrustRatioState = EmptyState
"""The state of :func:`scale_by_trust_ratio` (no leaves), as optax names it."""
Scalar = float | jax.Array


def _norm_at_least(x: jax.Array, min_norm: Any) -> jax.Array:
    r""":math:`\max(\|x\|_2, \text{min\_norm})`, with a finite derivative where :math:`\|x\| \le`
    ``min_norm`` (the norm's derivative at 0 is 0/0: the small ``x`` is swapped for ones
    before the norm that is differentiated, and the result for ``min_norm``)."""
    norm = jnp.linalg.norm(x)
    small = norm <= min_norm
    safe = jnp.linalg.norm(jnp.where(small, jnp.ones_like(x), x))
    return jnp.where(small, min_norm, safe)


def _rms_at_least(x: jax.Array, min_rms: Any) -> jax.Array:
    r""":math:`\max(\sqrt{\operatorname{mean}|x|^2}, \text{min\_rms})`, with a finite derivative
    where the root mean square is at most ``min_rms`` (as :func:`_norm_at_least`)."""
    rms = jnp.sqrt(jnp.mean(abs_sq(x)))
    small = rms <= min_rms
    safe = jnp.sqrt(jnp.mean(abs_sq(jnp.where(small, jnp.ones_like(x), x))))
    return jnp.where(small, min_rms, safe)


def _scaled_by_params(caller: str, size) -> GradientTransformation:
    """The stateless transformation ``u = g * size(params)``, leaf by leaf."""

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                f"{caller}: `params` is None; the update is scaled by the size of the parameters, "
                "so pass them: update(updates, state, params)"
            )
        updates, params = floats(updates), floats(params)  # integers as floats
        check_same_shapes(caller, "`updates`", updates, "`params`", params)
        return jax.tree.map(lambda u, p: u * size(p).astype(u.dtype), updates, params), state

    return GradientTransformation(init_empty_state, update)


@names_errors("scale_by_param_block_norm")
def scale_by_param_block_norm(min_scale: Scalar = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by its parameters' norm: :math:`u = g\, \max(\|\theta\|_2,
    \text{min\_scale})` (the norm of the whole leaf).

    Args:
      min_scale: the floor of the norm, ``>= 0`` (a zero-initialized leaf still moves).

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_param_block_norm()
    >>> params = {"w": jnp.asarray([3.0, 4.0]), "b": jnp.zeros(1)}
    >>> u, _ = opt.update({"w": jnp.ones(2), "b": jnp.ones(1)}, opt.init(params), params)
    >>> u["w"].tolist(), [round(x, 6) for x in u["b"].tolist()]
    ([5.0, 5.0], [0.001])
    """
    check_non_negative("min_scale", min_scale)
    return _scaled_by_params("scale_by_param_block_norm", lambda p: _norm_at_least(p, min_scale))


@names_errors("scale_by_param_block_rms")
def scale_by_param_block_rms(min_scale: Scalar = 1e-3) -> GradientTransformation:
    r"""Multiply each leaf's update by its parameters' root mean square: :math:`u = g\,
    \max(\sqrt{\operatorname{mean}_i \theta_i^2}, \text{min\_scale})`.

    Args:
      min_scale: the floor of the root mean square, ``>= 0``.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_param_block_rms()
    >>> params = jnp.asarray([3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # rms = 5 / sqrt(8)
    >>> u, _ = opt.update(jnp.ones(8), opt.init(params), params)
    >>> round(float(u[0]), 4)
    1.7678
    """
    check_non_negative("min_scale", min_scale)
    return _scaled_by_params("scale_by_param_block_rms", lambda p: _rms_at_least(p, min_scale))


@names_errors("scale_by_trust_ratio")
def scale_by_trust_ratio(
    min_norm: Scalar = 0.0,
    trust_coefficient: Scalar = 1.0,
    eps: Scalar = 0.0,
) -> GradientTransformation:
    r"""Multiply each leaf's update by its trust ratio.

    .. math::

        \tau = \begin{cases}
            1 & \|\theta\| = 0 \text{ or } \|g\| = 0 \\
            \text{trust\_coefficient}\; \dfrac{\max(\|\theta\|, \text{min\_norm})}
                {\max(\|g\|, \text{min\_norm}) + \text{eps}} & \text{otherwise}
        \end{cases}, \qquad u = \tau\, g

    with :math:`\|\cdot\|` the Euclidean norm of the whole leaf (the norms are taken *after*
    the ``min_norm`` floor, so with ``min_norm > 0`` the ratio is never the fallback 1).

    Args:
      min_norm: the floor of both norms, ``>= 0``.
      trust_coefficient: :math:`c`, the relative step per unit learning rate, ``>= 0``.
      eps: added to the update's norm, ``>= 0``.

    Returns:
      A stateless transformation (state :class:`~fdl.optim.base.EmptyState`); its ``update``
      needs ``params``.

    Raises:
      ValueError: a negative argument; in ``update``, ``params=None``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_trust_ratio()
    >>> params = {"w": jnp.asarray([3.0, 4.0]), "b": jnp.zeros(2)}
    >>> grads = {"w": jnp.asarray([0.0, 0.5]), "b": jnp.asarray([1.0, 1.0])}
    >>> u, _ = opt.update(grads, opt.init(params), params)
    >>> u["w"].tolist(), u["b"].tolist()  # w: |w| / |g| = 10; b: |b| = 0, ratio 1
    ([0.0, 5.0], [1.0, 1.0])

    References:
      You, Gitman and Ginsburg, *Large Batch Training of Convolutional Networks*, 2017.
    """
    check_non_negative("min_norm", min_norm)
    check_non_negative("trust_coefficient", trust_coefficient)
    check_non_negative("eps", eps)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_trust_ratio: `params` is None; the trust ratio is |params| / |updates|, "
                "so pass the parameters: update(updates, state, params)"
            )
        updates, params = floats(updates), floats(params)  # integers as floats
        check_same_shapes("scale_by_trust_ratio", "`updates`", updates, "`params`", params)

        def one(u, p):
            param_norm = _norm_at_least(p, min_norm)
            update_norm = _norm_at_least(u, min_norm)
            ratio = trust_coefficient * param_norm / (update_norm + eps)
            fallback = jnp.logical_or(param_norm == 0.0, update_norm == 0.0)
            return u * jnp.where(fallback, jnp.asarray(1.0, p.dtype), ratio.astype(p.dtype))

        return jax.tree.map(one, updates, params), state

    return GradientTransformation(init_empty_state, update)


@names_errors("lars")
def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    trust_coefficient: Scalar = 0.001,
    eps: Scalar = 0.0,
    trust_ratio_mask: Mask = True,
    momentum: Scalar = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS: momentum SGD on trust-ratio-scaled, weight-decayed gradients.

    .. math::

        d_t = g_t + \lambda \theta_t, \qquad
        m_t = \eta_t\, \tau(d_t)\, d_t + \mu\, m_{t-1}, \qquad
        \theta_{t+1} = \theta_t - m_t

    with :math:`\tau` the trust ratio of :func:`scale_by_trust_ratio` (``trust_coefficient``,
    ``eps``). As in optax the learning rate is applied *before* the momentum (the trace sums
    steps, not gradients): ``chain(add_decayed_weights(weight_decay, weight_decay_mask),
    masked(scale_by_trust_ratio(trust_coefficient=..., eps=...), trust_ratio_mask),
    scale_by_learning_rate(learning_rate), trace(momentum, nesterov))``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      weight_decay_mask: which leaves are decayed (a bool, a tree of bools, or a function of
        the parameters returning one); the biases and norms are usually left out.
      trust_coefficient: :math:`c` of the trust ratio, ``>= 0``.
      eps: added to the norm of the update in the trust ratio, ``>= 0``.
      trust_ratio_mask: which leaves get the trust ratio (as ``weight_decay_mask``).
      momentum: :math:`\mu \in [0, 1)`.
      nesterov: Nesterov momentum.

    Returns:
      The optimizer (its ``update`` needs ``params``).

    Raises:
      ValueError: a negative rate, decay, coefficient or eps, or a momentum outside [0, 1).

    >>> import jax.numpy as jnp
    >>> opt = lars(learning_rate=0.5, trust_coefficient=0.1, momentum=0.0)
    >>> params = jnp.asarray([3.0, 4.0])
    >>> u, _ = opt.update(jnp.asarray([0.0, 1.0]), opt.init(params), params)
    >>> u.tolist()  # tau = 0.1 * 5 / 1: a step of 0.5 * 0.5 along -g
    [0.0, -0.25]

    References:
      You, Gitman and Ginsburg, *Large Batch Training of Convolutional Networks*, 2017.
    """
    check_decay("momentum", momentum)  # named as the caller spelled it, not trace's `decay`
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), mask=trust_ratio_mask),
        scale_by_required_learning_rate(learning_rate),
        trace(decay=momentum, nesterov=nesterov),
    )


@names_errors("lamb")
def lamb(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-6,
    eps_root: Scalar = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask | None = None,
) -> GradientTransformation:
    r"""LAMB: Adam's step plus decoupled weight decay, rescaled by each leaf's trust ratio.

    .. math::

        r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \text{eps\_root}} + \text{eps}}
            + \lambda \theta_t, \qquad
        \theta_{t+1} = \theta_t - \eta_t\, \frac{\|\theta_t\|}{\|r_t\|}\, r_t

    (the ratio 1 where either norm is 0): ``chain(scale_by_adam(b1, b2, eps, eps_root),
    add_decayed_weights(weight_decay, mask), scale_by_trust_ratio(),
    scale_by_learning_rate(learning_rate))``, as optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      b1, b2, eps, eps_root: as in :func:`~fdl.optim.adam.scale_by_adam` (``eps`` defaults
        to 1e-6, as in the paper and optax).
      weight_decay: :math:`\lambda \ge 0`, a number or a schedule.
      mask: which leaves are decayed (``None``: all).

    Returns:
      The optimizer (its ``update`` needs ``params``).

    Raises:
      ValueError: an invalid rate, beta, eps or decay.

    >>> import jax.numpy as jnp
    >>> opt = lamb(learning_rate=0.1)
    >>> params = jnp.asarray([3.0, 4.0])
    >>> u, _ = opt.update(jnp.asarray([1.0, 1.0]), opt.init(params), params)
    >>> [round(x, 4) for x in u.tolist()]  # r = (1, 1) (Adam's first step); |theta| / |r| = 5 / sqrt 2
    [-0.3536, -0.3536]

    References:
      You et al., *Large Batch Optimization for Deep Learning: Training BERT in 76 minutes*,
      ICLR 2020.
    """
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay=weight_decay, mask=mask),
        scale_by_trust_ratio(),
        scale_by_required_learning_rate(learning_rate),
    )
