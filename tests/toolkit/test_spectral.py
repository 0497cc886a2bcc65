"""fdl.spectral against numpy.linalg.eigh (float64), jax.hessian, and the convergence theory.

Tolerances come from backward stability: a symmetric eigensolver's eigenvalues are exact for a
matrix within ``c * eps * ||A||`` of ``A``, so eigenvalues agree to ``10 * sqrt(n) * eps *
||A||`` (the ``10 sqrt(n)``: accumulated rounding of ``n``-term inner products), and an
eigenvector to that divided by its eigenvalue's gap to the rest of the spectrum (Davis-Kahan).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import spectral


def symmetric(evals, seed, dtype=np.float64):
    """``Q diag(evals) Q^T`` for a random orthogonal ``Q`` (float64, then cast), and ``Q``."""
    rng = np.random.default_rng(seed)
    n = len(evals)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))  # (n, n) orthogonal
    a = (q * np.asarray(evals)) @ q.T
    return ((a + a.T) / 2).astype(dtype), q


def tolerance(a, dtype):
    n = a.shape[0]
    return 10 * np.sqrt(n) * np.finfo(dtype).eps * np.linalg.norm(np.asarray(a, np.float64), 2)


def start(n, seed, dtype):
    return jnp.asarray(np.random.default_rng(seed).normal(size=n).astype(dtype))


def projector(vectors):
    vectors = np.asarray(vectors, np.float64)
    return vectors @ vectors.T


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_all_eigenpairs_of_a_random_symmetric_matrix_equal_eigh(dtype):
    """m = n steps with reorthogonalisation: every eigenpair of a GOE matrix, as eigh's."""
    with jax.enable_x64(dtype == "float64"):
        n, rng = 60, np.random.default_rng(0)
        b = rng.normal(size=(n, n))
        a = ((b + b.T) / 2).astype(dtype)
        ref_values, ref_vectors = np.linalg.eigh(a.astype(np.float64))
        values, vectors = spectral.top_eigenpairs(a, start(n, 1, dtype), n, num_iterations=n)
        assert values.dtype == vectors.dtype == jnp.dtype(dtype)
        tol = tolerance(a, dtype)
        np.testing.assert_allclose(values, ref_values[::-1], rtol=0, atol=tol)
        vectors = np.asarray(vectors, np.float64)
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(n), rtol=0, atol=tol)
        gaps = np.abs(np.diff(ref_values[::-1], prepend=np.inf, append=-np.inf))
        gap = np.minimum(gaps[:-1], gaps[1:])  # distance of each eigenvalue to its neighbours
        overlap = np.abs(np.sum(vectors * ref_vectors[:, ::-1], axis=0))
        assert np.all(1 - overlap <= tol / gap), (1 - overlap).max()


