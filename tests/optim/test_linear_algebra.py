"""fdl.optim.linear_algebra: power iteration and the inverse p-th root, against optax (same
inputs, same keys: equal arrays) and against dense float64 references (numpy.linalg.eigh)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.linear_algebra import matrix_inverse_pth_root, power_iteration
from tests.optim.helpers import optax_promotion


def spd(key, n, spread=10.0):
    """A random symmetric positive definite ``(n, n)`` float32 matrix with eigenvalues spread
    over ``[1, spread]`` (a dominant eigenvalue well separated from the next)."""
    q, _ = jnp.linalg.qr(jax.random.normal(key, (n, n)))
    eigenvalues = jnp.linspace(1.0, spread, n) ** 2 / spread
    scaled = q * eigenvalues[None, :]  # (n, n): column i times eigenvalue i
    return ((scaled @ q.T + q @ scaled.T) / 2).astype(jnp.float32)


def dense_inverse_root(a, p, ridge_epsilon=1e-6):
    """:math:`(A + \\epsilon I)^{-1/p}` in float64 by eigendecomposition, with optax's ridge
    :math:`\\epsilon = r\\, \\lambda_{\\max}`."""
    a = np.asarray(a, np.float64)
    w, v = np.linalg.eigh(a)
    w = w + ridge_epsilon * max(w.max(), 1e-16)
    return (v * w ** (-1.0 / p)) @ v.T


def assert_equal_trees(ours, theirs):
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)


# ------------------------------------------------------------------------------ power iteration


def test_power_iteration_equals_optax_with_the_same_key_and_with_v0(keys):
    a = spd(next(keys), 6)
    key, v0 = next(keys), jax.random.normal(next(keys), (6,))
    for kwargs in ({}, {"key": key}, {"v0": v0}, {"v0": v0, "num_iters": 3}, {"error_tolerance": 1e-2}):
        ours = power_iteration(a, **kwargs)
        with optax_promotion():
            theirs = optax.power_iteration(a, **kwargs)
        assert_equal_trees(ours, theirs)


def test_power_iteration_finds_the_top_eigenpair_of_numpy_eigh(keys):
    a = spd(next(keys), 8)
    w, v = np.linalg.eigh(np.asarray(a, np.float64))
    value, vector = power_iteration(a, key=next(keys), num_iters=1000, error_tolerance=1e-7)
    np.testing.assert_allclose(float(value), w[-1], rtol=1e-5)
    alignment = abs(np.dot(np.asarray(vector, np.float64), v[:, -1]))
    np.testing.assert_allclose(alignment, 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(vector, np.float64)), 1.0, rtol=1e-6)


def test_power_iteration_by_hand_two_steps():
    # num_iters=1 runs one iteration: v1 = A v0 / |A v0|, z1 = A v1, lambda = v1 . z1, and the
    # returned vector is z1 / |z1|
    a = np.asarray([[2.0, 1.0], [1.0, 3.0]])
    v0 = np.asarray([1.0, 0.0])
    v1 = a @ v0 / np.linalg.norm(a @ v0)
    z1 = a @ v1
    value, vector = power_iteration(jnp.asarray(a, jnp.float32), v0=jnp.asarray(v0, jnp.float32), num_iters=1)
    np.testing.assert_allclose(float(value), v1 @ z1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(vector), z1 / np.linalg.norm(z1), rtol=1e-6)


def test_power_iteration_on_a_matrix_free_operator_over_a_tree_equals_optax(keys):
    a, b = spd(next(keys), 3), spd(next(keys), 2, spread=3.0)

    def product(v):
        return {"x": a @ v["x"], "y": b @ v["y"]}

    v0 = {"x": jax.random.normal(next(keys), (3,)), "y": jax.random.normal(next(keys), (2,))}
    ours = power_iteration(product, v0=v0, num_iters=500)
    with optax_promotion():
        theirs = optax.power_iteration(product, v0=v0, num_iters=500)
    assert_equal_trees(ours, theirs)
    # the block-diagonal matrix's top eigenvalue is A's (spread 10 > 3)
    np.testing.assert_allclose(float(ours[0]), np.linalg.eigvalsh(np.asarray(a, np.float64))[-1], rtol=1e-5)


def test_power_iteration_runs_under_jit_with_traced_arguments(keys):
    a, key = spd(next(keys), 5), next(keys)
    args = (a, jnp.asarray(50), jnp.asarray(1e-6), key)
    ours = jax.jit(lambda m, n, tol, k: power_iteration(m, num_iters=n, error_tolerance=tol, key=k))(*args)
    with optax_promotion():
        jitted = jax.jit(
            lambda m, n, tol, k: optax.power_iteration(m, num_iters=n, error_tolerance=tol, key=k)
        )
        theirs = jitted(*args)
    assert_equal_trees(ours, theirs)
    eager = power_iteration(a, num_iters=50, error_tolerance=1e-6, key=key)  # XLA fuses differently
    for x, y in zip(ours, eager, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7)


def test_power_iteration_errors():
    a = jnp.eye(3)
    with pytest.raises(ValueError, match=r"power_iteration: `v0` must be given when `matrix` is a function"):
        power_iteration(lambda v: v)
    with pytest.raises(
        ValueError, match=r"`matrix` must be a square 2-D array of shape \(n, n\), got shape \(3, 2\)"
    ):
        power_iteration(jnp.ones((3, 2)))
    with pytest.raises(
        ValueError, match=r"`v0` must be a vector of shape \(3,\) for a matrix of shape \(3, 3\), got \(2,\)"
    ):
        power_iteration(a, v0=jnp.ones(2))
    with pytest.raises(
        TypeError, match=r"power_iteration: `num_iters` must be a real number, got '5' \(str\)"
    ):
        power_iteration(a, num_iters="5")
    with pytest.raises(ValueError, match=r"`num_iters` must be a non-negative number, got -1"):
        power_iteration(a, num_iters=-1)
    with pytest.raises(ValueError, match=r"`error_tolerance` must be a non-negative number, got -0.1"):
        power_iteration(a, error_tolerance=-0.1)


# ------------------------------------------------------------------------ inverse p-th root


@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_inverse_pth_root_equals_optax_and_the_dense_root(keys, p):
    a = spd(next(keys), 5)
    ours = matrix_inverse_pth_root(a, p)
    with optax_promotion():
        theirs = optax.matrix_inverse_pth_root(a, p)
    assert_equal_trees(ours, theirs)
    root, error = ours
    assert root.dtype == jnp.float32 and error.shape == ()
    np.testing.assert_allclose(np.asarray(root, np.float64), dense_inverse_root(a, p), rtol=2e-4, atol=1e-5)


def test_inverse_pth_root_other_arguments_equal_optax(keys):
    a = spd(next(keys), 4)
    kwargs = {"num_iters": 3, "ridge_epsilon": 1e-2, "error_tolerance": 1e-3}
    ours = matrix_inverse_pth_root(a, 2, **kwargs)
    with optax_promotion():
        theirs = optax.matrix_inverse_pth_root(a, 2, **kwargs)
    assert_equal_trees(ours, theirs)


def test_inverse_pth_root_of_a_diagonal_by_hand():
    root, error = matrix_inverse_pth_root(jnp.diag(jnp.asarray([4.0, 16.0, 1.0])), 2, ridge_epsilon=0.0)
    np.testing.assert_allclose(np.asarray(root), np.diag([0.5, 0.25, 1.0]), atol=1e-5)
    assert float(error) <= 1e-5


def test_inverse_pth_root_of_a_1x1_matrix():
    root, error = matrix_inverse_pth_root(jnp.asarray([[9.0]]), 2)
    with optax_promotion():
        theirs, their_error = optax.matrix_inverse_pth_root(jnp.asarray([[9.0]]), 2)
    np.testing.assert_array_equal(np.asarray(root), np.asarray(theirs))
    np.testing.assert_allclose(float(root[0, 0]), 1 / 3, rtol=1e-5)
    assert float(error) == their_error == 0 and error.dtype == jnp.float32


@pytest.mark.parametrize("p", [3, 6])
def test_inverse_pth_root_of_a_p_not_a_power_of_two_is_the_true_root(keys, p):
    # optax raises T to 2 ** round(log2 p) (4 for p = 3); fdl raises it to the p-th power
    a = spd(next(keys), 4)
    root, _ = matrix_inverse_pth_root(a, p)
    np.testing.assert_allclose(np.asarray(root, np.float64), dense_inverse_root(a, p), rtol=2e-4, atol=1e-5)


def test_inverse_pth_root_under_jit_with_a_traced_p_equals_optax(keys):
    a = spd(next(keys), 5)
    ours = jax.jit(matrix_inverse_pth_root)(a, jnp.asarray(4), jnp.asarray(100), 1e-6, 1e-6)
    with optax_promotion():
        theirs = jax.jit(optax.matrix_inverse_pth_root)(a, jnp.asarray(4), jnp.asarray(100), 1e-6, 1e-6)
    assert_equal_trees(ours, theirs)
    np.testing.assert_allclose(
        np.asarray(ours[0], np.float64), dense_inverse_root(a, 4), rtol=2e-4, atol=1e-5
    )


def test_inverse_pth_root_errors():
    a = jnp.eye(2)
    with pytest.raises(
        ValueError,
        match=r"matrix_inverse_pth_root: `p` must be a whole number >= 1 \(the root's order\), got 0",
    ):
        matrix_inverse_pth_root(a, 0)
    with pytest.raises(ValueError, match=r"`p` must be a whole number >= 1 \(the root's order\), got 2.5"):
        matrix_inverse_pth_root(a, 2.5)
    with pytest.raises(TypeError, match=r"`p` must be a real number, got '2' \(str\)"):
        matrix_inverse_pth_root(a, "2")
    with pytest.raises(
        ValueError, match=r"`matrix` must be a square 2-D array of shape \(n, n\), got shape \(2,\)"
    ):
        matrix_inverse_pth_root(jnp.ones(2), 2)
    with pytest.raises(ValueError, match=r"`num_iters` must be a non-negative number, got -3"):
        matrix_inverse_pth_root(a, 2, num_iters=-3)
    with pytest.raises(ValueError, match=r"`ridge_epsilon` must be a non-negative number, got -1e-06"):
        matrix_inverse_pth_root(a, 2, ridge_epsilon=-1e-6)
    with pytest.raises(ValueError, match=r"`error_tolerance` must be a non-negative number, got -1"):
        matrix_inverse_pth_root(a, 2, error_tolerance=-1)
    with pytest.raises(TypeError, match=r"`ridge_epsilon` must be a real number, got True \(bool\)"):
        matrix_inverse_pth_root(a, 2, ridge_epsilon=True)


def test_inverse_pth_root_of_a_bfloat16_matrix_equals_optax(keys):
    # computed in float32 (result_type(bfloat16, float32)), returned in bfloat16, as optax
    a = spd(next(keys), 4).astype(jnp.bfloat16)
    ours = matrix_inverse_pth_root(a, 2)
    with optax_promotion():
        theirs = optax.matrix_inverse_pth_root(a, 2)
    assert_equal_trees(ours, theirs)
    assert ours[0].dtype == jnp.bfloat16 and ours[1].dtype == jnp.float32
