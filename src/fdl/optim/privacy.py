r"""Differentially private SGD: clip each example's gradient, sum, add Gaussian noise.

A training step is :math:`(\varepsilon, \delta)`-differentially private when no single example
changes the distribution of its result by much. DP-SGD (Abadi et al., 2016) gets there in two
moves: it bounds every example's influence by clipping its gradient to the norm :math:`C`,
then hides what is left under Gaussian noise of standard deviation :math:`\sigma C`:

.. math::

    \bar g = \frac{1}{B} \Bigl( \sum_{i=1}^{B} g_i \min\Bigl(1, \frac{C}{\|g_i\|_2}\Bigr)
        + \mathcal N(0, \sigma^2 C^2 I) \Bigr)

The updates that go in are therefore *per-example* gradients, each leaf with the batch on its
axis 0 (``jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)`` gives them); the
updates that come out have the parameters' shapes. The privacy spent over a run (the
accountant) is outside the optimizer's scope.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative, names_errors
from fdl._paths import path_label
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    identity,
    scale_by_required_learning_rate,
)
from fdl.optim.momentum import trace
from fdl.optim.noise import Key, check_key
from fdl.tree import floats, norm

__all__ = ["DifferentiallyPrivateAggregateState", "differentially_private_aggregate", "dpsgd"]

PyTree = Any
Scalar = float | jax.Array


class DifferentiallyPrivateAggregateState(NamedTuple):
    """The PRNG key of the next step's noise."""

    rng_key: jax.Array


def _check_batch(updates: PyTree) -> int:
    """The batch size, the common length of every leaf's axis 0; raise naming the leaves'
    shapes if there is none."""
    paths = jax.tree_util.tree_flatten_with_path(updates)[0]
    shapes = {path_label(path): jnp.shape(leaf) for path, leaf in paths}
    sizes = {shape[0] if shape else -1 for shape in shapes.values()}  # -1: no axis 0
    if len(sizes) != 1 or -1 in sizes:
        listed = ", ".join(f"{path}: {shape}" for path, shape in shapes.items()) or "no leaves"
        raise ValueError(
            "differentially_private_aggregate needs per-example gradients, every leaf with the "
            "batch on axis 0 (as jax.vmap(jax.grad(loss), in_axes=(None, 0)) returns them), got "
            f"shapes {listed}"
        )
    (size,) = sizes
    return size