# Compiling is most of this file's time: the tests share two shapes, (n, m, k) = (60, 60, 60)
# (every eigenpair) and (120, 30, 5) (the top few), so each compiles once per dtype.


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_top_five_of_a_decaying_spectrum_in_30_steps(dtype):
    """Eigenvalues 10 * 0.8**i (a Hessian-like decay), n = 120: 30 steps give the top 5
    eigenpairs to rounding."""
    with jax.enable_x64(dtype == "float64"):
        n = 120
        evals = 10 * 0.8 ** np.arange(n)
        a, q = symmetric(evals, 2, dtype)
        values, vectors = spectral.top_eigenpairs(a, start(n, 3, dtype), 5, num_iterations=30)
        tol = tolerance(a, dtype)
        np.testing.assert_allclose(values, evals[:5], rtol=0, atol=tol)
        gap = 10 * 0.8**4 * 0.2  # the smallest gap among the top 5 and the 6th
        q5 = q[:, :5] * np.sign(q[np.argmax(np.abs(q[:, :5]), axis=0), np.arange(5)])  # fdl's signs
        np.testing.assert_allclose(np.asarray(vectors, np.float64), q5, rtol=0, atol=tol / gap)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nearly_degenerate_pair_1_and_1_plus_1e_6(dtype):
    """Eigenvalues 1 + 1e-6, 1 and 118 others in [0, 0.5]: 30 steps resolve the pair in float64
    (values and each eigenvector); in float32 the gap is 8 ulps, so the values agree to rounding
    and the pair's 2-dimensional eigenspace is found, but not each vector (as with eigh)."""
    with jax.enable_x64(dtype == "float64"):
        n = 120
        evals = np.concatenate([[1 + 1e-6, 1.0], np.random.default_rng(4).uniform(0, 0.5, n - 2)])
        a, _ = symmetric(evals, 5, dtype)
        ref_values, ref_vectors = np.linalg.eigh(a.astype(np.float64))
        values, vectors = spectral.top_eigenpairs(a, start(n, 6, dtype), 5, num_iterations=30)
        tol = tolerance(a, dtype)
        np.testing.assert_allclose(values[:2], ref_values[::-1][:2], rtol=0, atol=tol)
        pair = ref_vectors[:, -2:]
        np.testing.assert_allclose(projector(vectors[:, :2]), projector(pair), rtol=0, atol=tol / 0.5)
        if dtype == "float64":
            assert values[0] - values[1] == pytest.approx(1e-6, rel=1e-6)
            overlap = np.abs(np.sum(np.asarray(vectors[:, :2]) * pair[:, ::-1], axis=0))
            np.testing.assert_allclose(overlap, 1, rtol=0, atol=tol / 1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_repeated_eigenvalue_gets_both_copies_once_the_krylov_space_is_exhausted(dtype):
    """Eigenvalue 3 twice: with m = n (breakdown, then a restart) both copies come out, as eigh.
    (Before that, a single start vector's Krylov space holds one copy in exact arithmetic; in
    floating point the other emerges from rounding at no predictable step.)"""
    with jax.enable_x64(dtype == "float64"):
        n = 60
        evals = np.concatenate([[3.0, 3.0, 2.0], np.random.default_rng(7).uniform(0, 1, n - 3)])
        a, q = symmetric(evals, 8, dtype)
        values, vectors = spectral.top_eigenpairs(a, start(n, 9, dtype), n, num_iterations=n)
        tol = tolerance(a, dtype)
        np.testing.assert_allclose(values[:3], [3.0, 3.0, 2.0], rtol=0, atol=tol)
        np.testing.assert_allclose(projector(vectors[:, :2]), projector(q[:, :2]), rtol=0, atol=tol)


def test_without_reorthogonalization_float32_lanczos_grows_ghost_eigenvalues():
    """120 x 120, eigenvalues 10, 9 and 118 in [0, 1], float32, 30 steps: without
    reorthogonalisation the top Ritz value 10 appears several times (ghosts: eigh has it once),
    with it the top two Ritz values are eigh's."""
    n = 120
    evals = np.concatenate([[10.0, 9.0], np.linspace(0, 1, n - 2)])
    a, _ = symmetric(evals, 10, np.float32)
    ref = np.linalg.eigvalsh(a.astype(np.float64))[::-1][:5]
    v0 = start(n, 11, np.float32)
    plain, _ = spectral.top_eigenpairs(a, v0, 5, num_iterations=30, reorthogonalize=False)
    full, _ = spectral.top_eigenpairs(a, v0, 5, num_iterations=30, reorthogonalize=True)

    def near_10(values):
        return int(np.sum(np.abs(np.asarray(values) - 10) < 1e-3))

    assert near_10(ref) == 1
    assert near_10(plain) >= 2  # ghost copies
    assert near_10(full) == 1
    np.testing.assert_allclose(full[:2], ref[:2], rtol=0, atol=tolerance(a, np.float32))


def test_lanczos_basis_is_orthonormal_and_tridiagonalises():
    with jax.enable_x64(True):
        n, m = 60, 12
        b = np.random.default_rng(12).normal(size=(n, n))
        a = (b + b.T) / 2
        alphas, betas, basis = spectral.lanczos(a, start(n, 13, "float64"), m)
        assert alphas.shape == (m,) and betas.shape == (m - 1,) and basis.shape == (n, m)
        t = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        basis = np.asarray(basis)
        np.testing.assert_allclose(basis.T @ basis, np.eye(m), rtol=0, atol=1e-13)
        np.testing.assert_allclose(basis.T @ a @ basis, t, rtol=0, atol=1e-12)
        v0 = np.asarray(start(n, 13, "float64"))
        np.testing.assert_allclose(basis[:, 0], v0 / np.linalg.norm(v0), rtol=0, atol=1e-15)


def test_hessian_vector_products_under_jit_match_eigh_of_jax_hessian():
    """The use case: the operator is v -> H v by jax.jvp over jax.grad, never built; the whole
    computation jitted, the start vector drawn from a key."""
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(16).normal(size=(20, 5)))

        def loss(w):  # (5,) -> scalar: a smooth, non-quadratic function
            return jnp.mean(jnp.log1p(jnp.exp(x @ w))) + 0.1 * jnp.sum(w**4)

        def top(w, key):
            hvp = lambda v: jax.jvp(jax.grad(loss), (w,), (v,))[1]
            return spectral.top_eigenpairs(hvp, 5, 2, key=key, num_iterations=5)

        w = jnp.asarray(np.random.default_rng(17).normal(size=5))
        values, vectors = jax.jit(top)(w, jax.random.key(0))
        ref_values, ref_vectors = np.linalg.eigh(np.asarray(jax.jit(jax.hessian(loss))(w)))
        np.testing.assert_allclose(values, ref_values[::-1][:2], rtol=1e-12)
        overlap = np.abs(np.sum(np.asarray(vectors) * ref_vectors[:, ::-1][:, :2], axis=0))
        np.testing.assert_allclose(overlap, 1, rtol=0, atol=1e-10)
        # the symmetry probe passes on a Hessian (outside jit, where values are concrete)
        hvp = lambda v: jax.jvp(jax.grad(loss), (w,), (v,))[1]
        result = spectral.power_iteration(hvp, jnp.ones(5, jnp.float64), check_symmetric=True)
        assert float(result.eigenvalue) == pytest.approx(ref_values[-1], rel=1e-4)


