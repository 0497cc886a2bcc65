"""Tests for fdl.initializers against formulas written out here and SciPy's truncated normal.

Statistical tolerances. For ``n`` i.i.d. draws of variance ``v``:

* the sample mean has standard deviation ``sqrt(v / n)``;
* the sample variance has relative standard deviation ``sqrt(2 / n)`` for a normal distribution
  (``Var[s^2] = v^2 (2 / (n - 1) + kurt_excess / n)``, excess kurtosis 0). The uniform (-1.2) and
  the normal truncated at +-2 sigma (-0.63) have negative excess kurtosis, so ``sqrt(2 / n)``
  over-estimates their spread and the same bound is conservative for them.

Every statistical check allows ``Z = 6`` of those standard errors: a correct implementation fails
one with probability about 2e-9 (and never, here, since the keys are fixed by the test id), while a
wrong constant (a missing factor 2, fan_in for fan_out, a truncated draw that was not rescaled and
is 23% low) is far outside it for the sizes used (about 1e6 draws, relative tolerance 0.85%).
"""

import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from fdl import initializers as I

Z = 6.0
FLOAT32_EPS = float(np.finfo(np.float32).eps)

# Shapes for the variance checks, with their fans worked out by hand: (in, out) for a dense
# weight, (kh * kw * in, kh * kw * out) for a kernel. Neither is square, so every mode differs.
SHAPES = {
    "dense": ((400, 2500), 400, 2500),
    "conv": ((3, 3, 128, 1024), 3 * 3 * 128, 3 * 3 * 1024),
}


# Shape of the fixed-scale draws: the dense one again, so the compiled samplers are reused.
DRAW_SHAPE = SHAPES["dense"][0]


def _n(mode, fan_in, fan_out):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


# (id, factory, target variance as a function of (fan_in, fan_out), uniform half-width or None)
SHAPE_AWARE = [
    ("glorot_normal", I.glorot_normal, lambda fi, fo: 2 / (fi + fo), None),
    (
        "glorot_uniform",
        I.glorot_uniform,
        lambda fi, fo: 2 / (fi + fo),
        lambda fi, fo: (6 / (fi + fo)) ** 0.5,
    ),
    ("he_normal", I.he_normal, lambda fi, fo: 2 / fi, None),
    ("he_uniform", I.he_uniform, lambda fi, fo: 2 / fi, lambda fi, fo: (6 / fi) ** 0.5),
    ("lecun_normal", I.lecun_normal, lambda fi, fo: 1 / fi, None),
    ("lecun_uniform", I.lecun_uniform, lambda fi, fo: 1 / fi, lambda fi, fo: (3 / fi) ** 0.5),
]
for _mode in ("fan_in", "fan_out", "fan_avg"):
    for _dist in ("normal", "truncated_normal", "uniform"):
        SHAPE_AWARE.append(
            (
                f"variance_scaling-{_mode}-{_dist}",
                (lambda m=_mode, d=_dist: I.variance_scaling(0.7, m, d)),
                (lambda fi, fo, m=_mode: 0.7 / _n(m, fi, fo)),
                (lambda fi, fo, m=_mode: (3 * 0.7 / _n(m, fi, fo)) ** 0.5) if _dist == "uniform" else None,
            )
        )

# Every random initializer, for the key/dtype/shape contract tests. (The xavier_* and kaiming_*
# aliases are the same functions, checked in test_public_api.)
RANDOM = {
    "normal": lambda: I.normal(0.3, mean=0.1),
    "uniform": lambda: I.uniform(0.3),
    "truncated_normal": lambda: I.truncated_normal(0.3),
    "variance_scaling": lambda: I.variance_scaling(1.0, "fan_avg", "truncated_normal"),
    "glorot_normal": I.glorot_normal,
    "glorot_uniform": I.glorot_uniform,
    "he_normal": I.he_normal,
    "he_uniform": I.he_uniform,
    "lecun_normal": I.lecun_normal,
    "lecun_uniform": I.lecun_uniform,
    "orthogonal": I.orthogonal,
}


def _stats(w):
    w = np.asarray(w, dtype=np.float64)
    return w.size, float(w.mean()), float(w.var())


def _check_moments(w, mean, variance):
    n, m, v = _stats(w)
    assert abs(m - mean) <= Z * math.sqrt(variance / n), (m, mean)
    assert abs(v / variance - 1) <= Z * math.sqrt(2 / n), (v, variance)


# --------------------------------------------------------------------------------------------
# compute_fans


