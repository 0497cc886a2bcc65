r"""Distances between vectors: the geometry that k-NN, k-means and embedding probes rest on.

Two shapes of question:

* :func:`pairwise_distances` compares every row of ``x`` ``(n, d)`` with every row of ``y``
  ``(m, d)`` and returns ``(n, m)``, as ``scipy.spatial.distance.cdist`` does;
* :func:`paired_distances` compares row ``i`` of ``x`` with row ``i`` of ``y`` (any leading batch
  axes) and returns one distance per row.

Metrics (``METRICS``), for :math:`u, v \in \mathbb{R}^d`:

.. math::

    \text{euclidean} &= \lVert u - v \rVert_2, \qquad
    \text{sqeuclidean} = \lVert u - v \rVert_2^2, \qquad
    \text{manhattan} = \text{cityblock} = \textstyle\sum_j |u_j - v_j|, \\
    \text{chebyshev} &= \max_j |u_j - v_j|, \qquad
    \text{minkowski}_p = \bigl(\textstyle\sum_j |u_j - v_j|^p\bigr)^{1/p} \ (p \ge 1), \\
    \text{cosine} &= 1 - \frac{u \cdot v}{\lVert u \rVert_2 \lVert v \rVert_2}.

**Gradients at zero distance.** :math:`\sqrt{s}` has an infinite derivative at :math:`s = 0`, and
the chain rule multiplies it by the zero derivative of :math:`s`: the naive form gives NaN. Here
every root (and the norms of the cosine distance) goes through a double ``jnp.where``: the root
is taken of a safe value where :math:`s = 0`, and the result and its gradient are 0 there. A
zero vector has cosine similarity 0 with everything (cosine distance 1), as in scikit-learn's
``cosine_similarity`` and ``cosine_distances``; SciPy returns NaN. (scikit-learn's
``paired_cosine_distances`` is :math:`\tfrac12 \lVert \hat u - \hat v \rVert^2`, which gives
0.5 for a zero vector and 0 for two; :func:`paired_distances` keeps the rule above, 1.) Cosine
distances are clipped to [0, 2], as scikit-learn clips them: rounding in the unit vectors can
otherwise leave about :math:`-2 \cdot 10^{-7}` in float32 between a vector and itself.

**Large** :math:`p`. The minkowski sum is formed as
:math:`m (\sum_j (|u_j - v_j| / m)^p)^{1/p}` with :math:`m = \max_j |u_j - v_j|`, so it
neither overflows nor underflows for any :math:`p` (SciPy computes in float64 instead; the naive
float32 form returns inf for :math:`(0, 0)` against :math:`(3, 4)` at :math:`p = 100`).

**Blocks.** A pairwise reduction (the ``k`` nearest points, the nearest centroid) never needs the
whole ``(n, m)`` matrix: :func:`pairwise_reduce` computes it ``block_size`` rows of ``x`` at a
time (``lax.map`` over row blocks) and keeps only each block's reduced value, so at most
``block_size * m`` distances (``block_size * m * d`` differences for the metrics that form
differences explicitly: manhattan, chebyshev, minkowski) live at once.

Euclidean, squared euclidean and cosine distances are computed from inner products (one matrix
product, :math:`\lVert u - v \rVert^2 = \lVert u \rVert^2 + \lVert v \rVert^2 - 2 u \cdot v`,
clamped at 0), the fast form on every accelerator; its absolute error is about
:math:`\varepsilon (\lVert u \rVert^2 + \lVert v \rVert^2)`, so distances much smaller than the
norms lose relative precision in float32 (:func:`paired_distances` forms differences and is exact
to rounding). Matrix products run at ``Precision.HIGHEST``, so float32 stays float32 on GPU/TPU.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl.distances import pairwise_distances
    >>> x = jnp.array([[0.0, 0.0], [3.0, 4.0]])
    >>> pairwise_distances(x).tolist()
    [[0.0, 5.0], [5.0, 0.0]]

References:
    M. M. Deza and E. Deza, *Encyclopedia of Distances* (4th ed., 2016), chapter 5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl._blocks import map_row_blocks
from fdl._checks import check_choice, check_positive_int, is_real_number
from fdl._dtypes import HIGHEST

__all__ = [
    "METRICS",
    "cosine_similarity",
    "paired_distances",
    "pairwise_distances",
    "pairwise_reduce",
    "resolve_block_size",
]

#: The metric names :func:`pairwise_distances` and :func:`paired_distances` take.
METRICS = ("euclidean", "sqeuclidean", "manhattan", "cityblock", "chebyshev", "minkowski", "cosine")
_GRAM_METRICS = ("euclidean", "sqeuclidean", "cosine")  # computed from one matrix product
_BLOCK_ELEMENTS = 1 << 22  # default budget of one block: 4M elements (16 MiB in float32)


def _check_metric(metric: Any, p: Any) -> tuple[str, float | None]:
    """Validate ``metric`` and ``p``; return the canonical metric name and ``p`` as a float."""
    check_choice("metric", metric, METRICS)
    metric = "manhattan" if metric == "cityblock" else metric
    if metric != "minkowski":
        if p is not None:
            raise ValueError(f"`p` is only used with metric='minkowski', got p={p!r} with metric={metric!r}")
        return metric, None
    if p is None:
        raise ValueError("metric='minkowski' needs `p` (a number >= 1, or math.inf), got None")
    if not is_real_number(p) or math.isnan(p) or p < 1:
        raise ValueError(f"`p` must be a number >= 1 for metric='minkowski', got {p!r}")
    return metric, float(p)


def _check_pair(x: jax.Array, y: jax.Array, *, paired: bool) -> None:
    """Raise unless ``x`` and ``y`` are float arrays of compatible shapes."""
    for name, a in (("x", x), ("y", y)):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            raise TypeError(f"`{name}` must have a floating dtype, got {a.dtype}")
        if a.ndim < 1 or (not paired and a.ndim != 2):
            want = "at least 1 dimension (features last)" if paired else "2 dimensions (rows, features)"
            raise ValueError(f"`{name}` must have {want}, got shape {a.shape}")
    if x.dtype != y.dtype:
        raise TypeError(f"`x` and `y` must have the same dtype, got {x.dtype} and {y.dtype}")
    if paired and x.shape != y.shape:
        raise ValueError(
            f"`x` and `y` must have the same shape for paired distances, got {x.shape} and {y.shape}"
        )
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(
            f"`x` and `y` must have the same number of features (last axis), got "
            f"x {x.shape} ({x.shape[-1]}) and y {y.shape} ({y.shape[-1]})"
        )


def _safe_sqrt(s: jax.Array) -> jax.Array:
    """``sqrt(s)`` with value and gradient 0 at ``s <= 0`` (the double-where trick)."""
    positive = s > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, s, 1.0)), 0.0)


def _unit(x: jax.Array) -> jax.Array:
    """Rows of ``x`` over their norm; a zero row stays zero (finite gradient)."""
    return x / jnp.where(
        jnp.sum(x * x, axis=-1, keepdims=True) > 0, _safe_sqrt(jnp.sum(x * x, axis=-1, keepdims=True)), 1.0
    )


def _difference_distance(diff: jax.Array, metric: str, p: float | None) -> jax.Array:
    """The distance from differences ``(..., d)`` reduced over the last axis."""
    if metric in ("euclidean", "sqeuclidean"):
        s = jnp.sum(diff * diff, axis=-1)
        return s if metric == "sqeuclidean" else _safe_sqrt(s)
    a = jnp.abs(diff)
    if metric == "manhattan":
        return jnp.sum(a, axis=-1)
    if metric == "chebyshev" or p == math.inf:
        return jnp.max(a, axis=-1, initial=0.0)
    if p is None or p == 1.0:  # minkowski always has p here; p = 1 is manhattan
        return jnp.sum(a, axis=-1)
    return _scaled_minkowski(a, p)


def _scaled_minkowski(a: jax.Array, p: float) -> jax.Array:
    r"""``(sum_j a_j^p)^(1/p)`` over the last axis as :math:`m (\sum_j (a_j/m)^p)^{1/p}`,
    :math:`m = \max_j a_j`: every ratio is in [0, 1] and the sum in [1, d], so a large ``p``
    neither overflows (:math:`5^{100}` is inf in float32) nor underflows (:math:`10^{-3 \cdot 16}`
    is 0). The form is homogeneous of degree 1, so its gradient is the unscaled one; where all
    differences are 0 the value and gradient are 0."""
    m = jnp.max(a, axis=-1, initial=0.0)
    nonzero = m > 0
    s = jnp.sum((a / jnp.where(nonzero, m, 1.0)[..., None]) ** p, axis=-1)
    return jnp.where(nonzero, m * jnp.where(nonzero, s, 1.0) ** (1.0 / p), 0.0)


def _dense(x: jax.Array, y: jax.Array, metric: str, p: float | None) -> jax.Array:
    """All distances between rows of ``x`` ``(b, d)`` and ``y`` ``(m, d)``: ``(b, m)``."""
    if metric == "cosine":  # clipped to [0, 2], as scikit-learn's: rounding can leave -2e-7
        return jnp.clip(1.0 - jnp.matmul(_unit(x), _unit(y).T, precision=HIGHEST), 0.0, 2.0)
    if metric in ("euclidean", "sqeuclidean"):
        xx = jnp.sum(x * x, axis=-1)[:, None]  # (b, 1)
        yy = jnp.sum(y * y, axis=-1)[None, :]  # (1, m)
        s = jnp.maximum(xx + yy - 2.0 * jnp.matmul(x, y.T, precision=HIGHEST), 0.0)  # (b, m)
        return s if metric == "sqeuclidean" else _safe_sqrt(s)
    return _difference_distance(x[:, None, :] - y[None, :, :], metric, p)  # (b, m, d) -> (b, m)


def resolve_block_size(block_size: int | None, n: int, m: int, d: int, metric: str = "euclidean") -> int:
    """The rows of ``x`` per block: ``block_size`` if given, else the most rows whose block holds
    at most :math:`2^{22}` values (``rows * m``, or ``rows * m * d`` for the difference metrics),
    at least 1 and at most ``n``.

    Example:
        >>> resolve_block_size(None, n=50_000, m=50_000, d=64)
        83
    """
    if block_size is not None:
        return min(check_positive_int("block_size", block_size), max(n, 1))
    per_row = max(m, 1) * (1 if metric in _GRAM_METRICS else max(d, 1))
    return max(1, min(max(n, 1), _BLOCK_ELEMENTS // per_row))


def pairwise_reduce(
    x: ArrayLike,
    y: ArrayLike,
    reduce_fn: Callable[[jax.Array], Any],
    metric: str = "euclidean",
    *,
    p: float | None = None,
    block_size: int | None = None,
) -> Any:
    r"""Reduce the rows of the distance matrix block by block, never holding all of it.

    For each block :math:`B` of ``block_size`` consecutive rows of ``x``, computes
    :math:`D_B = \bigl(\operatorname{dist}(x_i, y_j)\bigr)_{i \in B, j < m}` and keeps
    ``reduce_fn(D_B)``; the blocks run one after the other under ``lax.map``. **Memory bound**:
    besides the inputs and the reduced output, at most ``block_size * m`` distances (and, for
    manhattan, chebyshev and minkowski, ``block_size * m * d`` differences) exist at once.

    Args:
        x: ``(n, d)`` float rows.
        y: ``(m, d)`` float rows, the same dtype.
        reduce_fn: maps a block ``(b, m)`` to a pytree of arrays whose leading axis is ``b`` (one
            value per row, e.g. ``lambda D: D.min(axis=1)``); it must treat rows independently
            (the last block is padded with copies of row 0, dropped afterwards).
        metric: one of :data:`METRICS`.
        p: the order of the minkowski metric (``>= 1``); only with ``metric="minkowski"``.
        block_size: rows of ``x`` per block; ``None`` picks the most rows that keep a block to
            :math:`2^{22}` values (:func:`resolve_block_size`).

    Returns:
        The pytree of the blocks' outputs, concatenated along the leading axis to length ``n``.

    Raises:
        ValueError: for a wrong shape, a feature-count mismatch, an unknown metric, a bad ``p``
            or ``block_size``.
        TypeError: for non-float or mismatched dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[0.0], [1.0], [5.0]])
        >>> pairwise_reduce(x, x[:2], lambda d: d.argmin(axis=1), block_size=2).tolist()
        [0, 1, 1]
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    metric, p = _check_metric(metric, p)
    _check_pair(x, y, paired=False)
    n, d = x.shape
    rows = resolve_block_size(block_size, n, y.shape[0], d, metric)
    return map_row_blocks(lambda xb: reduce_fn(_dense(xb, y, metric, p)), x, rows)


