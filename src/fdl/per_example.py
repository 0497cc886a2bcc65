r"""Per-example gradients, their norms, and the gradient noise scale.

A minibatch gradient is the mean of :math:`B` per-example gradients
:math:`g_i = \nabla_\theta \ell(\theta; x_i)`. Autodiff of the mean loss gives only the mean;
``jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))`` gives every :math:`g_i` at once, batched into
the same matrix products (no Python loop). With them come the quantities that describe gradient
*noise*: per-example norms (what DP-SGD clips, what outlier detection reads) and the spread of
the :math:`g_i` around their mean, the covariance

.. math::

    G = \mathbb{E}[g_i], \qquad \Sigma = \mathbb{E}\big[(g_i - G)(g_i - G)^\top\big],

whose ratio of size to signal is McCandlish et al.'s *simple noise scale*
:math:`B_{\text{simple}} = \operatorname{tr}\Sigma / \lVert G\rVert^2`: batches much smaller than
:math:`B_{\text{simple}}` are dominated by noise, much larger ones waste examples.

``loss_fn(params, example) -> scalar`` takes ONE example (a pytree of arrays without the batch
axis); ``batch`` is the same pytree with a leading axis of size :math:`B` on every leaf.

References:
    S. McCandlish, J. Kaplan, D. Amodei and the OpenAI Dota Team, "An Empirical Model of
    Large-Batch Training", arXiv:1812.06162, 2018 (appendix A: the estimators).
    I. Goodfellow, "Efficient Per-Example Gradient Computations", arXiv:1510.01799, 2015.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import check_positive_int
from fdl._paths import path_label

__all__ = [
    "NoiseScale",
    "example_norms",
    "gradient_noise_scale",
    "per_example_grad_norms",
    "per_example_grads",
]

PyTree = Any


def _leading_size(name: str, tree: PyTree) -> int:
    """The common leading-axis size of ``tree``'s leaves, else a message listing the paths."""
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    if not leaves:
        raise ValueError(f"`{name}` has no arrays (an empty pytree)")
    sizes = {}
    for path, leaf in leaves:
        shape = jnp.shape(leaf)
        label = path_label(path)
        if len(shape) == 0:
            raise ValueError(f"`{name}` leaf {label} is a scalar: every leaf needs a leading example axis")
        sizes[label] = shape[0]
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{label}: {n}" for label, n in sizes.items())
        raise ValueError(f"`{name}` leaves must share their leading (example) axis, got sizes {{{listing}}}")
    size = next(iter(sizes.values()))
    if size < 1:
        raise ValueError(f"`{name}` must hold at least 1 example, got a leading axis of {size}")
    return size


def per_example_grads(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    batch: PyTree,
    *,
    chunk_size: int | None = None,
) -> PyTree:
    r"""The gradient of ``loss_fn`` at every example of ``batch``, stacked on a leading axis.

    .. math::

        g_i = \nabla_\theta\, \ell(\theta;\, x_i), \quad i = 1, \dots, B, \qquad
        \frac{1}{B} \sum_{i} g_i = \nabla_\theta \frac{1}{B} \sum_i \ell(\theta; x_i)

    Computed as ``jax.vmap(jax.grad(loss_fn), in_axes=(None, 0))``: one batched backward pass.

    Args:
      loss_fn: ``loss_fn(params, example) -> scalar``, ``example`` one slice of ``batch``.
      params: the pytree to differentiate with respect to.
      batch: a pytree whose leaves share a leading axis of size :math:`B`.
      chunk_size: if given, process that many examples at a time (``jax.lax.map`` over chunks),
        capping memory at ``chunk_size`` gradients in flight; the result is the same.

    Returns:
      A pytree like ``params`` with a leading axis of size :math:`B` on every leaf.

    Raises:
      ValueError: ``batch`` leaves whose leading axes differ (listing them), a scalar leaf, an
        empty batch, or a ``chunk_size`` that is not a positive int.

    >>> import jax.numpy as jnp
    >>> loss = lambda w, x: jnp.sum(w * x) ** 2 / 2  # gradient (w . x) x
    >>> per_example_grads(loss, jnp.array([1.0, 1.0]), jnp.array([[1.0, 0.0], [1.0, 1.0]])).tolist()
    [[1.0, 0.0], [2.0, 2.0]]
    """
    _leading_size("batch", batch)
    grad_one = jax.grad(loss_fn)
    if chunk_size is None:
        return jax.vmap(grad_one, in_axes=(None, 0))(params, batch)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    return jax.lax.map(lambda example: grad_one(params, example), batch, batch_size=chunk_size)


def example_norms(grads: PyTree, *, per_leaf: bool = False) -> Any:
    r"""The Euclidean norm of each example's gradient, over all leaves together (and per leaf).

    .. math::

        \lVert g_i \rVert = \Big(\sum_{\ell} \sum_{j} g_{i,\ell j}^2\Big)^{1/2}, \qquad
        \lVert g_{i,\ell} \rVert = \Big(\sum_{j} g_{i,\ell j}^2\Big)^{1/2}

    Args:
      grads: per-example gradients, a pytree with a shared leading axis :math:`B`.
      per_leaf: also return each leaf's norms.

    Returns:
      ``(B,)`` global norms, or ``(global, leaf_norms)`` with ``leaf_norms`` a pytree like
      ``grads`` of ``(B,)`` arrays.

    Raises:
      ValueError: leaves whose leading axes differ, or an empty tree.

    The norm of an all-zero example gradient is 0 with a zero derivative (not NaN), so the
    norms can sit inside a loss that is differentiated.

    >>> import jax.numpy as jnp
    >>> example_norms({"a": jnp.array([[3.0], [0.0]]), "b": jnp.array([[4.0], [1.0]])}).tolist()
    [5.0, 1.0]
    """
    _leading_size("grads", grads)

    def squares(leaf: jax.Array) -> jax.Array:
        flat = jnp.reshape(leaf, (leaf.shape[0], -1))  # (B, size)
        return jnp.sum(flat * flat, axis=1)  # (B,)

    leaf_sq = jax.tree.map(squares, grads)
    norms = _sqrt_zero_safe(functools.reduce(jnp.add, jax.tree.leaves(leaf_sq)))  # (B,)
    return (norms, jax.tree.map(_sqrt_zero_safe, leaf_sq)) if per_leaf else norms


