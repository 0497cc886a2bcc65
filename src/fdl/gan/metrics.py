"""Scoring a generator: mode coverage on a mixture (Metz et al.) and the Fréchet distance."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import (
    check_non_negative_finite,
)
from fdl._dtypes import HIGHEST

__all__ = ["mode_coverage", "gaussian_frechet_distance", "frechet_distance"]


# ----------------------------------------------------------------------------------- metrics


def mode_coverage(
    samples: Any, modes: Any, std: float, *, threshold: float = 3.0, min_fraction: float = 0.01
) -> tuple[jax.Array, jax.Array]:
    r"""The mode-collapse metrics for samples of a Gaussian mixture: Metz et al.'s (2017) ring,
    scored as Srivastava et al. (2017, VEEGAN) count modes and high-quality samples.

    A sample is **high quality** when it lies within ``threshold`` standard deviations of its
    nearest mode, :math:`\min_k \lVert s_i - \mu_k\rVert_2 \le t\,\sigma`; a mode is
    **covered** when at least a fraction ``min_fraction`` of all samples are high quality and
    nearest to it (so a few stray samples do not count as a mode; with 2,500 samples the
    default asks for 25, close to the 20 of Lin et al., 2018).

    Args:
        samples: ``(N, D)`` generated samples.
        modes: ``(K, D)`` the mixture's means :math:`\mu_k`.
        std: :math:`\sigma > 0`, the components' standard deviation.
        threshold: :math:`t`, the radius in standard deviations.
        min_fraction: the share of the ``N`` samples a covered mode holds.

        The three settings are static Python numbers (checked before tracing): close over them
        or mark them static under ``jax.jit``.

    Returns:
        ``(modes_covered, high_quality_fraction)``: an int32 count in ``[0, K]`` and a float
        in ``[0, 1]``.

    >>> import jax.numpy as jnp
    >>> modes = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    >>> covered, quality = mode_coverage(jnp.array([[0.0, 0.07], [0.0, -0.01], [0.5, 0.5]]), modes, 0.02)
    >>> int(covered), round(float(quality), 4)  # one within 3 x 0.02 of mode 0
    (1, 0.3333)
    """
    std = check_non_negative_finite("std", std)
    if std == 0:
        raise ValueError("`std` must be a positive finite number, got 0")
    samples, modes = jnp.asarray(samples), jnp.asarray(modes)
    if samples.ndim != 2 or modes.ndim != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(
            f"`samples` (N, D) and `modes` (K, D) must be matrices with the same D, got shapes "
            f"{samples.shape} and {modes.shape}"
        )
    distances = jnp.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=-1)  # (N, K)
    nearest = jnp.argmin(distances, axis=1)  # (N,)
    good = jnp.min(distances, axis=1) <= threshold * std  # (N,)
    counts = jnp.sum(
        good[:, None] & (nearest[:, None] == jnp.arange(modes.shape[0])[None, :]), axis=0
    )  # (K,)
    covered = jnp.sum(counts.astype(jnp.float32) >= min_fraction * samples.shape[0]).astype(jnp.int32)
    return covered, jnp.mean(good.astype(jnp.float32))


def _sqrt_psd(matrix: jax.Array) -> jax.Array:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues
    rounded below zero are taken as zero)."""
    values, vectors = jnp.linalg.eigh(matrix)
    return jnp.matmul(vectors * jnp.sqrt(jnp.maximum(values, 0))[None, :], vectors.T, precision=HIGHEST)