def pairwise_distances(
    x: ArrayLike,
    y: ArrayLike | None = None,
    metric: str = "euclidean",
    *,
    p: float | None = None,
    block_size: int | None = None,
) -> jax.Array:
    r"""All distances between the rows of ``x`` and the rows of ``y``.

    .. math::

        D_{ij} = \operatorname{dist}(x_i, y_j), \qquad i < n,\ j < m

    with ``dist`` one of the metrics in the module docstring. With ``y=None`` the rows of ``x``
    are compared with each other and the diagonal is exactly 0 (the inner-product form would
    leave rounding there).

    The result is ``(n, m)`` itself; ``block_size`` bounds only the temporaries: euclidean,
    squared euclidean and cosine need none beyond the output and run in one matrix product
    unless ``block_size`` is given, the others form ``block_size * m * d`` differences at a time
    (see :func:`pairwise_reduce`, which does not keep the whole matrix).

    Args:
        x: ``(n, d)`` float rows.
        y: ``(m, d)`` float rows of the same dtype, or ``None`` for ``x`` itself.
        metric: one of :data:`METRICS` (``"cityblock"`` is SciPy's name for ``"manhattan"``).
        p: the order of the minkowski metric, ``>= 1`` (``math.inf`` is chebyshev); only with
            ``metric="minkowski"``.
        block_size: rows of ``x`` per block, or ``None`` for :func:`resolve_block_size`.

    Returns:
        ``(n, m)`` distances, in the dtype of ``x``.

    Raises:
        ValueError: if ``x`` or ``y`` is not 2-D, their feature counts differ, ``metric`` is
            unknown, ``p`` is missing, below 1 or given with another metric, or ``block_size``
            is not a positive int.
        TypeError: if ``x`` or ``y`` is not floating or their dtypes differ.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0]])
        >>> y = jnp.array([[1.0, 0.0]])
        >>> pairwise_distances(x, y, "manhattan").tolist()
        [[1.0], [1.0]]
        >>> pairwise_distances(x, y, "chebyshev").tolist()
        [[1.0], [1.0]]

    References:
        SciPy's ``scipy.spatial.distance.cdist`` is the reference in the tests.
    """
    same = y is None
    x = jnp.asarray(x)
    y = x if y is None else jnp.asarray(y)
    metric, p = _check_metric(metric, p)
    _check_pair(x, y, paired=False)
    if block_size is None and metric in _GRAM_METRICS:
        block_size = max(x.shape[0], 1)
    out = pairwise_reduce(x, y, lambda dist: dist, metric, p=p, block_size=block_size)
    if same:
        out = jnp.where(jnp.eye(x.shape[0], dtype=bool), 0.0, out)
    return out