def _sqrt_zero_safe(squares: jax.Array) -> jax.Array:
    """``sqrt`` with gradient 0 at 0 (the plain one's is ``inf * 0 = NaN`` for a zero gradient)."""
    positive = squares > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1)), 0)


def per_example_grad_norms(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    batch: PyTree,
    *,
    per_leaf: bool = False,
    chunk_size: int | None = None,
) -> Any:
    r"""Per-example gradient norms in one call: :func:`per_example_grads` then :func:`example_norms`.

    .. math:: \lVert \nabla_\theta\, \ell(\theta; x_i) \rVert_2, \quad i = 1, \dots, B

    Returns:
      ``(B,)`` norms, or ``(norms, leaf_norms)`` with ``per_leaf=True``.

    Raises:
      ValueError: as :func:`per_example_grads`.

    >>> import jax.numpy as jnp
    >>> loss = lambda w, x: jnp.sum(w * x)  # gradient x
    >>> per_example_grad_norms(loss, jnp.zeros(2), jnp.array([[3.0, 4.0], [0.0, 2.0]])).tolist()
    [5.0, 2.0]
    """
    grads = per_example_grads(loss_fn, params, batch, chunk_size=chunk_size)
    return example_norms(grads, per_leaf=per_leaf)


class NoiseScale(NamedTuple):
    r"""The simple gradient noise scale and its two ingredients (see :func:`gradient_noise_scale`).

    Attributes:
      b_simple: :math:`\widehat{\operatorname{tr}\Sigma} / \widehat{\lVert G\rVert^2}`.
      trace_sigma: the estimate of :math:`\operatorname{tr}\Sigma`.
      grad_norm_sq: the estimate of :math:`\lVert G\rVert^2`.
    """

    b_simple: jax.Array
    trace_sigma: jax.Array
    grad_norm_sq: jax.Array


def gradient_noise_scale(grads: PyTree, *, unbiased: bool = True) -> NoiseScale:
    r"""The simple noise scale :math:`B_{\text{simple}} = \operatorname{tr}\Sigma / \lVert G\rVert^2`
    from :math:`B` per-example gradients.

    With :math:`\bar g = \frac1B \sum_i g_i` (the batch gradient) and the squared distances
    summed over every parameter of every leaf:

    * ``unbiased=True`` (default): both ingredients are unbiased,

      .. math::

          \widehat{\operatorname{tr}\Sigma} = \frac{1}{B-1} \sum_{i=1}^{B} \lVert g_i - \bar g
          \rVert^2, \qquad
          \widehat{\lVert G\rVert^2} = \lVert \bar g \rVert^2 -
          \frac{\widehat{\operatorname{tr}\Sigma}}{B},

      since :math:`\mathbb{E}\lVert \bar g\rVert^2 = \lVert G\rVert^2 + \operatorname{tr}\Sigma / B`
      for independent examples. This is McCandlish et al.'s appendix A pair (there written with
      two batch sizes; here the small batch is a single example). The ratio itself is not
      unbiased but consistent (its bias is :math:`O(1/B)`), and :math:`\widehat{\lVert G\rVert^2}`
      can come out negative when the noise swamps the signal, making ``b_simple`` negative: a sign
      that :math:`B` is far below the noise scale.
    * ``unbiased=False``: the plug-in estimates :math:`\frac1B \sum_i \lVert g_i - \bar g\rVert^2`
      (expectation :math:`\frac{B-1}{B}\operatorname{tr}\Sigma`) and :math:`\lVert\bar g\rVert^2`
      (expectation :math:`\lVert G\rVert^2 + \operatorname{tr}\Sigma/B`): always positive,
      biased towards a smaller noise scale.

    Args:
      grads: per-example gradients (:func:`per_example_grads`), a shared leading axis :math:`B`.
      unbiased: which estimators (above).

    Returns:
      A :class:`NoiseScale` of scalars.

    Raises:
      ValueError: leaves whose leading axes differ; fewer than 2 examples with
        ``unbiased=True`` (the sample covariance needs two).

    >>> import jax.numpy as jnp
    >>> g = jnp.array([[1.0], [3.0]])  # mean 2, sample variance 2
    >>> [round(float(v), 4) for v in gradient_noise_scale(g)]  # 2 / (4 - 2/2)
    [0.6667, 2.0, 3.0]
    """
    size = _leading_size("grads", grads)
    if unbiased and size < 2:
        raise ValueError(f"`grads` must hold at least 2 examples for the unbiased estimators, got {size}")
    leaves = jax.tree.leaves(grads)
    means = [jnp.mean(g, axis=0) for g in leaves]
    mean_sq = jnp.asarray(sum(jnp.sum(m * m) for m in means))  # |mean g|^2 over all leaves
    pairs = zip(leaves, means, strict=True)
    spread = jnp.asarray(sum(jnp.sum((g - m[None]) ** 2) for g, m in pairs))  # sum_i |g_i - mean g|^2
    if unbiased:
        trace = spread / (size - 1)
        norm_sq = mean_sq - trace / size
    else:
        trace = spread / size
        norm_sq = mean_sq
    return NoiseScale(trace / norm_sq, trace, norm_sq)