def gaussian_frechet_distance(mean_a: Any, cov_a: Any, mean_b: Any, cov_b: Any) -> jax.Array:
    r"""The Fréchet (2-Wasserstein) distance squared between two Gaussians
    :math:`\mathcal N(\mu_a, \Sigma_a)` and :math:`\mathcal N(\mu_b, \Sigma_b)`:

    .. math::

        d^2 = \lVert \mu_a - \mu_b \rVert_2^2
            + \operatorname{Tr}\bigl(\Sigma_a + \Sigma_b - 2 (\Sigma_a \Sigma_b)^{1/2}\bigr),
        \qquad \operatorname{Tr}(\Sigma_a \Sigma_b)^{1/2}
            = \operatorname{Tr}\bigl(\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}\bigr)^{1/2}

    The right-hand form (the two matrices are similar, so they share their eigenvalues) needs
    only square roots of symmetric positive semi-definite matrices, taken by a symmetric
    eigendecomposition; it is real and stable where the non-symmetric :math:`\Sigma_a
    \Sigma_b` of ``scipy.linalg.sqrtm`` can give complex round-off (Dowson & Landau, 1982;
    Heusel et al., 2017).

    Args:
        mean_a, mean_b: ``(F,)`` means.
        cov_a, cov_b: ``(F, F)`` symmetric positive semi-definite covariances.

    Returns:
        The scalar :math:`d^2 \ge 0` (up to round-off).

    >>> import jax.numpy as jnp
    >>> eye = jnp.eye(2)
    >>> float(gaussian_frechet_distance(jnp.zeros(2), eye, jnp.array([3.0, 4.0]), 4 * eye))  # 25 + 2 (1 + 4 - 4)
    27.0
    """
    mean_a, mean_b = jnp.asarray(mean_a), jnp.asarray(mean_b)
    cov_a, cov_b = jnp.asarray(cov_a), jnp.asarray(cov_b)
    f = mean_a.shape[0] if mean_a.ndim == 1 else -1
    if any(m.shape != (f,) for m in (mean_a, mean_b)) or any(c.shape != (f, f) for c in (cov_a, cov_b)):
        raise ValueError(
            f"the means must be (F,) and the covariances (F, F) for one F, got shapes "
            f"{mean_a.shape}, {cov_a.shape}, {mean_b.shape}, {cov_b.shape}"
        )
    root_a = _sqrt_psd(cov_a)
    middle = jnp.linalg.multi_dot([root_a, cov_b, root_a], precision=HIGHEST)  # float32 stays float32 on GPU
    middle = 0.5 * (middle + middle.T)  # symmetric up to round-off: make it exactly so
    trace_root = jnp.sum(jnp.sqrt(jnp.maximum(jnp.linalg.eigvalsh(middle), 0)))
    return jnp.sum(jnp.square(mean_a - mean_b)) + jnp.trace(cov_a) + jnp.trace(cov_b) - 2 * trace_root


def frechet_distance(features_a: Any, features_b: Any) -> jax.Array:
    r"""The Fréchet distance between two sets of features, each summarized as a Gaussian: the
    FID of Heusel et al. (2017) in whatever feature space the features come from.

    :func:`gaussian_frechet_distance` of the sample means :math:`\hat\mu = \frac1N \sum_i f_i`
    and the unbiased sample covariances :math:`\hat\Sigma = \frac{1}{N - 1} \sum_i (f_i -
    \hat\mu)(f_i - \hat\mu)^\top` (``numpy.cov``'s default). It is biased upwards for small
    ``N``: compare distances computed from the same number of samples.

    Args:
        features_a: ``(N, F)`` features, e.g. a classifier's penultimate layer on real data.
        features_b: ``(M, F)`` features of the other set (generated samples).

    Returns:
        The scalar squared distance.

    Raises:
        ValueError: not two matrices with the same ``F`` and at least 2 rows each.
    """
    a, b = jnp.asarray(features_a), jnp.asarray(features_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(a.shape[0], b.shape[0]) < 2:
        raise ValueError(
            f"`features_a` (N, F) and `features_b` (M, F) must be matrices with the same F and at "
            f"least 2 rows, got shapes {a.shape} and {b.shape}"
        )

    def moments(f: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = jnp.mean(f, axis=0)  # (F,)
        centred = f - mean[None, :]  # (N, F)
        return mean, jnp.matmul(centred.T, centred, precision=HIGHEST) / (f.shape[0] - 1)  # (F,), (F, F)

    return gaussian_frechet_distance(*moments(a), *moments(b))