def paired_distances(
    x: ArrayLike, y: ArrayLike, metric: str = "euclidean", *, p: float | None = None
) -> jax.Array:
    r"""The distance between row ``i`` of ``x`` and row ``i`` of ``y``, for every row.

    .. math::

        d_{\ldots} = \operatorname{dist}(x_{\ldots,:}, y_{\ldots,:})

    Euclidean and the other difference metrics are computed from the differences
    :math:`x - y` (exact to rounding, no cancellation); cosine from the two unit vectors.

    Args:
        x: ``(..., d)`` float vectors, any leading batch axes.
        y: ``(..., d)``, the same shape and dtype.
        metric: one of :data:`METRICS`.
        p: the order of the minkowski metric (``>= 1``); only with ``metric="minkowski"``.

    Returns:
        ``(...)`` distances.

    Raises:
        ValueError: if the shapes differ, ``metric`` is unknown or ``p`` is invalid.
        TypeError: if the inputs are not floating or their dtypes differ.

    Example:
        >>> import jax.numpy as jnp
        >>> paired_distances(jnp.array([[0.0, 0.0], [1.0, 1.0]]), jnp.array([[3.0, 4.0], [1.0, 1.0]])).tolist()
        [5.0, 0.0]
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    metric, p = _check_metric(metric, p)
    _check_pair(x, y, paired=True)
    if metric == "cosine":
        return jnp.clip(1.0 - jnp.sum(_unit(x) * _unit(y), axis=-1), 0.0, 2.0)
    return _difference_distance(x - y, metric, p)


def cosine_similarity(x: ArrayLike, y: ArrayLike | None = None) -> jax.Array:
    r"""Cosine similarity between every row of ``x`` and every row of ``y``.

    .. math::

        S_{ij} = \frac{x_i \cdot y_j}{\lVert x_i \rVert_2 \lVert y_j \rVert_2}
        \in [-1, 1], \qquad S_{ij} = 0 \text{ if } x_i = 0 \text{ or } y_j = 0

    (the zero-vector convention of scikit-learn's ``cosine_similarity``; the gradient there is
    finite). The cosine distance of :func:`pairwise_distances` is :math:`1 - S`.

    Args:
        x: ``(n, d)`` float rows.
        y: ``(m, d)`` float rows of the same dtype, or ``None`` for ``x``.

    Returns:
        ``(n, m)`` similarities.

    Raises:
        ValueError: if the inputs are not 2-D or their feature counts differ.
        TypeError: if the inputs are not floating or their dtypes differ.

    Example:
        >>> import jax.numpy as jnp
        >>> s = cosine_similarity(jnp.array([[1.0, 0.0], [0.0, 0.0]]), jnp.array([[1.0, 1.0]]))
        >>> [[round(float(v), 4) for v in row] for row in s]
        [[0.7071], [0.0]]
    """
    x = jnp.asarray(x)
    y = x if y is None else jnp.asarray(y)
    _check_pair(x, y, paired=False)
    return jnp.matmul(_unit(x), _unit(y).T, precision=HIGHEST)
