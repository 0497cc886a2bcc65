"""Activations against float64 NumPy/SciPy references: values, derivatives, stability, dtypes.

The references are written independently of ``fdl.activations``: the sigmoid and the normal CDF
come from SciPy (``expit``, ``ndtr``), ``tanh``' derivative is written as ``1 / cosh^2``, softplus
uses NumPy's own ``logaddexp``. The derivative references are the formulas stated in the
docstrings, and ``jax.test_util.check_grads`` (finite differences, in float64) checks that
``jax.grad`` agrees with the function itself.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.special import expit, ndtr

from fdl import activations

SLOPE = 0.1  # leaky_relu's negative_slope in the tests (not the default, to see it is used)
ALPHA = 1.5  # elu's alpha in the tests
GELU_C = 0.044715
SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x**3)))


def _gelu_tanh_grad(x):
    t = np.tanh(SQRT_2_OVER_PI * (x + GELU_C * x**3))
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t**2) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x**2)


# (name, fdl function, NumPy value, NumPy derivative), all elementwise, in float64.
ELEMENTWISE = [
    ("relu", activations.relu, lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    (
        "leaky_relu",
        lambda x: activations.leaky_relu(x, negative_slope=SLOPE),
        lambda x: np.where(x > 0, x, SLOPE * x),
        lambda x: np.where(x > 0, 1.0, SLOPE),
    ),
    (
        "elu",
        lambda x: activations.elu(x, alpha=ALPHA),
        lambda x: np.where(x > 0, x, ALPHA * (np.exp(x) - 1.0)),
        lambda x: np.where(x > 0, 1.0, ALPHA * np.exp(x)),
    ),
    (
        "gelu",
        activations.gelu,
        lambda x: x * ndtr(x),
        lambda x: ndtr(x) + x * np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi),
    ),
    (
        "gelu_tanh",
        lambda x: activations.gelu(x, approximate=True),
        _gelu_tanh,
        _gelu_tanh_grad,
    ),
    ("sigmoid", activations.sigmoid, expit, lambda x: expit(x) * (1.0 - expit(x))),
    ("tanh", activations.tanh, np.tanh, lambda x: 1.0 / np.cosh(x) ** 2),
    ("softplus", activations.softplus, lambda x: np.logaddexp(x, 0.0), expit),
    (
        "silu",
        activations.silu,
        lambda x: x * expit(x),
        lambda x: expit(x) * (1.0 + x * (1.0 - expit(x))),
    ),
]
ELEMENTWISE_IDS = [row[0] for row in ELEMENTWISE]

# Hand-picked points, away from the kink at 0 (for finite differences), and the extremes.
POINTS = np.array([-6.0, -2.5, -1.0, -0.3, 0.2, 0.7, 1.0, 3.5, 8.0])
EXTREMES = np.array([-1e4, 1e4])


def _value_and_grad(fn):
    """Jitted value and entrywise derivative of an elementwise function (one compile each)."""
    return jax.jit(fn), jax.jit(jax.grad(lambda x: jnp.sum(fn(x))))


@pytest.mark.parametrize(("name", "fn", "ref", "ref_grad"), ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_value_and_derivative_match_numpy(name, fn, ref, ref_grad, key):
    random = 3.0 * jax.random.normal(key, (64,), dtype=jnp.float32)
    # Exactly 0 is included: there the references encode the documented convention for the
    # kinks of relu, leaky_relu and elu (the left derivative: 0, SLOPE, ALPHA).
    fixed = np.concatenate([POINTS, [0.0], EXTREMES])
    x = jnp.concatenate([random, jnp.asarray(fixed, jnp.float32)])
    x64 = np.asarray(x, dtype=np.float64)
    value_fn, grad_fn = _value_and_grad(fn)
    value, grad = value_fn(x), grad_fn(x)
    assert value.dtype == grad.dtype == jnp.float32
    # Stability: finite values and gradients, including at +-1e4.
    assert np.all(np.isfinite(np.asarray(value))), value
    assert np.all(np.isfinite(np.asarray(grad))), grad
    with np.errstate(over="ignore"):  # a reference may overflow in a branch np.where discards
        expected_value, expected_grad = ref(x64), ref_grad(x64)
    # float32 against float64: a few float32 ulps (2**-23 ~ 1.2e-7) of relative error.
    np.testing.assert_allclose(np.asarray(value), expected_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), expected_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "fn", "ref", "ref_grad"), ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_grad_matches_finite_differences(name, fn, ref, ref_grad):
    with jax.enable_x64(True):
        x = jnp.asarray(POINTS, dtype=jnp.float64)
        check_grads(jax.jit(fn), (x,), order=1, modes=("fwd", "rev"))


def test_gelu_keeps_relative_precision_in_the_negative_tail():
    # x * Phi(x) is tiny but nonzero here; 1 + erf(x / sqrt 2) would cancel to 0 in float32.
    x = np.array([-3.0, -6.0, -8.0, -10.0])
    result = jax.jit(activations.gelu)(jnp.asarray(x, dtype=jnp.float32))
    np.testing.assert_allclose(np.asarray(result), x * ndtr(x), rtol=1e-5, atol=0)


@pytest.mark.parametrize(("name", "fn", "ref", "ref_grad"), ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_elementwise_keeps_bfloat16(name, fn, ref, ref_grad):
    x = jnp.asarray(np.concatenate([POINTS, EXTREMES]), dtype=jnp.bfloat16)
    value_fn, grad_fn = _value_and_grad(fn)
    value, grad = value_fn(x), grad_fn(x)
    assert value.dtype == grad.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(grad.astype(jnp.float32))))
    # bfloat16 keeps 8 significant bits: one rounding is a relative error of up to 2**-8.
    # Allow two (the result and an intermediate), against the reference evaluated at the same
    # rounded inputs; atol covers results near 0, e.g. silu(-8) ~ -2.7e-3.
    x64 = np.asarray(x.astype(jnp.float32), dtype=np.float64)
    with np.errstate(over="ignore"):
        expected = ref(x64)
    np.testing.assert_allclose(np.asarray(value.astype(jnp.float32)), expected, rtol=2**-7, atol=2**-8)


# ---------------------------------------------------------------------------------------------
# softmax and log_softmax act on a whole axis.


def _np_softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(x, axis):
    # Written as log(softmax) directly: fine in float64 for the moderate inputs used here.
    return np.log(_np_softmax(x, axis))


NORMALISERS = [
    ("softmax", activations.softmax, _np_softmax),
    ("log_softmax", activations.log_softmax, _np_log_softmax),
]
NORMALISER_IDS = [row[0] for row in NORMALISERS]


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize(("name", "fn", "ref"), NORMALISERS, ids=NORMALISER_IDS)
def test_normaliser_values_match_numpy(name, fn, ref, axis, key):
    x = 3.0 * jax.random.normal(key, (4, 7), dtype=jnp.float32)
    y = jax.jit(fn, static_argnames="axis")(x, axis=axis)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(y), ref(np.asarray(x, dtype=np.float64), axis), rtol=1e-5, atol=1e-6
    )
    probabilities = np.asarray(y) if name == "softmax" else np.exp(np.asarray(y))
    np.testing.assert_allclose(probabilities.sum(axis=axis), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "fn", "jacobian_formula"),
    [
        # d softmax_i / d x_k = s_i (delta_ik - s_k)
        ("softmax", activations.softmax, lambda s: np.diag(s) - np.outer(s, s)),
        # d log_softmax_i / d x_k = delta_ik - s_k
        ("log_softmax", activations.log_softmax, lambda s: np.eye(s.size) - s[None, :]),
    ],
    ids=NORMALISER_IDS,
)
def test_normaliser_jacobian_matches_formula(name, fn, jacobian_formula, key):
    x = jnp.concatenate(
        [jax.random.normal(key, (6,), dtype=jnp.float32), jnp.array([1e4, -1e4], jnp.float32)]
    )
    s = _np_softmax(np.asarray(x, dtype=np.float64), -1)
    jacobian = np.asarray(jax.jit(jax.jacobian(fn))(x))
    assert np.all(np.isfinite(jacobian)), jacobian
    np.testing.assert_allclose(jacobian, jacobian_formula(s), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "fn", "ref"), NORMALISERS, ids=NORMALISER_IDS)
def test_normaliser_grad_matches_finite_differences(name, fn, ref):
    x = np.array([[0.3, -1.2, 2.0, 0.7], [1.5, 1.4, -0.2, -2.3]])
    with jax.enable_x64(True):
        check_grads(jax.jit(fn), (jnp.asarray(x, dtype=jnp.float64),), order=1)


def test_normalisers_exact_at_extremes():
    x = jnp.array([1e4, -1e4, 0.0], dtype=jnp.float32)
    np.testing.assert_array_equal(np.asarray(activations.softmax(x)), [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.asarray(activations.log_softmax(x)), [0.0, -2e4, -1e4])


@pytest.mark.parametrize(("name", "fn", "ref"), NORMALISERS, ids=NORMALISER_IDS)
def test_normaliser_keeps_bfloat16(name, fn, ref):
    x = jnp.asarray([[0.5, -1.0, 2.0]], dtype=jnp.bfloat16)
    value = jax.jit(fn)(x)
    assert value.dtype == jnp.bfloat16
    assert jax.jit(jax.grad(lambda v: jnp.sum(fn(v)[..., 0])))(x).dtype == jnp.bfloat16
    # Same bfloat16 allowance as the elementwise functions (two roundings of 2**-8).
    expected = ref(np.asarray(x.astype(jnp.float32), dtype=np.float64), -1)
    np.testing.assert_allclose(np.asarray(value.astype(jnp.float32)), expected, rtol=2**-7, atol=2**-8)


@pytest.mark.parametrize(("name", "fn", "ref", "ref_grad"), ELEMENTWISE, ids=ELEMENTWISE_IDS)
def test_a_nan_input_stays_nan_as_in_jax_nn(name, fn, ref, ref_grad):
    # a rectifier written as where(x > 0, x, 0) turned NaN into 0, hiding a broken input
    out = np.asarray(fn(jnp.array([jnp.nan, 1.0], jnp.float32)))
    assert np.isnan(out[0]) and np.isfinite(out[1]), out
