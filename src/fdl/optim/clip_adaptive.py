r"""Clipping by parts: each leaf, each unit, each example.

:func:`~fdl.optim.clipping.clip_by_global_norm` bounds the norm of the whole update. The
clippings here bound smaller pieces, each on its own:

* :func:`clip_by_block_rms`: each leaf (a layer's weight matrix, its bias) to a root mean square;
* :func:`adaptive_grad_clip`: each *unit* (an output column of a weight matrix, an output
  channel of a kernel) to a fraction of the same unit's parameter norm, so the bound follows the
  size of what it moves (Brock et al., 2021: training without batch normalization);
* :func:`per_example_global_norm_clip` and :func:`per_example_layer_norm_clip`: each *example's*
  gradient of a batch of per-example gradients, before they are summed, which bounds how much
  one example can change the model (the clipping step of differentially private SGD).

For complex gradients the size of an element is its magnitude :math:`|g_i|`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_non_negative, check_same_shapes, names_errors
from fdl._paths import path_label
from fdl.optim.base import EmptyState, GradientTransformation, init_empty_state
from fdl.optim.clipping import global_norm
from fdl.tree import abs_sq, floats

__all__ = [
    "AdaptiveGradClipState",
    "adaptive_grad_clip",
    "clip_by_block_rms",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
]

PyTree = Any
Scalar = float | jax.Array

AdaptiveGradClipState = EmptyState
""":func:`adaptive_grad_clip` keeps no state (optax's ``AdaptiveGradClipState`` is also
``EmptyState``)."""

_DIVISION_FLOOR = 1e-6
"""The unit norm of the gradient is divided by at least this (it matters only for a zero unit,
which is never clipped, so it only keeps a NaN out of the branch that is not taken)."""


@names_errors("clip_by_block_rms")
def clip_by_block_rms(threshold: Scalar) -> GradientTransformation:
    r"""Scale each leaf of the updates down to a root mean square of at most ``threshold``.

    .. math::

        \operatorname{rms}(g) = \sqrt{\tfrac1n \textstyle\sum_i |g_i|^2}, \qquad
        u = \begin{cases}
            g & \operatorname{rms}(g) \le \text{threshold} \\
            g \,\big/\, \dfrac{\operatorname{rms}(g)}{\text{threshold}} & \text{otherwise}
        \end{cases}

    for each leaf :math:`g` (its :math:`n` elements) on its own: a *block* is one parameter
    array, so each layer's weights and biases are bounded separately.

    Args:
      threshold: the largest root mean square of a leaf, ``>= 0``.

    Returns:
      A stateless transformation (state :class:`~fdl.optim.base.EmptyState`).

    Raises:
      ValueError: a negative ``threshold``.

    >>> import jax.numpy as jnp
    >>> opt = clip_by_block_rms(1.0)
    >>> g = {"w": jnp.asarray([3.0, 4.0, 0.0, 0.0]), "b": jnp.asarray([0.5])}  # rms 2.5 and 0.5
    >>> u, _ = opt.update(g, opt.init(None))
    >>> u["w"].tolist(), u["b"].tolist()
    ([1.2000000476837158, 1.600000023841858, 0.0, 0.0], [0.5])

    Differs from optax:
      with ``threshold = 0`` a zero leaf stays zero (optax divides 0 by 0 and returns NaN).
    """
    check_non_negative("threshold", threshold)

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = floats(updates)  # integer / Python-number updates as floats

        def one(g):
            rms = jnp.sqrt(jnp.mean(abs_sq(g)))
            bound = jnp.asarray(threshold).astype(rms.dtype)
            scaled = g / (rms / bound).astype(g.dtype)
            return jnp.where(rms <= bound, g, scaled)

        return jax.tree.map(one, updates), state

    return GradientTransformation(init_empty_state, update)


def _check_axis(axis: Any) -> None:
    def is_int(a: Any) -> bool:
        return isinstance(a, int) and not isinstance(a, bool)

    if axis is None or is_int(axis) or (isinstance(axis, tuple) and all(is_int(a) for a in axis)):
        return
    raise TypeError(f"`axis` must be an int, a tuple of ints or None, got {axis!r} ({type(axis).__name__})")


def _unit_axes(x: jax.Array, axis: int | tuple[int, ...] | None, path: str) -> int | tuple[int, ...] | None:
    """The axes summed over for the unit norms of ``x`` (``None``: all of them)."""
    if axis is not None:
        return axis
    if jnp.squeeze(x).ndim <= 1:  # a scalar or a vector (size-1 axes aside): one unit
        return None
    if x.ndim in (2, 3):  # (in, out) dense or (in, heads, out) attention: a unit per output
        return 0
    if x.ndim == 4:  # (H, W, in, out) convolution kernel: a unit per output channel
        return (0, 1, 2)
    if x.ndim == 5:  # (D, H, W, in, out) 3-d convolution kernel
        return (0, 1, 2, 3)
    raise ValueError(
        f"adaptive_grad_clip: the leaf {path} has shape {x.shape}; without `axis` the units are "
        "known for 1 to 5 dimensions (dense, attention and convolution layouts), so pass "
        "`axis`, the axes that one unit spans"
    )


def _unit_norms(x: jax.Array, axis: int | tuple[int, ...] | None, path: str) -> jax.Array:
    r""":math:`\sqrt{\sum |x|^2}` over each unit of ``x``, kept at ``x``'s rank (size 1 on the
    summed axes), in ``x``'s real dtype."""
    return jnp.sqrt(jnp.sum(abs_sq(x), axis=_unit_axes(x, axis, path), keepdims=True))


