"""fdl.distances against scipy.spatial.distance.cdist / scikit-learn, gradients, blocking, errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.spatial.distance import cdist
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine_similarity

from fdl.distances import (
    METRICS,
    cosine_similarity,
    paired_distances,
    pairwise_distances,
    pairwise_reduce,
    resolve_block_size,
)

# (fdl metric, scipy metric, extra keyword arguments)
CASES = [
    ("euclidean", "euclidean", {}),
    ("sqeuclidean", "sqeuclidean", {}),
    ("manhattan", "cityblock", {}),
    ("cityblock", "cityblock", {}),
    ("chebyshev", "chebyshev", {}),
    ("minkowski", "minkowski", {"p": 3.5}),
    ("minkowski", "minkowski", {"p": 1}),
    ("cosine", "cosine", {}),
]


def _data(n=19, m=11, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(m, d))


@pytest.mark.parametrize(("metric", "scipy_metric", "kwargs"), CASES)
def test_pairwise_matches_cdist_float64(metric, scipy_metric, kwargs):
    x, y = _data()
    expected = cdist(x, y, scipy_metric, **kwargs)
    with jax.enable_x64(True):
        for block_size in (None, 4):  # one block; several, the last one padded
            got = pairwise_distances(jnp.asarray(x), jnp.asarray(y), metric, block_size=block_size, **kwargs)
            assert got.dtype == jnp.float64 and got.shape == (19, 11)
            np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("metric", "scipy_metric", "kwargs"), CASES)
def test_pairwise_matches_cdist_float32(metric, scipy_metric, kwargs):
    x, y = _data(seed=1)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    expected = cdist(x32.astype(np.float64), y32.astype(np.float64), scipy_metric, **kwargs)
    got = pairwise_distances(x32, y32, metric, **kwargs)
    assert got.dtype == jnp.float32
    # float32 rounding: a few ulps of the squared norms (|x|^2 ~ d = 6) relative to the distances
    np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-5, atol=2e-5)


def test_pairwise_self_has_zero_diagonal_and_matches_cdist():
    x, _ = _data(n=13)
    with jax.enable_x64(True):
        for metric in ("euclidean", "cosine", "chebyshev"):
            got = np.asarray(pairwise_distances(jnp.asarray(x), metric=metric))
            np.testing.assert_array_equal(np.diag(got), 0.0)
            np.testing.assert_allclose(got, cdist(x, x, metric), rtol=1e-12, atol=1e-12)


def test_paired_matches_scipy_row_by_row_with_batch_axes():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
    with jax.enable_x64(True):
        for metric, scipy_metric, kwargs in CASES:
            got = np.asarray(paired_distances(jnp.asarray(x), jnp.asarray(y), metric, **kwargs))
            assert got.shape == (2, 3)
            expected = [
                [cdist(x[a, b][None], y[a, b][None], scipy_metric, **kwargs)[0, 0] for b in range(3)]
                for a in range(2)
            ]
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_minkowski_infinity_is_chebyshev():
    x, y = _data(seed=3)
    np.testing.assert_allclose(
        np.asarray(pairwise_distances(x.astype(np.float32), y.astype(np.float32), "minkowski", p=np.inf)),
        cdist(x, y, "chebyshev"),
        rtol=1e-6,
    )


@pytest.mark.parametrize("p", [16.0, 60.0, 100.0])
def test_minkowski_large_p_neither_overflows_nor_underflows_in_float32(p):
    # |d|^p in float32: 5^100 is inf and (1e-3)^16 is 0; the scaled form keeps both finite
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, -2.0]])
    y = np.array([[3.0, 4.0], [1e-3, 2e-3], [1.0, -2.0]])
    want = np.diag(cdist(x, y, "minkowski", p=p))
    got = paired_distances(x.astype(np.float32), y.astype(np.float32), "minkowski", p=p)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6)
    grid = pairwise_distances(x.astype(np.float32), y.astype(np.float32), "minkowski", p=p)
    np.testing.assert_allclose(np.asarray(grid), cdist(x, y, "minkowski", p=p), rtol=2e-6)


def test_minkowski_p_300_where_float64_scipy_underflows():
    # (1e-3)^300 underflows even float64 (cdist returns 0); the exact value is
    # 2e-3 * (1 + 2^-300)^(1/300), 2e-3 to every digit
    got = paired_distances(jnp.zeros(2), jnp.array([1e-3, 2e-3]), "minkowski", p=300.0)
    np.testing.assert_allclose(float(got), 2e-3, rtol=1e-6)
    assert cdist([[0.0, 0.0]], [[1e-3, 2e-3]], "minkowski", p=300.0)[0, 0] == 0.0


def test_minkowski_gradient_is_the_unscaled_forms():
    u = jnp.array([0.3, -1.2, 2.0, 0.7])
    v = jnp.array([-0.5, 0.4, 1.1, 0.7])  # one difference is 0
    for p in (2.5, 7.0):
        got = jax.grad(lambda a, p=p: paired_distances(a, v, "minkowski", p=p))(u)
        naive = jax.grad(lambda a, p=p: jnp.sum(jnp.abs(a - v) ** p) ** (1.0 / p))(u)
        np.testing.assert_allclose(np.asarray(got), np.asarray(naive), rtol=1e-5, atol=1e-7)


def test_cosine_distance_is_clipped_to_0_2_as_sklearns():
    x, _ = _data(n=40, d=7, seed=5)
    x32 = jnp.asarray(x, jnp.float32)
    unit = x32 / jnp.linalg.norm(x32, axis=-1, keepdims=True)
    unclipped = 1.0 - jnp.sum(unit * unit, axis=-1)  # a vector against itself
    assert float(jnp.min(unclipped)) < 0.0  # rounding leaves about -2e-7 in float32
    for got in (pairwise_distances(x32, x32 + 0.0, "cosine"), paired_distances(x32, x32, "cosine")):
        assert float(jnp.min(got)) == 0.0
    opposite = paired_distances(x32, -x32, "cosine")
    assert float(jnp.max(opposite)) <= 2.0
    np.testing.assert_allclose(np.asarray(opposite), 2.0, rtol=1e-6)


def test_cosine_similarity_matches_sklearn_with_zero_vector():
    x, y = _data(n=5, m=4, seed=4)
    x[2] = 0.0  # scikit-learn: similarity 0 with everything (scipy's cosine gives NaN)
    with jax.enable_x64(True):
        got = cosine_similarity(jnp.asarray(x), jnp.asarray(y))
        np.testing.assert_allclose(np.asarray(got), sk_cosine_similarity(x, y), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            np.asarray(pairwise_distances(jnp.asarray(x), jnp.asarray(y), "cosine")),
            1.0 - sk_cosine_similarity(x, y),
            rtol=1e-12,
            atol=1e-14,
        )


# ---------------------------------------------------------------------------------- gradients


def _naive(metric, u, v):
    if metric == "euclidean":
        return jnp.sqrt(jnp.sum((u - v) ** 2))
    if metric == "minkowski":
        return jnp.sum(jnp.abs(u - v) ** 3.0) ** (1.0 / 3.0)
    return 1.0 - jnp.sum(u * v) / (jnp.linalg.norm(u) * jnp.linalg.norm(v))  # cosine


@pytest.mark.parametrize("metric", ["euclidean", "minkowski", "cosine"])
def test_gradient_finite_where_the_naive_form_is_nan(metric):
    kwargs = {"p": 3.0} if metric == "minkowski" else {}
    u = jnp.array([1.0, -2.0, 0.5])
    # euclidean/minkowski at zero distance (u == v); cosine with a zero vector
    v = jnp.zeros(3) if metric == "cosine" else u
    naive = jax.grad(lambda a: _naive(metric, a, v))(v if metric == "cosine" else u)
    assert np.isnan(np.asarray(naive)).any()

    def pairwise(a):
        return pairwise_distances(a[None, :], u[None, :], metric, **kwargs)[0, 0]

    def paired(a):
        return paired_distances(a, u, metric, **kwargs)

    for fn in (pairwise, paired):
        at = jnp.zeros(3) if metric == "cosine" else u
        grad = np.asarray(jax.grad(fn)(at))
        assert np.isfinite(grad).all()
        if metric == "cosine":  # at a = 0 the safe norm is 1, so the gradient is that of 1 - a.u/|u|
            np.testing.assert_allclose(grad, -np.asarray(u) / np.linalg.norm(u), rtol=1e-6)
        else:  # zero distance is the minimum
            np.testing.assert_array_equal(grad, 0.0)
    # the self-distance diagonal of pairwise_distances(x) too
    grad = jax.grad(lambda x: jnp.sum(pairwise_distances(x, metric=metric, **kwargs)))(jnp.stack([u, 2 * u]))
    assert np.isfinite(np.asarray(grad)).all()


@pytest.mark.parametrize(("metric", "kwargs"), [("euclidean", {}), ("minkowski", {"p": 3.0}), ("cosine", {})])
def test_gradients_match_finite_differences(metric, kwargs):
    x, y = _data(n=3, m=2, d=4, seed=5)
    with jax.enable_x64(True):
        check_grads(
            lambda a, b: pairwise_distances(a, b, metric, block_size=2, **kwargs),
            (jnp.asarray(x), jnp.asarray(y)),
            order=1,
            modes=("rev",),
        )


# -------------------------------------------------------------------------------------- blocks


def _avals(jaxpr):
    """Every intermediate shape of a jaxpr, sub-jaxprs (lax.map's scan body) included."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            yield var.aval.shape
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)
            if hasattr(inner, "eqns"):
                yield from _avals(inner)


