"""fdl.pca against scikit-learn's PCA(svd_solver="full") on all 1,797 digits.

Both sides flip each component so that its largest-magnitude entry is positive (sklearn's
``svd_flip(u_based_decision=False)``), so they are compared entry by entry. Tolerances come from
the backward stability of the SVD: singular values agree to ``c * eps * s_1`` (``c = 10 *
sqrt(N)``, the rounding of ``N``-term sums), a component to that divided by its singular value's
gap to its neighbours (Wedin's theorem), and the projections to the sum of both errors.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA

from fdl import pca
from fdl.data import load_digits


@functools.cache
def digits():
    split = load_digits()
    return np.concatenate([split.x_train, split.x_test])  # (1797, 64) float32 in [0, 1]


def component_tolerance(singular_values, eps, n):
    """Per component: ``c * eps * s_1 / gap_i`` (inf where the gap is 0: a free direction)."""
    s = np.asarray(singular_values, np.float64)
    gaps = np.abs(np.diff(s, prepend=np.inf, append=-np.inf))
    gap = np.minimum(gaps[:-1], gaps[1:])
    with np.errstate(divide="ignore"):
        return 10 * np.sqrt(n) * eps * s[0] / gap


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("whiten", [False, True])
def test_equals_sklearn_pca_on_digits(dtype, whiten):
    x = digits()
    n = x.shape[0]
    ref = PCA(svd_solver="full", whiten=whiten).fit(x.astype(np.float64))
    eps = np.finfo(dtype).eps
    value_tol = 10 * np.sqrt(n) * eps * ref.singular_values_[0]
    with jax.enable_x64(dtype == "float64"):
        state = pca.fit_pca(jnp.asarray(x, dtype), whiten=whiten)
        assert state.components.dtype == jnp.dtype(dtype) and state.components.shape == (64, 64)
        np.testing.assert_allclose(state.mean, ref.mean_, rtol=0, atol=10 * eps)
        np.testing.assert_allclose(state.singular_values, ref.singular_values_, rtol=0, atol=value_tol)
        var_tol = 2 * ref.singular_values_[0] * value_tol / (n - 1)  # d(s^2) = 2 s ds
        np.testing.assert_allclose(state.explained_variance, ref.explained_variance_, rtol=0, atol=var_tol)
        total = np.sum(ref.explained_variance_)
        np.testing.assert_allclose(
            state.explained_variance_ratio, ref.explained_variance_ratio_, rtol=0, atol=2 * var_tol / total
        )
        # components: digits has 3 constant pixels, so the last 3 singular values are 0 and their
        # axes are any basis of that null space; the others are compared entry by entry
        tol = component_tolerance(ref.singular_values_, eps, n)
        free = ref.singular_values_ < value_tol
        assert free.sum() == 3
        error = np.max(np.abs(np.asarray(state.components, np.float64) - ref.components_), axis=1)
        assert np.all(error[~free] <= tol[~free]), (error / tol)[~free].max()

        # transform and inverse_transform with 20 components
        state = pca.fit_pca(jnp.asarray(x, dtype), 20, whiten=whiten)
        ref = PCA(20, svd_solver="full", whiten=whiten).fit(x.astype(np.float64))
        z = pca.transform(state, jnp.asarray(x, dtype))
        z_ref = ref.transform(x.astype(np.float64))
        scale = np.sqrt(ref.explained_variance_) if whiten else np.ones(20)
        # |dz| <= |x - mu| (|dV| + |dmu| ...): row norm of the centred data times the axis error
        z_tol = np.max(np.linalg.norm(x - x.mean(0), axis=1)) * tol[:20] / scale
        np.testing.assert_array_less(np.max(np.abs(np.asarray(z, np.float64) - z_ref), axis=0), z_tol)
        back = pca.inverse_transform(state, z)
        back_ref = ref.inverse_transform(z_ref)
        np.testing.assert_allclose(back, back_ref, rtol=0, atol=float(np.sum(z_tol * scale)) + 10 * eps)


def test_full_rank_round_trip_is_the_identity_and_whitened_outputs_have_unit_covariance():
    x = jnp.asarray(digits())
    state = pca.fit_pca(x)
    np.testing.assert_allclose(pca.inverse_transform(state, pca.transform(state, x)), x, rtol=0, atol=2e-5)
    state = pca.fit_pca(x, 10, whiten=True)
    z = np.asarray(pca.transform(state, x), np.float64)  # (N, 10)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(10), rtol=0, atol=1e-4)
    np.testing.assert_allclose(z.mean(axis=0), 0, rtol=0, atol=1e-5)


def test_components_are_orthonormal_and_signed_by_their_largest_entry():
    state = pca.fit_pca(jnp.asarray(digits()), 10)
    v = np.asarray(state.components, np.float64)  # (10, 64)
    np.testing.assert_allclose(v @ v.T, np.eye(10), rtol=0, atol=1e-5)
    assert np.all(v[np.arange(10), np.argmax(np.abs(v), axis=1)] > 0)


def test_leading_axes_integer_input_and_jit():
    x = np.arange(24, dtype=np.int32).reshape(6, 4) ** 2 % 7  # integers: cast to float32
    state = pca.fit_pca(x, 2)
    assert state.components.dtype == jnp.float32
    jitted = jax.jit(pca.fit_pca, static_argnums=1)(jnp.asarray(x, jnp.float32), 2)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), jitted, state)
    batch = jnp.asarray(x[:4].reshape(2, 2, 4), jnp.float32)
    z = pca.transform(state, batch)
    assert z.shape == (2, 2, 2)
    np.testing.assert_allclose(z.reshape(4, 2), pca.transform(state, x[:4]), rtol=0, atol=1e-6)
    assert pca.inverse_transform(state, z).shape == (2, 2, 4)


def test_bad_input():
    x = jnp.asarray(digits()[:10, :5])  # (10, 5)
    with pytest.raises(ValueError, match=r"`n_components` must be <= min\(N, D\) = min\(10, 5\) = 5, got 6"):
        pca.fit_pca(x, 6)
    with pytest.raises(ValueError, match="`n_components` must be a positive integer, got 0"):
        pca.fit_pca(x, 0)
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, D\) with N >= 2.*got shape \(5,\)"):
        pca.fit_pca(x[0])
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, D\) with N >= 2.*got shape \(1, 5\)"):
        pca.fit_pca(x[:1])
    with pytest.raises(TypeError, match="`whiten` must be a bool, got 1"):
        pca.fit_pca(x, whiten=1)
    state = pca.fit_pca(x, 2)
    with pytest.raises(ValueError, match=r"`x` must have 5 features \(its last axis\).*got shape \(10, 4\)"):
        pca.transform(state, x[:, :4])
    with pytest.raises(
        ValueError, match=r"`z` must have 2 components \(its last axis\).*got shape \(10, 3\)"
    ):
        pca.inverse_transform(state, jnp.ones((10, 3)))
    with pytest.raises(TypeError, match="`state` must be a PCAState"):
        pca.transform(tuple(state), x)
