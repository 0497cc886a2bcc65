r"""k-means clustering, its k-means++ seeding, and how to score a clustering against labels.

k-means looks for ``k`` centroids :math:`\mu_1, \dots, \mu_k` that minimise the *inertia*, the
sum of squared distances from each point to its nearest centroid:

.. math::

    J(\mu) = \sum_{i=1}^{n} \min_{c} \lVert x_i - \mu_c \rVert_2^2 .

Lloyd's algorithm alternates the two steps that each lower :math:`J`: assign every point to its
nearest centroid, then move every centroid to the mean of its points. It stops at a local
minimum, so where it starts matters: k-means++ (:func:`kmeans_plusplus`) spreads the starting
centroids out and is :math:`O(\log k)`-competitive in expectation, and :func:`kmeans` runs
``n_init`` such starts side by side (``jax.vmap``) and keeps the lowest inertia.

The assignment step works a block of rows at a time (the kernel behind
:func:`fdl.distances.pairwise_reduce`), so the ``(n, k)`` distance matrix is never formed whole.

Scores against known classes: :func:`contingency_matrix`, :func:`purity` and
:func:`adjusted_rand_index`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fdl.clustering import kmeans
    >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    >>> result = kmeans(jax.random.key(0), x, k=2, n_init=2)
    >>> bool(result.labels[0] == result.labels[1]), bool(result.labels[0] != result.labels[2])
    (True, True)

References:
    S. Lloyd, "Least squares quantization in PCM", IEEE Transactions on Information Theory
    28(2):129-137, 1982.
    D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fdl._blocks import map_row_blocks
from fdl._checks import check_labels, check_non_negative_finite, check_positive_int
from fdl._dtypes import HIGHEST
from fdl.distances import pairwise_distances, pairwise_reduce, resolve_block_size

__all__ = [
    "KMeansResult",
    "adjusted_rand_index",
    "contingency_matrix",
    "kmeans",
    "kmeans_plusplus",
    "purity",
]


class KMeansResult(NamedTuple):
    """The best of the ``n_init`` runs of :func:`kmeans` (lowest inertia).

    Attributes:
        centroids: ``(k, d)`` cluster centres.
        labels: ``(n,)`` int32 index of each point's nearest centroid.
        inertia: scalar, the sum of squared distances of the points to their centroids.
        iterations: int32 scalar, the Lloyd iterations that run took.
        inertias: ``(n_init,)`` the final inertia of every run, to see the spread of the starts.
    """

    centroids: jax.Array
    labels: jax.Array
    inertia: jax.Array
    iterations: jax.Array
    inertias: jax.Array


def _check_points(x: jax.Array, k: object) -> int:
    if x.ndim != 2:
        raise ValueError(f"`x` must have 2 dimensions (points, features), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"`x` must have a floating dtype, got {x.dtype}")
    k = check_positive_int("k", k)
    if k > x.shape[0]:
        raise ValueError(f"`k` must be <= the number of points ({x.shape[0]}), got {k}")
    return k


def _trials(n_local_trials: int | None, k: int) -> int:
    if n_local_trials is None:
        return 2 + int(math.log(k))
    return check_positive_int("n_local_trials", n_local_trials)


@functools.partial(jax.jit, static_argnames=("k", "trials"))
def _plusplus(key: jax.Array, x: jax.Array, k: int, trials: int) -> tuple[jax.Array, jax.Array]:
    """Greedy k-means++ seeding (unvalidated): ``(centroids (k, d), indices (k,))``."""
    n, d = x.shape
    key, first_key = jax.random.split(key)
    first = jax.random.randint(first_key, (), 0, n)
    centroids = jnp.zeros((k, d), x.dtype).at[0].set(x[first])
    indices = jnp.zeros((k,), jnp.int32).at[0].set(first)
    closest = pairwise_distances(x, x[first][None, :], "sqeuclidean")[:, 0]  # (n,) D(x)^2

    def add_one(c, carry):
        centroids, indices, closest, key = carry
        key, draw_key = jax.random.split(key)
        positive = closest > 0
        logits = jnp.where(positive, jnp.log(jnp.where(positive, closest, 1.0)), -jnp.inf)  # (n,)
        logits = jnp.where(jnp.any(positive), logits, 0.0)  # fewer than k distinct points: uniform
        candidates = jax.random.categorical(draw_key, logits, shape=(trials,))  # (t,)
        to_candidates = pairwise_distances(x[candidates], x, "sqeuclidean")  # (t, n)
        potentials = jnp.minimum(closest[None, :], to_candidates)  # (t, n)
        best = jnp.argmin(jnp.sum(potentials, axis=1))  # the candidate that lowers J most
        chosen = candidates[best]
        return (
            centroids.at[c].set(x[chosen]),
            indices.at[c].set(chosen.astype(jnp.int32)),
            potentials[best],
            key,
        )

    centroids, indices, _, _ = jax.lax.fori_loop(1, k, add_one, (centroids, indices, closest, key))
    return centroids, indices


def kmeans_plusplus(
    key: jax.Array, x: ArrayLike, k: int, *, n_local_trials: int | None = None
) -> tuple[jax.Array, jax.Array]:
    r"""Pick ``k`` starting centroids among the points by k-means++ seeding.

    The first centroid is a point drawn uniformly; each next one is drawn with probability
    proportional to the squared distance to the nearest centroid chosen so far,

    .. math::

        P(x_i) = \frac{D(x_i)^2}{\sum_j D(x_j)^2}, \qquad
        D(x) = \min_{c \text{ chosen}} \lVert x - \mu_c \rVert_2 .

    *Greedy* variant (with ``n_local_trials`` :math:`t > 1`, as in Arthur and Vassilvitskii's
    experiments and scikit-learn): :math:`t` candidates are drawn that way and the one leaving
    the smallest :math:`\sum_i D(x_i)^2` is kept. ``n_local_trials=1`` is the plain k-means++
    of the paper, whose expected inertia is within :math:`8(\ln k + 2)` of the optimum.

    Args:
        key: a PRNG key.
        x: ``(n, d)`` float points.
        k: centroids to pick, ``1 <= k <= n``.
        n_local_trials: candidates per step; ``None`` means :math:`2 + \lfloor \ln k \rfloor`
            (scikit-learn's default).

    Returns:
        ``(centroids, indices)``: ``(k, d)`` points of ``x`` and their ``(k,)`` int32 indices.

    Raises:
        ValueError: if ``x`` is not 2-D, ``k`` is not in ``[1, n]`` or ``n_local_trials`` is not
            a positive int.
        TypeError: if ``x`` is not floating.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.array([[0.0], [0.0], [10.0]])
        >>> centroids, indices = kmeans_plusplus(jax.random.key(0), x, k=2)
        >>> sorted(centroids[:, 0].tolist())
        [0.0, 10.0]

    References:
        D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
    """
    x = jnp.asarray(x)
    k = _check_points(x, k)
    return _plusplus(key, x, k, _trials(n_local_trials, k))


def _assign(x: jax.Array, centroids: jax.Array, block_size: int | None) -> tuple[jax.Array, jax.Array]:
    """Nearest centroid of each point, blocked: ``(labels (n,), squared distances (n,))``."""

    def nearest(dist: jax.Array) -> tuple[jax.Array, jax.Array]:  # (b, k) -> 2 x (b,)
        return jnp.argmin(dist, axis=1).astype(jnp.int32), jnp.min(dist, axis=1)

    return pairwise_reduce(x, centroids, nearest, "sqeuclidean", block_size=block_size)


def _nearest(x: jax.Array, centroids: jax.Array, block_size: int | None) -> jax.Array:
    r"""Nearest centroid of each point, blocked, from the scores :math:`\lVert\mu_c\rVert^2 -
    2\,x_i \cdot \mu_c`: the squared distance less :math:`\lVert x_i\rVert^2`, the same for
    every centroid of a row, so it never changes the argmin (scikit-learn's Lloyd step does the
    same). It saves the elementwise pass that adds and clamps it on every iteration."""
    (n, d), k = x.shape, centroids.shape[0]
    squared_norms = jnp.sum(centroids**2, axis=1)

    def block(xb: jax.Array) -> jax.Array:
        scores = squared_norms[None, :] - 2 * jnp.matmul(xb, centroids.T, precision=HIGHEST)
        return jnp.argmin(scores, axis=1).astype(jnp.int32)

    return map_row_blocks(block, x, resolve_block_size(block_size, n, k, d, "sqeuclidean"))


def _lloyd(
    x: jax.Array, centroids: jax.Array, max_iter: jax.Array, tol: jax.Array, block_size: int | None
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Lloyd iterations from ``centroids`` until the squared shift is <= ``tol`` or ``max_iter``."""
    k = centroids.shape[0]

    def means(centroids: jax.Array) -> jax.Array:
        labels = _nearest(x, centroids, block_size)
        members = jax.nn.one_hot(labels, k, dtype=x.dtype)  # (n, k)
        sums = jnp.matmul(members.T, x, precision=HIGHEST)  # (k, d)
        counts = jnp.sum(members, axis=0)[:, None]  # (k, 1)
        return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), centroids)  # empty: stay

    def running(state: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        _, shift, iteration = state
        return (iteration < max_iter) & (shift > tol)

    def step(state: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array]:
        centroids, _, iteration = state
        moved = means(centroids)
        return moved, jnp.sum((moved - centroids) ** 2), iteration + 1

    start = (centroids, jnp.asarray(jnp.inf, x.dtype), jnp.asarray(0, jnp.int32))
    centroids, _, iterations = jax.lax.while_loop(running, step, start)
    labels, squared = _assign(x, centroids, block_size)
    return centroids, labels, jnp.sum(squared), iterations


@functools.partial(jax.jit, static_argnames=("k", "n_init", "trials", "block_size"))
def _kmeans(
    key: jax.Array,
    x: jax.Array,
    tol: jax.Array,
    max_iter: jax.Array,
    *,
    k: int,
    n_init: int,
    trials: int,
    block_size: int | None,
) -> KMeansResult:
    tol_abs = tol * jnp.mean(jnp.var(x, axis=0))

    def one_run(run_key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        start, _ = _plusplus(run_key, x, k, trials)
        return _lloyd(x, start, max_iter, tol_abs, block_size)

    centroids, labels, inertias, iterations = jax.vmap(one_run)(jax.random.split(key, n_init))
    best = jnp.argmin(inertias)  # ties: the first run
    return KMeansResult(centroids[best], labels[best], inertias[best], iterations[best], inertias)


def kmeans(
    key: jax.Array,
    x: ArrayLike,
    k: int,
    *,
    n_init: int = 10,
    max_iter: int = 300,
    tol: float = 1e-4,
    n_local_trials: int | None = None,
    block_size: int | None = None,
) -> KMeansResult:
    r"""k-means by Lloyd's algorithm from ``n_init`` k-means++ starts; the best run is returned.

    Each run starts from :func:`kmeans_plusplus` and repeats, inside ``lax.while_loop``,

    .. math::

        z_i \leftarrow \operatorname{argmin}_c \lVert x_i - \mu_c \rVert_2^2, \qquad
        \mu_c \leftarrow \frac{1}{|\{i : z_i = c\}|} \sum_{i : z_i = c} x_i

    (a centroid left without points stays where it was) until the total squared shift of the
    centroids :math:`\sum_c \lVert \mu_c^{new} - \mu_c \rVert^2` is at most
    ``tol * mean(var(x, axis=0))`` (scikit-learn's relative tolerance) or ``max_iter``
    iterations ran. The labels and inertia are those of the final centroids. The runs are
    ``jax.vmap``-ed and the one with the lowest inertia (the first on a tie) is kept.

    The whole function is jitted: one compilation per ``x`` shape, ``k``, ``n_init``,
    ``n_local_trials`` and ``block_size`` (``tol`` and ``max_iter`` are traced).
    **Memory**: the assignment holds ``block_size * k`` distances at a time (see
    :func:`fdl.distances.pairwise_reduce`), per run.

    Args:
        key: a PRNG key; run ``r`` seeds with ``jax.random.split(key, n_init)[r]``.
        x: ``(n, d)`` float points.
        k: clusters, ``1 <= k <= n``.
        n_init: runs from different seeds, ``>= 1``.
        max_iter: the most Lloyd iterations per run, ``>= 1``.
        tol: relative tolerance on the centroid shift (``>= 0``; 0 runs until nothing moves).
        n_local_trials: candidates per k-means++ step (see :func:`kmeans_plusplus`).
        block_size: points per block of the assignment (``None``: automatic).

    Returns:
        A :class:`KMeansResult` ``(centroids, labels, inertia, iterations, inertias)``.

    Raises:
        ValueError: if ``x`` is not 2-D, ``k`` is not in ``[1, n]``, ``n_init``, ``max_iter``,
            ``n_local_trials`` or ``block_size`` is not a positive int, or ``tol`` is negative.
        TypeError: if ``x`` is not floating.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> x = jnp.array([[0.0], [1.0], [10.0], [11.0]])
        >>> result = kmeans(jax.random.key(1), x, k=2, n_init=3)
        >>> sorted(result.centroids[:, 0].tolist()), float(result.inertia)
        ([0.5, 10.5], 1.0)

    References:
        S. Lloyd (1982); D. Arthur and S. Vassilvitskii (2007); see the module docstring.
    """
    x = jnp.asarray(x)
    k = _check_points(x, k)
    n_init = check_positive_int("n_init", n_init)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_non_negative_finite("tol", tol)
    if block_size is not None:
        block_size = check_positive_int("block_size", block_size)
    return _kmeans(
        key,
        x,
        jnp.asarray(tol, x.dtype),
        jnp.asarray(max_iter, jnp.int32),
        k=k,
        n_init=n_init,
        trials=_trials(n_local_trials, k),
        block_size=block_size,
    )


# ------------------------------------------------------------------------- scores against labels


def _check_labels(name: str, labels: jax.Array) -> None:
    if labels.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D (one label per point), got shape {labels.shape}")
    check_labels(f"`{name}`", labels)  # integers, non-negative when concrete


def _count(name: str, labels_name: str, labels: jax.Array, given: int | None) -> int:
    """``given`` (checked, and the concrete labels checked below it), or ``max(labels) + 1``."""
    if given is None:
        return int(np.max(np.asarray(labels), initial=0)) + 1
    given = check_positive_int(name, given)
    check_labels(f"`{labels_name}`", labels, given, where=f"(`{name}`={given})")
    return given


def contingency_matrix(
    labels_true: ArrayLike,
    labels_pred: ArrayLike,
    *,
    num_true: int | None = None,
    num_pred: int | None = None,
) -> jax.Array:
    r"""Counts of points per (class, cluster) pair.

    .. math::

        N_{ab} = \#\{i : y_i = a,\ z_i = b\}

    Args:
        labels_true: ``(n,)`` integer classes in ``[0, num_true)``.
        labels_pred: ``(n,)`` integer clusters in ``[0, num_pred)``.
        num_true: rows; ``None`` reads ``max(labels_true) + 1`` from concrete labels (give it
            under ``jit``).
        num_pred: columns; likewise.

    Returns:
        ``(num_true, num_pred)`` int32 counts (a row or column of zeros for an unused label, where
        scikit-learn's ``contingency_matrix`` keeps only the labels present).

    Raises:
        ValueError: if the labels are not 1-D of one length, are negative or not below a count
            given (checked when concrete), or a count is not a positive int.
        TypeError: if the labels are not integers.

    Example:
        >>> import jax.numpy as jnp
        >>> contingency_matrix(jnp.array([0, 0, 1]), jnp.array([1, 1, 1])).tolist()
        [[0, 2], [0, 1]]
    """
    labels_true, labels_pred = jnp.asarray(labels_true), jnp.asarray(labels_pred)
    _check_labels("labels_true", labels_true)
    _check_labels("labels_pred", labels_pred)
    if labels_true.shape != labels_pred.shape:
        raise ValueError(
            f"`labels_true` and `labels_pred` must have the same length, got {labels_true.shape[0]} "
            f"and {labels_pred.shape[0]}"
        )
    rows = _count("num_true", "labels_true", labels_true, num_true)
    cols = _count("num_pred", "labels_pred", labels_pred, num_pred)
    return jnp.zeros((rows, cols), jnp.int32).at[labels_true, labels_pred].add(1)


def purity(
    labels_true: ArrayLike,
    labels_pred: ArrayLike,
    *,
    num_true: int | None = None,
    num_pred: int | None = None,
) -> jax.Array:
    r"""The fraction of points whose cluster's majority class is their own class.

    .. math::

        \text{purity} = \frac{1}{n} \sum_{b} \max_{a} N_{ab}

    with :math:`N` the :func:`contingency_matrix`. It is 1 for a perfect clustering, but also
    for one cluster per point: compare clusterings of the same ``k`` only, or use
    :func:`adjusted_rand_index`.

    Args:
        labels_true, labels_pred, num_true, num_pred: as for :func:`contingency_matrix`.

    Returns:
        A float32 scalar in ``(0, 1]``.

    Raises:
        ValueError, TypeError: as :func:`contingency_matrix`.

    Example:
        >>> import jax.numpy as jnp
        >>> print(float(purity(jnp.array([0, 0, 1, 1]), jnp.array([0, 0, 0, 1]))))
        0.75

    References:
        C. D. Manning, P. Raghavan and H. Schütze, *Introduction to Information Retrieval*
        (2008), section 16.3.
    """
    counts = contingency_matrix(labels_true, labels_pred, num_true=num_true, num_pred=num_pred)
    return (jnp.sum(jnp.max(counts, axis=0)) / jnp.sum(counts)).astype(jnp.float32)


def adjusted_rand_index(
    labels_true: ArrayLike,
    labels_pred: ArrayLike,
    *,
    num_true: int | None = None,
    num_pred: int | None = None,
) -> jax.Array:
    r"""The Rand index of two labellings, adjusted for chance (Hubert and Arabie, 1985).

    With :math:`N` the :func:`contingency_matrix`, :math:`a_a = \sum_b N_{ab}`,
    :math:`b_b = \sum_a N_{ab}` and pair counts :math:`\binom{\cdot}{2}`:

    .. math::

        S = \sum_{ab} \binom{N_{ab}}{2}, \quad
        A = \sum_a \binom{a_a}{2}, \quad
        B = \sum_b \binom{b_b}{2}, \quad
        E = \frac{A B}{\binom{n}{2}}, \qquad
        \text{ARI} = \frac{S - E}{\tfrac12 (A + B) - E}

    It is 1 for identical partitions (up to renaming), about 0 for independent ones, and can be
    negative. When :math:`S = A = B` (both labellings put all points together, or each point
    apart) it is 1, as in scikit-learn.

    Computed in the default float dtype (float64 under ``jax.enable_x64``); in float32 the pair
    counts are exact up to about 5,000 points, and beyond that the index is accurate to ~1e-6.

    Args:
        labels_true, labels_pred, num_true, num_pred: as for :func:`contingency_matrix`.

    Returns:
        A float scalar in ``[-1, 1]``.

    Raises:
        ValueError, TypeError: as :func:`contingency_matrix`.

    Example:
        >>> import jax.numpy as jnp
        >>> print(float(adjusted_rand_index(jnp.array([0, 0, 1, 1]), jnp.array([1, 1, 0, 0]))))
        1.0

    References:
        L. Hubert and P. Arabie, "Comparing partitions", Journal of Classification 2:193-218,
        1985.
    """
    counts = contingency_matrix(labels_true, labels_pred, num_true=num_true, num_pred=num_pred)
    counts = counts.astype(jax.dtypes.canonicalize_dtype(jnp.float64))

    def pairs(c: jax.Array) -> jax.Array:
        return jnp.sum(c * (c - 1.0)) / 2.0

    n = jnp.sum(counts)
    s, a, b = pairs(counts), pairs(jnp.sum(counts, axis=1)), pairs(jnp.sum(counts, axis=0))
    expected = a * b / jnp.maximum(n * (n - 1.0) / 2.0, 1.0)
    denominator = 0.5 * (a + b) - expected
    trivial = (s == a) & (s == b)
    return jnp.where(trivial, 1.0, (s - expected) / jnp.where(trivial, 1.0, denominator))