def test_blocked_reduction_equals_dense_and_never_holds_the_matrix():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.normal(size=(200, 8)).astype(np.float32)

    def nearest(d):
        return d.min(axis=1), d.argmin(axis=1)

    for metric in ("euclidean", "manhattan"):
        dense = pairwise_distances(x, y, metric)
        low, arg = pairwise_reduce(x, y, nearest, metric, block_size=32)
        np.testing.assert_allclose(np.asarray(low), np.asarray(dense.min(axis=1)), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(arg), np.asarray(dense.argmin(axis=1)))
        jaxpr = jax.make_jaxpr(lambda a, b, m=metric: pairwise_reduce(a, b, nearest, m, block_size=32))(x, y)
        biggest = max(int(np.prod(s)) for s in _avals(jaxpr.jaxpr))
        # the largest temporary is one block: 32 x 200 distances (x 8 differences for manhattan)
        assert (
            biggest
            == 32 * 200 * (8 if metric == "manhattan" else 1)
            < 300 * 200 * (8 if metric == "manhattan" else 1)
        )


def test_resolve_block_size():
    assert resolve_block_size(None, n=50_000, m=50_000, d=64) == (1 << 22) // 50_000
    assert resolve_block_size(None, n=50_000, m=1_000, d=64, metric="manhattan") == (1 << 22) // 64_000
    assert resolve_block_size(None, n=10, m=10, d=2) == 10
    assert resolve_block_size(7, n=5, m=1, d=1) == 5


