r"""Random initializers at a fixed scale, whatever the shape: i.i.d. normal, uniform and
truncated normal entries, and Haar-random orthogonal matrices (every singular value ``scale``)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from fdl._checks import check_finite, check_non_negative_finite, check_shape
from fdl.initializers._sampling import (
    float_dtypes,
    sample_normal,
    sample_truncated_normal,
    sample_uniform,
)
from fdl.initializers.base import Initializer

__all__ = ["normal", "orthogonal", "truncated_normal", "uniform"]


def normal(stddev: float = 1e-2, mean: float = 0.0) -> Initializer:
    r"""Return an initializer drawing i.i.d. :math:`W_{ij} \sim \mathcal{N}(\mathrm{mean},
    \mathrm{stddev}^2)`.

    .. math::

        \mathbb{E}[W] = \mathrm{mean}, \qquad \operatorname{Var}[W] = \mathrm{stddev}^2

    The scale does not depend on the shape; prefer :func:`variance_scaling` and its aliases for
    weights, whose right scale does.

    Args:
      stddev: standard deviation, ``>= 0``.
      mean: mean of the draw.

    Returns:
      ``init(key, shape, dtype)``.

    Raises:
      ValueError: at factory time for a negative or non-finite ``stddev`` or ``mean``; at call time
        for a bad ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> w = fdl.initializers.normal(stddev=0.1)(jax.random.key(0), (300, 300))
    >>> round(float(w.std()), 2)
    0.1

    Differs from PyTorch: ``torch.nn.init.normal_`` defaults to ``std=1``; fdl (like JAX) to 0.01.
    """
    stddev = check_non_negative_finite("stddev", stddev)
    mean = check_finite("mean", mean)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = float_dtypes(dtype)
        return sample_normal(key, stddev, mean, shape=shape, draw=draw, out=out)

    return init


def uniform(scale: float = 1e-2) -> Initializer:
    r"""Return an initializer drawing i.i.d. :math:`W_{ij} \sim U[-\mathrm{scale}, \mathrm{scale}]`.

    .. math::

        \operatorname{Var}[W] = \frac{\mathrm{scale}^2}{3}

    (the variance of :math:`U[-a, a]` is :math:`\frac{1}{2a}\int_{-a}^{a} w^2\,dw = a^2/3`).

    Args:
      scale: half-width of the interval, ``>= 0``.

    Returns:
      ``init(key, shape, dtype)``; every value satisfies ``-scale <= w <= scale``.

    Raises:
      ValueError: at factory time for a negative or non-finite ``scale``; at call time for a bad
        ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> w = fdl.initializers.uniform(scale=0.5)(jax.random.key(0), (1000,))
    >>> bool((abs(w) <= 0.5).all())
    True

    Differs from PyTorch: ``torch.nn.init.uniform_(a=0, b=1)`` takes the two ends and defaults to
    ``[0, 1)``; fdl (like JAX) takes a symmetric half-width.
    """
    scale = check_non_negative_finite("scale", scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = float_dtypes(dtype)
        return sample_uniform(key, scale, shape=shape, draw=draw, out=out)

    return init


def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    r"""Return an initializer drawing :math:`\mathrm{stddev} \cdot z` with :math:`z \sim
    \mathcal{N}(0, 1)` conditioned on :math:`\mathrm{lower} < z < \mathrm{upper}`.

    The bounds are in units of ``stddev``: the values lie in
    ``(lower * stddev, upper * stddev)``. ``stddev`` is the scale *before* truncation, so the
    variance of the draw is **smaller** than :math:`\mathrm{stddev}^2`. With
    :math:`\varphi, \Phi` the standard normal density and CDF, :math:`Z = \Phi(u) - \Phi(l)`,
    :math:`l = \mathrm{lower}`, :math:`u = \mathrm{upper}`:

    .. math::

        \operatorname{Var}[W] = \mathrm{stddev}^2 \left(1 + \frac{l\varphi(l) - u\varphi(u)}{Z}
        - \left(\frac{\varphi(l) - \varphi(u)}{Z}\right)^2\right)

    which is :math:`0.7737\,\mathrm{stddev}^2` for the default :math:`\pm 2`. Use
    ``variance_scaling(..., distribution="truncated_normal")`` to have the variance corrected.

    Args:
      stddev: scale of the normal before truncation, ``>= 0``.
      lower: lower bound, in units of ``stddev``.
      upper: upper bound, in units of ``stddev``; must exceed ``lower``.

    Returns:
      ``init(key, shape, dtype)``.

    Raises:
      ValueError: at factory time for a negative ``stddev``, non-finite bounds or
        ``lower >= upper``; at call time for a bad ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> w = fdl.initializers.truncated_normal(stddev=1.0)(jax.random.key(0), (1000,))
    >>> bool((abs(w) <= 2.0).all())
    True

    Differs from PyTorch: ``torch.nn.init.trunc_normal_(mean, std, a, b)`` takes absolute cut-offs
    ``a, b`` (default ``[-2, 2]`` whatever ``std`` is), not multiples of ``std``.
    """
    stddev = check_non_negative_finite("stddev", stddev)
    lower = check_finite("lower", lower)
    upper = check_finite("upper", upper)
    if not lower < upper:
        raise ValueError(f"`lower` must be less than `upper`, got lower={lower}, upper={upper}")

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = float_dtypes(dtype)
        return sample_truncated_normal(key, stddev, lower, upper, shape=shape, draw=draw, out=out)

    return init


@functools.partial(jax.jit, static_argnames=("tall", "short", "dtype"))
def _haar_columns(key: jax.Array, *, tall: int, short: int, dtype: np.dtype) -> jax.Array:
    """A Haar-random ``(tall, short)`` matrix with orthonormal columns (``tall >= short``).

    Kept apart from the layout below so that every weight shape flattening to the same matrix
    shares one compilation of the QR factorization, the slowest part to compile.
    """
    a = jax.random.normal(key, (tall, short), dtype)  # (m, k)
    q, r = jnp.linalg.qr(a)  # q: (m, k), r: (k, k)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)  # (k,)
    return q * signs[None, :]  # (m, k)


@functools.partial(jax.jit, static_argnames=("shape", "axis", "out"))
def _orthogonal_layout(
    q: jax.Array, scale: float, *, shape: tuple[int, ...], axis: int, out: np.dtype
) -> jax.Array:
    """Scale the ``(m, k)`` matrix ``q`` and lay it out as ``shape``, columns on ``axis``."""
    cols = shape[axis]
    other = shape[:axis] + shape[axis + 1 :]
    rows = math.prod(other)
    if rows < cols:
        q = q.T  # (rows, cols)
    w = scale * q.reshape(other + (cols,))  # (*other, cols)
    return jnp.moveaxis(w, -1, axis).astype(out)  # shape


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Initializer:
    r"""Return an initializer drawing a (scaled) uniformly random orthogonal matrix.

    The array is viewed as a matrix :math:`W` of shape ``(rows, cols)``, where ``cols`` is the
    size of ``column_axis`` and ``rows`` the product of all other axes (so a kernel
    ``(kh, kw, in, out)`` is ``(kh*kw*in, out)``). Then

    .. math::

        W^\top W = \mathrm{scale}^2 I_{\mathrm{cols}} \ \ (\mathrm{rows} \ge \mathrm{cols}),
        \qquad
        W W^\top = \mathrm{scale}^2 I_{\mathrm{rows}} \ \ (\mathrm{rows} < \mathrm{cols}):

    every singular value equals ``scale``, so a linear layer scales the norm of every input (the
    smaller side) by exactly ``scale``, and gradients likewise on the way back. Saxe et al. (2014)
    show this gives depth-independent learning times in deep linear networks.

    Draw: :math:`A \in \mathbb{R}^{m \times k}` with i.i.d. :math:`\mathcal{N}(0, 1)` entries,
    :math:`m = \max(\mathrm{rows}, \mathrm{cols})`, :math:`k = \min(\ldots)`; factor :math:`A = QR`;
    set :math:`Q \leftarrow Q\,\operatorname{diag}(\operatorname{sign} R_{ii})`. The sign
    correction makes the factorization unique, which makes :math:`Q` Haar-distributed (uniform over
    matrices with orthonormal columns); without it the distribution depends on the QR routine's
    sign convention (Mezzadri, 2007). :math:`W = \mathrm{scale} \cdot Q` (or :math:`Q^\top` when
    ``rows < cols``). Each entry has :math:`\operatorname{Var}[W_{ij}] = \mathrm{scale}^2 / m`.

    Args:
      scale: the common singular value, ``>= 0`` (PyTorch's ``gain``).
      column_axis: the axis holding the columns; ``-1`` (the output axis of fdl weights) by default.

    Returns:
      ``init(key, shape, dtype)`` for shapes with at least two dimensions.

    Raises:
      ValueError: at factory time for a negative ``scale`` or a non-int ``column_axis``; at call
        time for a bad shape, a shape with fewer than 2 dimensions, a ``column_axis`` outside it, or
        a non-float ``dtype``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> w = fdl.initializers.orthogonal()(jax.random.key(0), (6, 3))
    >>> bool(jnp.allclose(w.T @ w, jnp.eye(3), atol=1e-5))
    True

    Differs from PyTorch: ``torch.nn.init.orthogonal_(w, gain)`` flattens every axis after the
    first, treating axis 0 (its output axis) as rows; fdl flattens every axis except
    ``column_axis`` (the output axis), the same matrix in fdl's ``(in, out)`` layout.
    """
    scale = check_non_negative_finite("scale", scale)
    if isinstance(column_axis, bool) or not isinstance(column_axis, (int, np.integer)):
        raise ValueError(f"`column_axis` must be an int, got {column_axis!r}")
    column_axis = int(column_axis)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = float_dtypes(dtype)
        ndim = len(shape)
        if ndim < 2:
            raise ValueError(
                f"`shape` must have at least 2 dimensions for an orthogonal initializer, got {shape}"
            )
        if not -ndim <= column_axis < ndim:
            raise ValueError(
                f"`column_axis` must be in [{-ndim}, {ndim}) for shape {shape}, got {column_axis}"
            )
        if math.prod(shape) == 0:
            return jnp.zeros(shape, out)
        axis = column_axis % ndim
        cols = shape[axis]
        rows = math.prod(shape) // cols
        q = _haar_columns(key, tall=max(rows, cols), short=min(rows, cols), dtype=draw)  # (m, k)
        return _orthogonal_layout(q, scale, shape=shape, axis=axis, out=out)

    return init
