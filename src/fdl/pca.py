r"""Principal component analysis: the directions in which centred data varies most.

For data :math:`X` of shape ``(N, D)`` (``N`` examples, ``D`` features) with column means
:math:`\mu`, the thin singular value decomposition of the centred data,

.. math::

    X - \mathbf{1}\mu^\top = U \operatorname{diag}(s) V^\top, \qquad
    s_1 \ge s_2 \ge \dots \ge s_{\min(N, D)} \ge 0,

gives everything: the rows of :math:`V^\top` are the principal axes (*components*), the
eigenvectors of the sample covariance :math:`C = (X - \mathbf{1}\mu^\top)^\top (X -
\mathbf{1}\mu^\top) / (N - 1)`, with eigenvalues (*explained variances*)
:math:`\sigma^2_i = s_i^2 / (N - 1)`. Keeping the first ``K`` axes is the best rank-``K``
approximation of the centred data in the least-squares sense (Eckart-Young).

The functions are pure: :func:`fit_pca` returns a :class:`PCAState` of arrays, and
:func:`transform` / :func:`inverse_transform` take it as an argument. Everything runs under
``jax.jit`` (``n_components`` static).

**Sign convention.** A component :math:`v` and :math:`-v` are equally valid. As scikit-learn
(>= 1.5, ``svd_flip(u, vt, u_based_decision=False)``) does, each component is flipped so that its
entry of largest absolute value (the first such entry on a tie) is positive. With it, the
components, the projections and everything else equal scikit-learn's ``PCA(svd_solver="full")``
entry by entry, not just up to sign (``tests/toolkit/test_pca.py`` checks it on all 1,797 digits).

Differs from scikit-learn: no ``noise_variance_``, no ``n_components`` given as a fraction of
the variance or ``"mle"``; the whitening flag lives in the state (an array, so a state can be
passed through ``jax.jit``).

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import pca
    >>> x = jnp.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    >>> state = pca.fit_pca(x, 1)
    >>> print(state.components.round(4), state.explained_variance_ratio.round(4))
    [[0.7071 0.7071]] [1.]

References:
    K. Pearson, "On lines and planes of closest fit to systems of points in space",
    Philosophical Magazine 2 (1901).
    H. Hotelling, "Analysis of a complex of statistical variables into principal components",
    J. Educational Psychology 24 (1933).
    C. Eckart and G. Young, "The approximation of one matrix by another of lower rank",
    Psychometrika 1 (1936).
    I. T. Jolliffe, *Principal Component Analysis* (2nd ed., 2002), chapters 1-3.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl._checks import check_bool, check_positive_int
from fdl._dtypes import HIGHEST

__all__ = ["PCAState", "fit_pca", "inverse_transform", "transform"]


class PCAState(NamedTuple):
    r"""A fitted PCA, ``K`` components of ``D`` features.

    Attributes:
        mean: ``(D,)`` the feature means :math:`\mu` of the training data.
        components: ``(K, D)`` the principal axes :math:`V^\top_{1:K}`, orthonormal rows, in
            decreasing order of variance, signs as in the module docstring.
        explained_variance: ``(K,)`` :math:`\sigma^2_i = s_i^2 / (N - 1)`.
        explained_variance_ratio: ``(K,)`` :math:`\sigma^2_i / \sum_{j=1}^{\min(N, D)}
            \sigma^2_j`, the share of the total variance (NaN for constant data).
        singular_values: ``(K,)`` :math:`s_i`.
        whiten: a bool scalar array: whether :func:`transform` scales to unit variance.
    """

    mean: jax.Array
    components: jax.Array
    explained_variance: jax.Array
    explained_variance_ratio: jax.Array
    singular_values: jax.Array
    whiten: jax.Array


def _float(x: ArrayLike) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))  # integers: the default float
    return x


def fit_pca(x: ArrayLike, n_components: int | None = None, *, whiten: bool = False) -> PCAState:
    r"""Fit PCA to ``x`` by the SVD of the centred data.

    .. math::

        \mu = \frac{1}{N} \sum_{n} x_n, \qquad
        X - \mathbf{1}\mu^\top = U \operatorname{diag}(s) V^\top, \qquad
        \sigma^2_i = \frac{s_i^2}{N - 1},

    keeping the first ``n_components`` rows of :math:`V^\top` (after the sign convention of
    the module docstring). Equal to ``sklearn.decomposition.PCA(n_components,
    whiten=whiten, svd_solver="full").fit(x)``: ``mean_``, ``components_``,
    ``explained_variance_``, ``explained_variance_ratio_``, ``singular_values_``.

    Args:
        x: ``(N, D)`` data, ``N >= 2`` examples of ``D`` features; integers are cast to the
            default float.
        n_components: ``K``, how many components to keep, ``1 <= K <= min(N, D)``; ``None``
            keeps ``min(N, D)``.
        whiten: if True, :func:`transform` divides each projection by
            :math:`\sigma_i` so that the outputs have unit variance.

    Returns:
        A :class:`PCAState` in the dtype of ``x``.

    Raises:
        ValueError: if ``x`` is not 2-D with ``N >= 2`` and ``D >= 1``, or ``n_components`` is
            not an int in ``1..min(N, D)``.
        TypeError: if ``whiten`` is not a bool.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[2.0, 0.0], [0.0, 1.0], [-2.0, 0.0], [0.0, -1.0]])
        >>> state = fit_pca(x)
        >>> print(state.explained_variance.round(4), state.singular_values.round(4))
        [2.6667 0.6667] [2.8284 1.4142]

    References:
        Jolliffe, *Principal Component Analysis* (2nd ed., 2002), section 3.5 (PCA and the SVD).
    """
    x = _float(x)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 1:
        raise ValueError(
            f"`x` must have shape (N, D) with N >= 2 examples and D >= 1 features, got shape {x.shape}"
        )
    n, d = x.shape
    rank = min(n, d)
    k = rank if n_components is None else check_positive_int("n_components", n_components)
    if k > rank:
        raise ValueError(f"`n_components` must be <= min(N, D) = min({n}, {d}) = {rank}, got {k}")
    check_bool("whiten", whiten)
    return _fit(x, jnp.asarray(whiten), k)


@functools.partial(jax.jit, static_argnums=2)
def _fit(x: jax.Array, whiten: jax.Array, k: int) -> PCAState:
    n = x.shape[0]
    mean = jnp.mean(x, axis=0)  # (D,)
    _, s, vt = jnp.linalg.svd(x - mean[None, :], full_matrices=False)  # s (R,), vt (R, D)
    peak = jnp.take_along_axis(vt, jnp.argmax(jnp.abs(vt), axis=1)[:, None], axis=1)  # (R, 1)
    vt = vt * jnp.where(peak < 0, -1, 1).astype(vt.dtype)  # largest |entry| of each row > 0
    variance = s**2 / (n - 1)  # (R,)
    return PCAState(
        mean=mean,
        components=vt[:k],
        explained_variance=variance[:k],
        explained_variance_ratio=variance[:k] / jnp.sum(variance),
        singular_values=s[:k],
        whiten=whiten,
    )


def _check_state(state: PCAState) -> None:
    if not isinstance(state, PCAState):
        raise TypeError(f"`state` must be a PCAState (from fit_pca), got {type(state).__name__}")


def transform(state: PCAState, x: ArrayLike) -> jax.Array:
    r"""Project ``x`` on the principal axes: its coordinates in the PCA basis.

    .. math::

        z = \frac{(x - \mu)\, V_{1:K}}{c}, \qquad
        c_i = \begin{cases} \max(\sigma_i, \varepsilon) & \text{whiten} \\ 1 & \text{else}
        \end{cases}

    with :math:`\varepsilon` the dtype's machine epsilon (scikit-learn's guard against dividing
    by a zero variance).

    Args:
        state: a :class:`PCAState` from :func:`fit_pca`.
        x: ``(..., D)`` data with the fitted number of features (any leading axes).

    Returns:
        ``(..., K)`` the projections, in the dtype of the state.

    Raises:
        ValueError: if the last axis of ``x`` is not ``D``.
        TypeError: if ``state`` is not a :class:`PCAState`.

    Example:
        >>> import jax.numpy as jnp
        >>> state = fit_pca(jnp.array([[0.0, 0.0], [2.0, 2.0]]), 1)
        >>> print(transform(state, jnp.array([[2.0, 2.0]])).round(4))
        [[1.4142]]
    """
    _check_state(state)
    x = _float(x)
    d = state.mean.shape[-1]
    if x.ndim < 1 or x.shape[-1] != d:
        raise ValueError(
            f"`x` must have {d} features (its last axis), as the data PCA was fitted on, got shape {x.shape}"
        )
    return _transform(state, x)


@jax.jit
def _transform(state: PCAState, x: jax.Array) -> jax.Array:
    dtype, d = state.components.dtype, state.mean.shape[-1]
    lead = (1,) * (x.ndim - 1)  # explicit broadcasting over the leading axes
    z = jnp.matmul(
        x.astype(dtype) - state.mean.reshape(*lead, d), state.components.T, precision=HIGHEST
    )  # (..., K)
    eps = jnp.finfo(dtype).eps
    scale = jnp.where(state.whiten, jnp.maximum(jnp.sqrt(state.explained_variance), eps), 1)  # (K,)
    return z / scale.astype(dtype).reshape(*lead, -1)


def inverse_transform(state: PCAState, z: ArrayLike) -> jax.Array:
    r"""Map PCA coordinates back to feature space: the reconstruction of the data.

    .. math::

        \hat x = (z \odot c)\, V_{1:K}^\top + \mu, \qquad
        c_i = \begin{cases} \sigma_i & \text{whiten} \\ 1 & \text{else} \end{cases}

    With all :math:`\min(N, D)` components, ``inverse_transform(state, transform(state, x))``
    is ``x`` up to rounding (for the training data; other data loses its part outside the span
    of the axes); with fewer it is the projection of ``x - mu`` on the kept axes, plus
    :math:`\mu`.

    Args:
        state: a :class:`PCAState` from :func:`fit_pca`.
        z: ``(..., K)`` coordinates, as from :func:`transform`.

    Returns:
        ``(..., D)`` the reconstruction, in the dtype of the state.

    Raises:
        ValueError: if the last axis of ``z`` is not ``K``.
        TypeError: if ``state`` is not a :class:`PCAState`.

    Example:
        >>> import jax.numpy as jnp
        >>> state = fit_pca(jnp.array([[0.0, 0.0], [2.0, 2.0]]), 1)
        >>> print(inverse_transform(state, jnp.array([[1.4142135]])).round(4))
        [[2. 2.]]
    """
    _check_state(state)
    z = _float(z)
    k = state.components.shape[0]
    if z.ndim < 1 or z.shape[-1] != k:
        raise ValueError(
            f"`z` must have {k} components (its last axis), as the fitted PCA, got shape {z.shape}"
        )
    return _inverse_transform(state, z)


@jax.jit
def _inverse_transform(state: PCAState, z: jax.Array) -> jax.Array:
    dtype, k = state.components.dtype, state.components.shape[0]
    scale = jnp.where(state.whiten, jnp.sqrt(state.explained_variance), 1).astype(dtype)  # (K,)
    lead = (1,) * (z.ndim - 1)  # explicit broadcasting over the leading axes
    scaled = z.astype(dtype) * scale.reshape(*lead, k)  # (..., K)
    return jnp.matmul(scaled, state.components, precision=HIGHEST) + state.mean.reshape(*lead, -1)
