"""Dropout: the mask's statistics, inverted scaling, keys, eval mode and its error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import nn


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_drop_fraction_and_scaling(rate, key):
    n = 200_000
    y, _ = nn.Dropout(rate).apply({}, {}, jnp.ones(n), key=key, train=True)
    y = np.asarray(y)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - rate), rtol=1e-6)
    # The dropped count is Binomial(n, rate): its std is sqrt(n rate (1-rate)); allow 6 of them.
    tolerance = 6 * np.sqrt(rate * (1 - rate) / n)
    assert abs((~kept).mean() - rate) < tolerance
    # Inverted scaling keeps the expectation: E[y] = 1 (std of the mean: sqrt(rate/(1-rate)/n)).
    assert abs(y.mean() - 1.0) < 6 * np.sqrt(rate / (1 - rate) / n)


def test_eval_is_identity_and_ignores_key(key):
    x = jnp.arange(6.0)
    layer = nn.Dropout(0.5)
    np.testing.assert_array_equal(layer.apply({}, {}, x)[0], x)
    np.testing.assert_array_equal(layer.apply({}, {}, x, key=key, train=False)[0], x)


def test_rate_zero_is_identity_in_training():
    x = jnp.arange(6.0)
    np.testing.assert_array_equal(nn.Dropout(0.0).apply({}, {}, x, train=True)[0], x)


def test_same_key_same_mask_other_key_other_mask(keys):
    layer = nn.Dropout(0.5)
    x = jnp.ones(1000)
    k1, k2 = next(keys), next(keys)
    a = layer.apply({}, {}, x, key=k1, train=True)[0]
    b = layer.apply({}, {}, x, key=k1, train=True)[0]
    c = layer.apply({}, {}, x, key=k2, train=True)[0]
    np.testing.assert_array_equal(a, b)
    assert np.any(np.asarray(a) != np.asarray(c))


def test_serial_gives_each_dropout_its_own_key(key):
    model = nn.Serial(nn.FanOut(2), nn.Parallel(nn.Dropout(0.5), nn.Dropout(0.5)))
    (a, b), _ = model.apply({}, None, jnp.ones(1000), key=key, train=True)
    assert np.any(np.asarray(a) != np.asarray(b))


def test_gradient_is_mask_over_keep_probability(key):
    rate = 0.25
    layer = nn.Dropout(rate)
    x = jnp.linspace(1.0, 2.0, 64)
    y = layer.apply({}, {}, x, key=key, train=True)[0]
    grad = jax.grad(lambda v: layer.apply({}, {}, v, key=key, train=True)[0].sum())(x)
    np.testing.assert_allclose(grad, np.where(np.asarray(y) != 0, 1 / (1 - rate), 0.0), rtol=1e-6)


def test_keeps_dtype(key):
    y, _ = nn.Dropout(0.5).apply({}, {}, jnp.ones(8, jnp.bfloat16), key=key, train=True)
    assert y.dtype == jnp.bfloat16


def test_training_without_key_is_a_clear_error():
    with pytest.raises(
        ValueError,
        match=r"^Dropout needs a PRNG key in training: call "
        r"apply\(params, state, x, key=key, train=True\)",
    ):
        nn.Dropout(0.5).apply({}, {}, jnp.ones(3), train=True)


@pytest.mark.parametrize("rate", [1.0, 1.5, -0.1, "0.5", True])
def test_invalid_rate(rate):
    with pytest.raises(ValueError, match=rf"`rate` must be in \[0, 1\), got {rate!r}"):
        nn.Dropout(rate)