def test_integer_dimension_draws_the_start_vector_from_the_key():
    n = 120
    a, _ = symmetric(10 * 0.8 ** np.arange(n), 18, np.float32)
    values, _ = spectral.top_eigenpairs(a, n, 5, key=jax.random.key(1), num_iterations=30)
    np.testing.assert_allclose(values[:2], [10.0, 8.0], rtol=0, atol=tolerance(a, np.float32))


def test_power_iteration_finds_the_largest_magnitude_eigenpair_at_the_rate_lambda2_over_lambda1():
    """Eigenvalues -10 (the dominant one, negative), 8, and 48 in [0, 1]: the residual shrinks by
    |8 / -10| = 0.8 per step."""
    with jax.enable_x64(True):
        n = 50
        evals = np.concatenate([[-10.0, 8.0], np.linspace(0, 1, n - 2)])
        a, q = symmetric(evals, 19)
        v0 = start(n, 20, "float64")
        result = spectral.power_iteration(a, v0, tol=1e-10)
        assert result.eigenvalue == pytest.approx(-10.0, abs=1e-10 * 10)
        assert abs(float(jnp.vdot(result.eigenvector, jnp.asarray(q[:, 0])))) == pytest.approx(1, abs=1e-9)
        assert float(result.residual) <= 1e-10 * 10
        # the rate: residuals 20 steps apart (tol=0 runs every step)
        early = spectral.power_iteration(a, v0, num_iterations=40, tol=0.0)
        late = spectral.power_iteration(a, v0, num_iterations=60, tol=0.0)
        assert int(early.num_iterations) == 40 and int(late.num_iterations) == 60
        assert float(late.residual / early.residual) ** (1 / 20) == pytest.approx(0.8, abs=0.01)
        # and so about log(1e-10) / log(0.8) = 103 steps to the tolerance
        assert 80 <= int(result.num_iterations) <= 130


def test_power_iteration_stops_at_once_on_the_zero_operator():
    result = spectral.power_iteration(jnp.zeros((4, 4)), jnp.ones(4))
    assert int(result.num_iterations) == 1 and float(result.eigenvalue) == 0.0


def test_zero_operator_gives_zero_ritz_values():
    values, vectors = spectral.top_eigenpairs(jnp.zeros((60, 60)), jnp.ones(60), 60, num_iterations=60)
    np.testing.assert_array_equal(values, 0.0)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(60), rtol=0, atol=10 * np.sqrt(60) * 1.2e-7)


# ----------------------------------------------------------------------------------- bad input