@names_errors("adaptive_grad_clip")
def adaptive_grad_clip(
    clipping: Scalar,
    eps: Scalar = 1e-3,
    axis: int | tuple[int, ...] | None = None,
) -> GradientTransformation:
    r"""Adaptive gradient clipping (AGC): bound each unit's gradient norm by a fraction of the
    same unit's parameter norm.

    .. math::

        M_k = \text{clipping}\; \max(\lVert \theta_k\rVert, \text{eps}), \qquad
        u_k = \begin{cases}
            g_k & \lVert g_k\rVert < M_k \\
            g_k\, \dfrac{M_k}{\max(\lVert g_k\rVert, 10^{-6})} & \text{otherwise}
        \end{cases}

    for every unit :math:`k` of every leaf, :math:`\lVert\cdot\rVert` the Euclidean norm of the
    unit (:math:`|g_i|` for complex elements). Without ``axis`` a unit is what the leaf's rank
    suggests: a scalar or a vector (an array with at most one axis longer than 1) is one unit;
    a 2- or 3-d array, ``(in, out)`` or ``(in, heads, out)``, has a unit per slice along axis 0
    (norms over axis 0); a 4-d ``(H, W, in, out)`` kernel, norms over axes 0, 1, 2; a 5-d
    ``(D, H, W, in, out)`` kernel, over axes 0 to 3. ``eps`` keeps a zero-initialized unit
    from freezing: its bound is ``clipping * eps``.

    Args:
      clipping: the largest ratio of a unit's gradient norm to its parameter norm, ``>= 0``.
      eps: the floor of the parameter norm, ``>= 0``.
      axis: the axes that a unit spans (the norms are taken over them), the same for every
        leaf; ``None``: chosen by each leaf's rank, as above.

    Returns:
      A stateless transformation (state :class:`AdaptiveGradClipState`); its ``update``
      needs ``params``.

    Raises:
      ValueError: a negative ``clipping`` or ``eps``; in ``update``, ``params=None``, params
        whose shapes differ from the updates', or a leaf of 6 or more dimensions without
        ``axis``.
      TypeError: an ``axis`` that is not an int, a tuple of ints or None.

    >>> import jax.numpy as jnp
    >>> opt = adaptive_grad_clip(0.1)
    >>> params = jnp.asarray([[3.0, 1.0], [4.0, 0.0]])  # unit norms (over axis 0): 5 and 1
    >>> grads = jnp.asarray([[0.0, 0.05], [2.0, 0.0]])  # 2 > 0.1 * 5 is clipped; 0.05 is not
    >>> u, _ = opt.update(grads, opt.init(params), params)
    >>> u.tolist()
    [[0.0, 0.05000000074505806], [0.5, 0.0]]

    References:
      Brock, De, Smith and Simonyan, *High-Performance Large-Scale Image Recognition Without
      Normalization*, ICML 2021.

    Differs from optax:
      the updates keep their dtype when the parameters have another (optax promotes the
      clipped units, e.g. bfloat16 gradients of float32 parameters become float32).
    """
    check_non_negative("clipping", clipping)
    check_non_negative("eps", eps)
    _check_axis(axis)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "adaptive_grad_clip: `params` is None; each unit is clipped relative to its "
                "parameters' norm, so pass them: update(updates, state, params)"
            )
        updates, params = floats(updates), floats(params)  # integers as floats
        check_same_shapes("adaptive_grad_clip", "`updates`", updates, "`params`", params)

        def one(path, g, p):
            where = path_label(path)
            g_norm, p_norm = _unit_norms(g, axis, where), _unit_norms(p, axis, where)
            dtype = _dtypes.result_type(g_norm, p_norm)
            g_norm, p_norm = g_norm.astype(dtype), p_norm.astype(dtype)
            bound = jnp.asarray(clipping).astype(dtype) * jnp.maximum(p_norm, jnp.asarray(eps).astype(dtype))
            factor = bound / jnp.maximum(g_norm, _DIVISION_FLOOR)
            return jnp.where(g_norm < bound, g, g * factor.astype(g.dtype))

        return jax.tree_util.tree_map_with_path(one, updates, params), state

    return GradientTransformation(init_empty_state, update)


