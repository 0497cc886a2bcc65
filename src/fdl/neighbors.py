r"""Nearest neighbours: the ``k`` closest points to each query, and the vote of their labels.

The k-nearest-neighbour rule classifies a query by the labels of the ``k`` training points
closest to it; it needs no training, only a metric (:mod:`fdl.distances`), and with enough data
its error is at most twice the Bayes error (Cover and Hart, 1967). It is also the standard probe
of a learned representation: how well do nearby embeddings share a label?

Searches are blocked over the queries (:func:`fdl.distances.pairwise_reduce`): for each block of
queries only its ``(block, m)`` distances exist, and only the ``k`` smallest of each row are
kept, so the ``(q, m)`` matrix is never held at once.

**Ties.** Among points at equal distance, the lower point index comes first (the order of
``lax.top_k``). Among classes with equal votes, the lowest class index wins (``argmax``), the
rule scikit-learn's ``KNeighborsClassifier`` uses for uniform weights.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl.neighbors import knn_search
    >>> points = jnp.array([[0.0], [1.0], [3.0]])
    >>> dist, idx = knn_search(jnp.array([[0.9]]), points, k=2)
    >>> idx.tolist()
    [[1, 0]]

References:
    T. Cover and P. Hart, "Nearest neighbor pattern classification", IEEE Transactions on
    Information Theory 13(1):21-27, 1967.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fdl._checks import check_labels, check_positive_int
from fdl.distances import pairwise_reduce

__all__ = ["knn_classify", "knn_search"]


def _check_k(k: object, m: int, what: str = "points") -> int:
    k = check_positive_int("k", k)
    if k > m:
        raise ValueError(f"`k` must be <= the number of {what} ({m}), got {k}")
    return k


def knn_search(
    queries: ArrayLike,
    points: ArrayLike,
    k: int,
    metric: str = "euclidean",
    *,
    p: float | None = None,
    block_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""The ``k`` points nearest to each query, nearest first.

    For query :math:`q_i` the indices :math:`j_1, \dots, j_k` are the first ``k`` of the points
    sorted by :math:`\operatorname{dist}(q_i, x_j)` ascending, ties by the lower index :math:`j`:

    .. math::

        \operatorname{dist}(q_i, x_{j_1}) \le \dots \le \operatorname{dist}(q_i, x_{j_k})
        \le \operatorname{dist}(q_i, x_j) \quad \forall j \notin \{j_1, \dots, j_k\}.

    A query that is also a point finds itself first (distance 0).

    **Memory**: at most ``block_size * m`` distances at once (times ``d`` for the difference
    metrics), see :func:`fdl.distances.pairwise_reduce`.

    Args:
        queries: ``(q, d)`` float rows.
        points: ``(m, d)`` float rows, the same dtype.
        k: neighbours per query, ``1 <= k <= m``.
        metric: a metric of :data:`fdl.distances.METRICS`.
        p: the minkowski order (only with ``metric="minkowski"``).
        block_size: queries per block (``None``: automatic, a few million distances per block).

    Returns:
        ``(distances, indices)``, both ``(q, k)``: float distances ascending and int32 indices
        into ``points``.

    Raises:
        ValueError: if ``k`` is not a positive int at most ``m``, or for the errors of
            :func:`fdl.distances.pairwise_distances` (shapes, metric, ``p``).
        TypeError: for non-float or mismatched dtypes.

    Example:
        >>> import jax.numpy as jnp
        >>> points = jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
        >>> dist, idx = knn_search(points, points, k=2)
        >>> idx.tolist(), dist.tolist()
        ([[0, 2], [1, 0], [2, 0]], [[0.0, 1.0], [0.0, 2.0], [0.0, 1.0]])
    """
    queries, points = jnp.asarray(queries), jnp.asarray(points)
    if queries.ndim == 2 and points.ndim == 2 and queries.shape[1] != points.shape[1]:
        raise ValueError(
            f"`queries` and `points` must have the same number of features (last axis), got "
            f"queries {queries.shape} and points {points.shape}"
        )
    if points.ndim == 2:
        _check_k(k, points.shape[0])

    def smallest(dist: jax.Array) -> tuple[jax.Array, jax.Array]:  # (b, m) -> 2 x (b, k)
        neg, idx = jax.lax.top_k(-dist, k)
        return -neg, idx.astype(jnp.int32)

    return pairwise_reduce(queries, points, smallest, metric, p=p, block_size=block_size)


def knn_classify(
    queries: ArrayLike,
    points: ArrayLike,
    labels: ArrayLike,
    k: int,
    metric: str = "euclidean",
    *,
    num_classes: int | None = None,
    p: float | None = None,
    block_size: int | None = None,
) -> jax.Array:
    r"""Predict each query's class by the majority vote of its ``k`` nearest points.

    With :math:`N_k(q)` the ``k`` nearest points of :func:`knn_search`,

    .. math::

        \hat y(q) = \operatorname{argmax}_c \sum_{j \in N_k(q)} [y_j = c],

    ties between classes going to the lowest class index :math:`c` (the rule of scikit-learn's
    ``KNeighborsClassifier(weights="uniform")``), ties between equidistant points to the lower
    point index.

    Args:
        queries: ``(q, d)`` float rows to classify.
        points: ``(m, d)`` float training rows, the same dtype.
        labels: ``(m,)`` integer classes of ``points``, in ``[0, num_classes)``.
        k: neighbours that vote, ``1 <= k <= m``.
        metric: a metric of :data:`fdl.distances.METRICS`.
        num_classes: the number of classes; ``None`` reads ``max(labels) + 1`` from the concrete
            labels (pass it explicitly under ``jit``).
        p: the minkowski order (only with ``metric="minkowski"``).
        block_size: queries per block, see :func:`knn_search`.

    Returns:
        ``(q,)`` int32 predicted classes.

    Raises:
        ValueError: if ``labels`` is not ``(m,)`` or (when concrete) not in ``[0, num_classes)``,
            ``k`` is not in ``[1, m]``, ``num_classes`` is not a positive int, or for the errors
            of :func:`knn_search`.
        TypeError: if ``labels`` is not an integer array.

    Example:
        >>> import jax.numpy as jnp
        >>> points = jnp.array([[0.0], [0.1], [1.0], [1.1]])
        >>> knn_classify(jnp.array([[0.2], [0.9]]), points, jnp.array([0, 0, 1, 1]), k=3).tolist()
        [0, 1]

    References:
        Cover and Hart (1967), see the module docstring.
    """
    queries, points, labels = jnp.asarray(queries), jnp.asarray(points), jnp.asarray(labels)
    check_labels("`labels`", labels)
    if points.ndim >= 1 and labels.shape != points.shape[:1]:
        raise ValueError(f"`labels` must have shape ({points.shape[0]},) (one per point), got {labels.shape}")
    if num_classes is None:
        num_classes = int(np.max(np.asarray(labels), initial=0)) + 1
    num_classes = check_positive_int("num_classes", num_classes)
    check_labels("`labels`", labels, num_classes, where=f"(`num_classes`={num_classes})")
    _, idx = knn_search(queries, points, k, metric, p=p, block_size=block_size)  # (q, k)
    votes = jax.nn.one_hot(labels[idx], num_classes, dtype=jnp.int32).sum(axis=-2)  # (q, C)
    return jnp.argmax(votes, axis=-1).astype(jnp.int32)