@pytest.mark.parametrize(
    "shape, fans",
    [
        ((7,), (7, 7)),
        ((3, 5), (3, 5)),
        ((1, 9), (1, 9)),
        ((2, 3, 4), (6, 8)),
        ((3, 3, 64, 128), (576, 1152)),
        ((2, 2, 2, 3, 5), (24, 40)),
        ((0, 5), (0, 5)),
        ([4, 6], (4, 6)),
    ],
)
def test_compute_fans_table(shape, fans):
    assert I.compute_fans(shape) == fans


def test_compute_fans_rejects_0d_and_bad_shapes():
    with pytest.raises(ValueError, match=re.escape("`shape` must have at least one dimension")):
        I.compute_fans(())
    with pytest.raises(
        ValueError, match=re.escape("`shape` must be a tuple of non-negative ints, got (3, -1)")
    ):
        I.compute_fans((3, -1))
    with pytest.raises(ValueError, match=re.escape("got (2.5,)")):
        I.compute_fans((2.5,))


# --------------------------------------------------------------------------------------------
# Variance, mean and bounds of the shape-aware initializers


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("name, factory, target, bound", SHAPE_AWARE, ids=[s[0] for s in SHAPE_AWARE])
def test_shape_aware_variance_mean_and_bounds(key, name, factory, target, bound, shape_name):
    shape, fan_in, fan_out = SHAPES[shape_name]
    w = factory()(key, shape)
    chex.assert_shape(w, shape)
    chex.assert_type(w, jnp.float32)
    _check_moments(w, 0.0, target(fan_in, fan_out))
    if bound is not None:
        a = np.float32(bound(fan_in, fan_out))
        w64 = np.asarray(w, np.float64)
        assert np.all(np.abs(w64) <= a)
        # The draw fills the interval: with 1e6 draws the largest |w| is within 1e-4 a of a.
        assert np.abs(w64).max() >= 0.999 * a


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
def test_variance_scaling_truncated_bounds_from_scipy(key, mode):
    shape, fan_in, fan_out = SHAPES["dense"]
    target = 1.3 / _n(mode, fan_in, fan_out)
    # Pre-truncation sigma such that sigma^2 * Var[N(0,1) | |z| < 2] equals the target (SciPy).
    sigma = math.sqrt(target / stats.truncnorm(-2.0, 2.0).var())
    w = np.asarray(I.variance_scaling(1.3, mode, "truncated_normal")(key, shape), np.float64)
    # Values are stddev * z with |z| < 2 computed in float32: allow 4 float32 roundings of slack.
    limit = 2.0 * sigma * (1 + 4 * FLOAT32_EPS)
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() >= 0.99 * limit


# --------------------------------------------------------------------------------------------
# Fixed-scale initializers


@pytest.mark.parametrize("stddev, mean", [(1.0, 0.0), (0.05, 0.3), (2.5, -1.0)])
def test_normal_moments(key, stddev, mean):
    _check_moments(I.normal(stddev, mean)(key, DRAW_SHAPE), mean, stddev**2)


def test_normal_default_stddev(key):
    _check_moments(I.normal()(key, DRAW_SHAPE), 0.0, 1e-4)


@pytest.mark.parametrize("scale", [1.0, 0.2, 1e-2])
def test_uniform_moments_and_bounds(key, scale):
    w = I.uniform(scale)(key, DRAW_SHAPE)
    _check_moments(w, 0.0, scale**2 / 3)
    w64 = np.asarray(w, np.float64)
    a = np.float32(scale)
    assert w64.min() >= -a and w64.max() <= a
    assert w64.min() <= -0.999 * a and w64.max() >= 0.999 * a


@pytest.mark.parametrize("stddev, lower, upper", [(1.0, -2.0, 2.0), (0.1, -1.0, 3.0), (2.0, 0.5, 1.5)])
def test_truncated_normal_moments_and_bounds(key, stddev, lower, upper):
    reference = stats.truncnorm(lower, upper, loc=0.0, scale=stddev)
    w = I.truncated_normal(stddev, lower, upper)(key, DRAW_SHAPE)
    _check_moments(w, reference.mean(), reference.var())
    # The variance of the truncated draw is smaller than stddev^2, as documented.
    assert reference.var() < stddev**2
    w64 = np.asarray(w, np.float64)
    slack = 4 * FLOAT32_EPS * stddev * max(abs(lower), abs(upper))  # float32 rounding of stddev * z
    assert w64.min() >= lower * stddev - slack and w64.max() <= upper * stddev + slack


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32])
def test_constant_zeros_ones(key, dtype):
    np.testing.assert_array_equal(np.asarray(I.zeros()(key, (2, 3), dtype), np.float64), np.zeros((2, 3)))
    np.testing.assert_array_equal(np.asarray(I.ones()(key, (4,), dtype), np.float64), np.ones(4))
    c = I.constant(-3)(key, (2, 2), dtype)
    chex.assert_type(c, dtype)
    np.testing.assert_array_equal(np.asarray(c, np.float64), np.full((2, 2), -3.0))