def test_jit_matches_eager():
    x, y = _data(seed=7)
    x, y = x.astype(np.float32), y.astype(np.float32)
    fn = jax.jit(pairwise_distances, static_argnames=("metric", "p", "block_size"))
    np.testing.assert_allclose(
        np.asarray(fn(x, y, metric="minkowski", p=2.5, block_size=5)),
        np.asarray(pairwise_distances(x, y, "minkowski", p=2.5)),
        rtol=1e-6,
    )


# -------------------------------------------------------------------------------------- errors


def test_errors():
    x, y = jnp.ones((4, 64)), jnp.ones((3, 63))
    with pytest.raises(ValueError, match=r"same number of features .*\(64\) and y \(3, 63\) \(63\)"):
        pairwise_distances(x, y)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`metric` must be one of 'euclidean', 'sqeuclidean', 'manhattan', 'cityblock', "
            "'chebyshev', 'minkowski', 'cosine', got 'hamming'"
        ),
    ):
        pairwise_distances(x, metric="hamming")
    assert METRICS[0] == "euclidean"
    with pytest.raises(ValueError, match=r"`p` must be a number >= 1 for metric='minkowski', got 0.5"):
        pairwise_distances(x, metric="minkowski", p=0.5)
    with pytest.raises(ValueError, match="metric='minkowski' needs `p`"):
        paired_distances(x, x, "minkowski")
    with pytest.raises(ValueError, match="`p` is only used with metric='minkowski', got p=3"):
        pairwise_distances(x, p=3)
    with pytest.raises(ValueError, match="`block_size` must be a positive integer, got 0"):
        pairwise_distances(x, x, "manhattan", block_size=0)
    with pytest.raises(ValueError, match=r"`x` must have 2 dimensions \(rows, features\), got shape \(4,\)"):
        pairwise_distances(jnp.ones(4))
    with pytest.raises(TypeError, match="`x` must have a floating dtype, got int32"):
        pairwise_distances(jnp.ones((2, 2), jnp.int32))
    with pytest.raises(TypeError, match="same dtype, got float32 and bfloat16"):
        cosine_similarity(x, x.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match=r"same shape for paired distances, got \(4, 64\) and \(3, 64\)"):
        paired_distances(x, jnp.ones((3, 64)))