def _check_batched(caller: str, grads: PyTree) -> None:
    """Raise unless every leaf of ``grads`` has a leading batch axis of one common size."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(grads)
    if not leaves:
        raise ValueError(f"`grads` must hold at least one array (per-example gradients), got {grads!r}")
    shapes = [jnp.shape(g) for _, g in leaves]
    batch_sizes = {s[0] if s else None for s in shapes}
    if len(batch_sizes) == 1 and None not in batch_sizes:
        return
    raise ValueError(
        f"`grads` must be per-example gradients, every leaf with the same batch size on axis 0 "
        f"({caller} clips each example, then sums them); got shapes "
        + ", ".join(f"{path_label(path)}: {shape}" for (path, _), shape in zip(leaves, shapes, strict=True))
    )


@names_errors("per_example_global_norm_clip")
def per_example_global_norm_clip(grads: PyTree, l2_norm_clip: Scalar) -> tuple[PyTree, jax.Array]:
    r"""Clip each example's gradient to a global norm of at most ``l2_norm_clip``, then sum.

    .. math::

        c_b = \min\Big(1, \frac{\text{l2\_norm\_clip}}{\lVert g_b\rVert_2}\Big), \qquad
        \text{clipped\_sum} = \sum_{b=1}^{B} c_b\, g_b, \qquad
        \text{num\_clipped} = \#\{b : c_b < 1\}

    where :math:`g_b` is example :math:`b`'s gradient (slice ``b`` of every leaf, all leaves
    together in one norm) and :math:`c_b = 1` where the ratio is :math:`0/0` (a zero gradient
    with a zero bound) or :math:`\infty/\infty`.

    Args:
      grads: per-example gradients: a tree whose every leaf has the batch axis (size
        :math:`B`) first.
      l2_norm_clip: the largest norm of one example's gradient, ``>= 0`` (``jnp.inf``: no
        clipping).

    Returns:
      ``(clipped_sum, num_clipped)``: the tree of sums over the batch (each leaf without its
      batch axis, in its own dtype) and the number of examples that were scaled down (an int
      array).

    Raises:
      ValueError: an empty ``grads``, a leaf without a leading batch axis or batch sizes that
        differ, a negative ``l2_norm_clip``.
      TypeError: an ``l2_norm_clip`` that is not a real number.

    >>> import jax.numpy as jnp
    >>> grads = [jnp.asarray([[0.0, 0.0, 0.0], [0.0, 3.0, 4.0], [4.0, 0.0, 3.0], [3.0, 4.0, 0.0]])]
    >>> total, clipped = per_example_global_norm_clip(grads, 1.25)  # norms 0, 5, 5, 5
    >>> total[0].tolist(), int(clipped)
    ([1.75, 1.75, 1.75], 3)

    References:
      Abadi et al., *Deep Learning with Differential Privacy*, CCS 2016.
    """
    check_non_negative("l2_norm_clip", l2_norm_clip)
    _check_batched("per_example_global_norm_clip", grads)
    grads = floats(grads)  # integer gradients as floats
    norms = jax.vmap(global_norm)(grads)  # (B,)
    ratio = jnp.asarray(l2_norm_clip).astype(norms.dtype) / norms
    factors = jnp.where(jnp.isnan(ratio), jnp.ones_like(ratio), jnp.minimum(ratio, 1.0))  # (B,)
    num_clipped = jnp.sum(factors < 1.0)
    clipped_sum = jax.tree.map(lambda g: jnp.tensordot(factors.astype(g.dtype), g, axes=1), grads)
    return clipped_sum, num_clipped


@names_errors("per_example_layer_norm_clip")
def per_example_layer_norm_clip(
    grads: PyTree,
    global_l2_norm_clip: Scalar,
    uniform: bool = True,
) -> tuple[PyTree, PyTree]:
    r"""Clip each example's gradient leaf by leaf (each *layer* to its own bound), then sum.

    Each of the :math:`K` leaves is clipped as by :func:`per_example_global_norm_clip` with its
    own bound :math:`C_k`, taken from :math:`C =` ``global_l2_norm_clip`` so that the bounds
    together make :math:`C` (:math:`\sum_k C_k^2 = C^2`):

    .. math::

        C_k = \begin{cases}
            C \sqrt{1 / K} & \text{uniform} \\
            C \sqrt{D_k / D} & \text{otherwise}
        \end{cases}, \qquad
        \text{clipped\_sum}_k = \sum_b \min\Big(1, \frac{C_k}{\lVert g_{b,k}\rVert_2}\Big)\, g_{b,k}

    with :math:`D_k` the size of one example's leaf :math:`k` and :math:`D = \sum_k D_k`. With
    one leaf it is :func:`per_example_global_norm_clip`.

    Args:
      grads: per-example gradients, every leaf with the batch axis first.
      global_l2_norm_clip: :math:`C \ge 0`.
      uniform: the same bound for every leaf; otherwise bounds in proportion to the square
        root of each leaf's size.

    Returns:
      ``(clipped_sum, num_clipped)``: two trees of the structure of ``grads``, the sums over
      the batch and, per leaf, the number of examples scaled down.

    Raises:
      ValueError: as :func:`per_example_global_norm_clip`, or a negative
        ``global_l2_norm_clip``.
      TypeError: a ``global_l2_norm_clip`` that is not a real number.

    >>> import jax.numpy as jnp
    >>> grads = {"a": jnp.asarray([[3.0, 4.0], [0.3, 0.4]]), "b": jnp.asarray([[1.0], [-1.0]])}
    >>> total, clipped = per_example_layer_norm_clip(grads, 2.0 ** 0.5)  # C_k = 1 for each leaf
    >>> [round(x, 4) for x in total["a"].tolist()], total["b"].tolist(), int(clipped["a"])
    ([0.9, 1.2], [0.0], 1)

    References:
      McMahan, Ramage, Talwar and Zhang, *Learning Differentially Private Recurrent Language
      Models*, ICLR 2018.
    """
    check_non_negative("global_l2_norm_clip", global_l2_norm_clip)
    _check_batched("per_example_layer_norm_clip", grads)
    leaves, structure = jax.tree.flatten(grads)
    if uniform:
        bounds = [global_l2_norm_clip * (1.0 / len(leaves)) ** 0.5 for _ in leaves]
    else:
        total = sum(g[0].size for g in leaves)
        bounds = [global_l2_norm_clip * (g[0].size / total) ** 0.5 for g in leaves]
    pairs = [per_example_global_norm_clip(g, c) for g, c in zip(leaves, bounds, strict=True)]
    clipped_sum = jax.tree.unflatten(structure, [s for s, _ in pairs])
    num_clipped = jax.tree.unflatten(structure, [n for _, n in pairs])
    return clipped_sum, num_clipped