def test_non_symmetric_matrix_is_refused():
    a = np.eye(4, dtype=np.float32)
    a[0, 1] = 1e-2
    with pytest.raises(ValueError, match=r"must be a symmetric matrix: max \|A - A\^T\| = 0.01"):
        spectral.top_eigenpairs(a, jnp.ones(4), 1)
    with pytest.raises(ValueError, match="must be a symmetric matrix"):
        spectral.power_iteration(a, jnp.ones(4))
    with pytest.raises(ValueError, match="must be a symmetric matrix"):
        spectral.lanczos(a, jnp.ones(4), 2)
    a[0, 1] = 1e-5  # below sqrt(eps) = 3.5e-4 relative to max |A| = 1: accepted
    assert spectral.lanczos(a, jnp.ones(4), 2).alphas.shape == (2,)
    a[0, 1] = 1e-2
    assert spectral.lanczos(a, jnp.ones(4), 2, check_symmetric=False).alphas.shape == (2,)


def test_non_symmetric_function_fails_the_probe_only_when_asked():
    b = jnp.asarray(np.random.default_rng(21).normal(size=(5, 5)).astype(np.float32))
    with pytest.raises(
        ValueError, match=r"`matvec` does not look symmetric: for random u, v, \|u.Av - v.Au\|"
    ):
        spectral.top_eigenpairs(lambda v: b @ v, jnp.ones(5), 1, check_symmetric=True)
    spectral.top_eigenpairs(lambda v: b @ v, jnp.ones(5), 1, num_iterations=5)  # off by default
    spectral.top_eigenpairs(lambda v: (b + b.T) @ v, jnp.ones(5), 1, num_iterations=5, check_symmetric=True)


@pytest.mark.parametrize(
    ("operator", "v0", "match"),
    [
        (np.ones((3, 4)), np.ones(3), r"square \(n, n\) array, got an array of shape \(3, 4\)"),
        (np.ones(3), np.ones(3), r"square \(n, n\) array, got an array of shape \(3,\)"),
        (np.eye(3), np.ones(4), r"`v0` must have shape \(3,\) to match the matrix, got \(4,\)"),
        (np.eye(3), np.ones((3, 1)), r"`v0` must be a non-empty vector of shape \(n,\), got shape \(3, 1\)"),
        (np.eye(3), np.zeros(3), "`v0` must be a nonzero vector, got all zeros"),
        (
            lambda v: v[:2],
            np.ones(3),
            r"must map a vector of shape \(3,\) \(= v0.shape\) to \(3,\), got \(2,\)",
        ),
    ],
)
def test_bad_operator_or_start_vector(operator, v0, match):
    for call in (
        lambda: spectral.top_eigenpairs(operator, v0, 1, num_iterations=2),
        lambda: spectral.lanczos(operator, v0, 2),
        lambda: spectral.power_iteration(operator, v0),
    ):
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_counts():
    a, v0 = np.eye(4, dtype=np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="`num_iterations` must be a positive integer, got 0"):
        spectral.lanczos(a, v0, 0)
    with pytest.raises(ValueError, match=r"`num_iterations` must be <= n \(4\).*got 5"):
        spectral.top_eigenpairs(a, v0, 1, num_iterations=5)
    with pytest.raises(ValueError, match="`num_iterations` must be a positive integer, got 0"):
        spectral.power_iteration(a, v0, num_iterations=0)
    with pytest.raises(ValueError, match="`k` must be a positive integer, got 0"):
        spectral.top_eigenpairs(a, v0, 0)
    with pytest.raises(ValueError, match=r"`k` must be <= n, the operator's dimension \(4\), got 5"):
        spectral.top_eigenpairs(a, v0, 5)
    with pytest.raises(ValueError, match=r"`k` must be <= num_iterations \(2\).*got 3"):
        spectral.top_eigenpairs(a, v0, 3, num_iterations=2)
    with pytest.raises(ValueError, match="`dim_or_v0` must be a positive integer, got 0"):
        spectral.top_eigenpairs(a, 0, 1, key=jax.random.key(0))
    with pytest.raises(ValueError, match="`key` is required when `dim_or_v0` is an int"):
        spectral.top_eigenpairs(a, 4, 1)
    with pytest.raises(ValueError, match=r"`tol` must be a number >= 0, got -1.0"):
        spectral.power_iteration(a, v0, tol=-1.0)
    with pytest.raises(TypeError, match="`reorthogonalize` must be a bool, got 1"):
        spectral.top_eigenpairs(a, v0, 1, reorthogonalize=1)
    with pytest.raises(TypeError, match="`check_symmetric` must be a bool, got 'yes'"):
        spectral.lanczos(a, v0, 2, check_symmetric="yes")