def test_constant_value_is_exactly_representable_in_bfloat16(key):
    c = I.constant(2.5)(key, (3,), jnp.bfloat16)
    chex.assert_type(c, jnp.bfloat16)
    assert c.tolist() == [2.5, 2.5, 2.5]


# --------------------------------------------------------------------------------------------
# Orthogonal


def _as_matrix(w, column_axis):
    """(rows, cols): the column axis last, all others flattened into rows."""
    w = np.asarray(w, np.float64)
    return np.moveaxis(w, column_axis, -1).reshape(-1, w.shape[column_axis])


@pytest.mark.parametrize(
    "shape, column_axis",
    [
        ((300, 100), -1),  # tall: W^T W = I
        ((100, 300), -1),  # wide: W W^T = I
        ((100, 300), 0),  # columns on axis 0: the (300, 100) matrix is tall
        ((5, 4, 15, 100), -1),  # conv kernel (kh, kw, in, out) -> (kh*kw*in, out) = (300, 100)
        ((5, 4, 100, 15), -2),  # conv with in-channels as columns -> (300, 100)
        ((5, 5, 4, 300), -1),  # conv with more outputs than kh*kw*in -> (100, 300): wide
    ],
)
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_orthogonal_gram_is_scaled_identity(key, shape, column_axis, scale):
    w = I.orthogonal(scale, column_axis)(key, shape)
    chex.assert_shape(w, shape)
    m = _as_matrix(w, column_axis)
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    k = min(rows, cols)
    # Householder QR in float32 is backward stable: the loss of orthogonality grows at most
    # linearly with the dimension, |Q^T Q - I| <= k * eps_32 (observed ~5e-7 for k <= 256).
    np.testing.assert_allclose(gram, scale**2 * np.eye(k), rtol=0, atol=k * FLOAT32_EPS * scale**2)


def test_orthogonal_is_haar_distributed(key):
    # Under the Haar measure on O(n) each entry has E[W_ij] = 0 and E[W_ij^2] = 1 / n. Without the
    # sign correction LAPACK's QR gives E[W_00] ~ -0.3 for n = 8. The mean of m draws of W_ij has
    # standard deviation sqrt(1 / (n m)); W_ij^2 has variance 3 / (n (n + 2)) - 1 / n^2.
    n, m = 8, 4000
    init = I.orthogonal()
    ws = np.asarray(jax.vmap(lambda k: init(k, (n, n)))(jax.random.split(key, m)), np.float64)
    mean_tol = Z * math.sqrt(1 / (n * m))
    assert np.abs(ws.mean(axis=0)).max() <= mean_tol
    sq_tol = Z * math.sqrt((3 / (n * (n + 2)) - 1 / n**2) / m)
    assert np.abs((ws**2).mean(axis=0) - 1 / n).max() <= sq_tol


# --------------------------------------------------------------------------------------------
# The initializer contract: dtype, determinism, keys


@pytest.mark.parametrize("name", list(RANDOM))
def test_bfloat16_is_float32_draw_rounded(key, name):
    init = RANDOM[name]()
    w16 = init(key, (16, 8), jnp.bfloat16)
    w32 = init(key, (16, 8), jnp.float32)
    chex.assert_type(w16, jnp.bfloat16)
    chex.assert_shape(w16, (16, 8))
    np.testing.assert_array_equal(
        np.asarray(w16, np.float32), np.asarray(w32.astype(jnp.bfloat16), np.float32)
    )


@pytest.mark.parametrize("name", list(RANDOM))
def test_same_key_same_draw_different_key_different_draw(keys, name):
    init = RANDOM[name]()
    k1, k2 = next(keys), next(keys)
    np.testing.assert_array_equal(init(k1, (16, 8)), init(k1, (16, 8)))
    assert not np.array_equal(init(k1, (16, 8)), init(k2, (16, 8)))


# One initializer per sampler: normal, uniform, truncated normal, variance scaling, QR.
@pytest.mark.parametrize("name", ["normal", "uniform", "truncated_normal", "he_normal", "orthogonal"])
def test_jit_and_list_shape(key, name):
    init = RANDOM[name]()
    jitted = jax.jit(init, static_argnums=(1, 2))
    # XLA may fuse the jitted scale-and-shift into one multiply-add where the eager ops round the
    # product first: a difference of at most one rounding of |stddev * z| <= |w| + |mean|, which is
    # below 2 max|w| for every initializer here.
    eager = np.asarray(init(key, [16, 8]))
    np.testing.assert_allclose(
        jitted(key, (16, 8), jnp.float32), eager, rtol=0, atol=2 * FLOAT32_EPS * np.abs(eager).max()
    )