@names_errors("differentially_private_aggregate")
def differentially_private_aggregate(
    l2_norm_clip: Scalar,
    noise_multiplier: Scalar,
    key: Key | None = None,
) -> GradientTransformation:
    r"""Clip per-example gradients, sum them, add Gaussian noise and divide by the batch size.

    .. math::

        \bar g = \frac{1}{B} \Bigl( \sum_{i=1}^{B} \min\Bigl(1,
            \frac{\text{l2\_norm\_clip}}{\|g_i\|_2}\Bigr) g_i
            + \text{l2\_norm\_clip} \cdot \text{noise\_multiplier}\; \xi \Bigr),
        \qquad \xi \sim \mathcal N(0, I)

    where :math:`g_i` is example :math:`i`'s gradient (row :math:`i` of every leaf) and
    :math:`\|g_i\|_2` its norm over all leaves together (the factor is 1 where it is 0/0). At
    every step the state's key is split into ``1 + leaves`` keys: the first is the next state's,
    the others draw each leaf's noise in tree order, in the dtype of the clipped sum: optax's
    exact use of the key, so the noise equals optax's bit for bit.

    Args:
      l2_norm_clip: :math:`C \ge 0`, the largest norm an example's gradient keeps.
      noise_multiplier: :math:`\sigma \ge 0`, the noise's standard deviation relative to
        ``l2_norm_clip``.
      key: a PRNG key (``jax.random.key(0)``) or an integer seed; ``None`` means the seed 0.

    Returns:
      A transformation with state :class:`DifferentiallyPrivateAggregateState`
      ``(rng_key,)``; its updates have the batch axis summed away. Put it first in a chain.

    Raises:
      TypeError: a ``key`` that is neither a PRNG key nor an integer seed.
      ValueError: a negative ``l2_norm_clip`` or ``noise_multiplier``; in ``update``, leaves
        without a common batch axis 0.

    >>> import jax, jax.numpy as jnp
    >>> opt = differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0, key=0)
    >>> per_example = jnp.asarray([[3.0, 4.0], [0.3, 0.4]])  # norms 5 (clipped to 1) and 0.5
    >>> u, _ = opt.update(per_example, opt.init(jnp.zeros(2)))
    >>> [round(x, 4) for x in u.tolist()]  # ((0.6, 0.8) + (0.3, 0.4)) / 2
    [0.45, 0.6]

    References:
      Abadi et al., *Deep Learning with Differential Privacy*, ACM CCS 2016.

    Differs from optax:
      optax warns when ``key`` is ``None`` and still accepts a deprecated ``seed``; here
      ``None`` is the seed 0 and there is no ``seed``. Updates keep the gradients' dtype
      (optax's become float32 for bfloat16 gradients and a float32 ``l2_norm_clip`` array).
      Leaves without a common batch axis raise a ``ValueError`` that lists their shapes
      (optax: an ``IndexError`` for an empty tree, a shape error from ``tensordot`` otherwise).
    """
    check_non_negative("l2_norm_clip", l2_norm_clip)
    check_non_negative("noise_multiplier", noise_multiplier)
    rng_key = check_key("key", 0 if key is None else key)
    noise_std = l2_norm_clip * noise_multiplier

    def init(params: PyTree) -> DifferentiallyPrivateAggregateState:
        del params
        return DifferentiallyPrivateAggregateState(rng_key=rng_key)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = floats(updates)  # integer / Python-number gradients as floats
        batch = _check_batch(updates)
        leaves, treedef = jax.tree.flatten(updates)
        norms = jax.vmap(lambda rows: norm(rows))(leaves)  # (B,): each example's norm
        clip_dtype = _dtypes.result_type(l2_norm_clip, norms)
        ratio = jnp.asarray(l2_norm_clip, clip_dtype) / norms.astype(clip_dtype)
        factors = jnp.nan_to_num(jnp.minimum(ratio, jnp.ones([], clip_dtype)), nan=1.0)  # (B,)
        next_key, *leaf_keys = jax.random.split(state.rng_key, len(leaves) + 1)

        def aggregate(g, k):
            dtype = _dtypes.result_type(factors, g)
            total = jnp.tensordot(factors.astype(dtype), g.astype(dtype), axes=1)  # sum_i f_i g_i
            xi = jax.random.normal(k, total.shape, total.dtype)
            noisy_dtype = _dtypes.result_type(total, noise_std)
            noisy = total.astype(noisy_dtype) + jnp.asarray(noise_std, noisy_dtype) * xi.astype(noisy_dtype)
            return (noisy / batch).astype(g.dtype)

        aggregated = [aggregate(g, k) for g, k in zip(leaves, leaf_keys, strict=True)]
        return jax.tree.unflatten(treedef, aggregated), DifferentiallyPrivateAggregateState(next_key)

    return GradientTransformation(init, update)


@names_errors("dpsgd")
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip: Scalar,
    noise_multiplier: Scalar,
    seed: Key,
    momentum: Scalar | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""DP-SGD: SGD (with optional momentum) on clipped, noised per-example gradients.

    .. math::

        \theta_{t+1} = \theta_t - \text{learning\_rate}_t\; m_t, \qquad
        m_t = \bar g_t\ (+\ \text{momentum}\; m_{t-1})

    with :math:`\bar g_t` the private aggregate of :func:`differentially_private_aggregate`:
    ``chain(differentially_private_aggregate(l2_norm_clip, noise_multiplier, seed),
    trace(momentum, nesterov) or identity(), scale_by_learning_rate(learning_rate))``, as
    optax composes it.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      l2_norm_clip: :math:`C \ge 0`, the largest norm an example's gradient keeps.
      noise_multiplier: :math:`\sigma \ge 0`, the noise's standard deviation relative to
        ``l2_norm_clip``.
      seed: the noise's integer seed, or a PRNG key.
      momentum: the momentum :math:`\mu \in [0, 1)`, or ``None`` for none.
      nesterov: Nesterov momentum.

    Returns:
      The optimizer; its ``update`` takes per-example gradients (batch on axis 0).

    Raises:
      TypeError: a ``seed`` that is neither an integer nor a PRNG key.
      ValueError: a negative learning rate, clip or noise multiplier, a momentum outside
        ``[0, 1)``; in ``update``, leaves without a common batch axis 0.

    >>> import jax.numpy as jnp
    >>> opt = dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.0, seed=0)
    >>> u, _ = opt.update(jnp.asarray([[3.0, 4.0]]), opt.init(jnp.zeros(2)))  # one example
    >>> [round(x, 4) for x in u.tolist()]
    [-0.06, -0.08]

    References:
      Abadi et al., *Deep Learning with Differential Privacy*, ACM CCS 2016.

    Differs from optax:
      ``seed`` may also be a PRNG key (optax: an int only).
    """
    if momentum is not None:
        check_decay("momentum", momentum)
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, check_key("seed", seed)),
        identity() if momentum is None else trace(decay=momentum, nesterov=nesterov),
        scale_by_required_learning_rate(learning_rate),
    )