def test_float64_under_x64(keys):
    shape, fan_in, fan_out = SHAPES["dense"]
    with jax.enable_x64(True):
        w = I.he_normal()(next(keys), shape, jnp.float64)
        chex.assert_type(w, jnp.float64)
        _check_moments(w, 0.0, 2 / fan_in)
        w = I.variance_scaling(1.0, "fan_avg", "truncated_normal")(next(keys), shape, jnp.float64)
        chex.assert_type(w, jnp.float64)
        _check_moments(w, 0.0, 2 / (fan_in + fan_out))
        q = I.orthogonal()(next(keys), (60, 20), jnp.float64)
        chex.assert_type(q, jnp.float64)
        np.testing.assert_allclose(
            np.asarray(q).T @ np.asarray(q), np.eye(20), atol=20 * np.finfo(np.float64).eps
        )


@pytest.mark.parametrize("name", ["he_normal", "orthogonal"])
def test_empty_shapes(key, name):
    w = RANDOM[name]()(key, (0, 5))
    chex.assert_shape(w, (0, 5))


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: I.variance_scaling(1.0, mode="fan_bogus"),
            "`mode` must be one of 'fan_in', 'fan_out', 'fan_avg', got 'fan_bogus'",
        ),
        (
            lambda: I.variance_scaling(1.0, distribution="gaussian"),
            "`distribution` must be one of 'normal', 'truncated_normal', 'uniform', got 'gaussian'",
        ),
        (
            lambda: I.variance_scaling(-1.0),
            "`scale` must be a non-negative finite number, got -1.0",
        ),
        (
            lambda: I.variance_scaling(float("nan")),
            "`scale` must be a non-negative finite number, got nan",
        ),
        (lambda: I.normal(stddev=-0.5), "`stddev` must be a non-negative finite number, got -0.5"),
        (lambda: I.normal(mean=float("inf")), "`mean` must be a finite number, got inf"),
        (lambda: I.uniform(scale=-0.1), "`scale` must be a non-negative finite number, got -0.1"),
        (lambda: I.uniform(scale="big"), "`scale` must be a non-negative finite number, got 'big'"),
        (
            lambda: I.truncated_normal(stddev=-1),
            "`stddev` must be a non-negative finite number, got -1",
        ),
        (
            lambda: I.truncated_normal(lower=2.0, upper=1.0),
            "`lower` must be less than `upper`, got lower=2.0, upper=1.0",
        ),
        (
            lambda: I.orthogonal(scale=-2.0),
            "`scale` must be a non-negative finite number, got -2.0",
        ),
        (lambda: I.orthogonal(column_axis=1.5), "`column_axis` must be an int, got 1.5"),
        (lambda: I.constant(True), "`value` must be a finite number, got True"),
        (lambda: I.constant([1.0, 2.0]), "`value` must be a finite number, got [1.0, 2.0]"),
    ],
)
def test_factory_errors(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()


@pytest.mark.parametrize(
    "init, shape, dtype, message",
    [
        (
            I.he_normal(),
            (3, -1),
            jnp.float32,
            "`shape` must be a tuple of non-negative ints, got (3, -1)",
        ),
        (I.he_normal(), (), jnp.float32, "`shape` must have at least one dimension"),
        (I.normal(), "abc", jnp.float32, "`shape` must be a tuple of non-negative ints, got 'abc'"),
        (
            I.he_normal(),
            (4, 4),
            jnp.int32,
            "`dtype` must be a floating-point dtype for a random initializer, got int32",
        ),
        (
            I.uniform(),
            (4, 4),
            jnp.int8,
            "`dtype` must be a floating-point dtype for a random initializer, got int8",
        ),
        (
            I.orthogonal(),
            (5,),
            jnp.float32,
            "`shape` must have at least 2 dimensions for an orthogonal initializer, got (5,)",
        ),
        (
            I.orthogonal(column_axis=2),
            (4, 4),
            jnp.float32,
            "`column_axis` must be in [-2, 2) for shape (4, 4), got 2",
        ),
        (
            I.orthogonal(column_axis=-3),
            (4, 4),
            jnp.float32,
            "`column_axis` must be in [-2, 2) for shape (4, 4), got -3",
        ),
        (
            I.zeros(),
            (2, None),
            jnp.float32,
            "`shape` must be a tuple of non-negative ints, got (2, None)",
        ),
    ],
)
def test_call_errors(key, init, shape, dtype, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        init(key, shape, dtype)


def test_public_api():
    assert set(I.__all__) <= set(dir(I))
    assert I.xavier_normal is I.glorot_normal and I.kaiming_uniform is I.he_uniform
