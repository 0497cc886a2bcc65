"""Dense: hand-computed values, dtypes, initializer arguments and its error messages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import nn

W = np.array([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]], np.float32)  # (in=3, out=2)
B = np.array([0.5, -1.0], np.float32)


def test_values_against_hand_computation():
    layer = nn.Dense(2)
    params = {"w": jnp.asarray(W), "b": jnp.asarray(B)}
    x = jnp.array([[1.0, 1.0, 1.0], [2.0, 0.0, -2.0]])
    y, state = layer.apply(params, {}, x)
    # row 0: [1+3-1+0.5, 2+4+0.5-1] ; row 1: [2+2+0.5, 4-1-1]
    np.testing.assert_array_equal(y, [[3.5, 5.5], [4.5, 2.0]])
    assert state == {}


def test_any_leading_axes_match_numpy(keys):
    layer = nn.Dense(2)
    params = {"w": jnp.asarray(W), "b": jnp.asarray(B)}
    x = jax.random.normal(next(keys), (2, 3, 5, 3))
    y, _ = layer.apply(params, None, x)
    expected = np.einsum("abci,ij->abcj", np.asarray(x, np.float64), W) + B
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_params_are_named_and_shaped(key):
    params, state, out_shape = nn.Dense(5).init(key, (7,))
    assert set(params) == {"w", "b"} and state == {} and out_shape == (5,)
    assert params["w"].shape == (7, 5) and params["b"].shape == (5,)
    np.testing.assert_array_equal(params["b"], np.zeros(5))
    assert set(nn.Dense(5, use_bias=False).init(key, (7,))[0]) == {"w"}


def test_initializer_and_dtype_arguments(key):
    layer = nn.Dense(
        2,
        w_init=fdl.initializers.ones(),
        b_init=fdl.initializers.constant(3.0),
        param_dtype=jnp.bfloat16,
        dtype=jnp.float32,
    )
    params, state, _ = layer.init(key, (4,))
    assert params["w"].dtype == jnp.bfloat16 and params["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(params["w"], np.ones((4, 2)))
    y, _ = layer.apply(params, state, jnp.ones((1, 4), jnp.bfloat16))
    assert y.dtype == jnp.float32  # the compute dtype, separate from the parameter dtype
    np.testing.assert_array_equal(y, [[7.0, 7.0]])


def test_default_compute_dtype_promotes_input_and_params(key):
    params, state, _ = nn.Dense(2).init(key, (3,))
    y, _ = nn.Dense(2).apply(params, state, jnp.ones((1, 3), jnp.int32))
    assert y.dtype == jnp.float32


def test_wrong_input_shape_names_layer_and_both_shapes(key):
    layer = nn.Dense(2, name="hidden")
    params, state, _ = layer.init(key, (4,))
    with pytest.raises(
        ValueError,
        match=r"^Dense expects inputs of shape \(\.\.\., 4\), got shape \(8, 5\) \(its `w` is \(in, out\) = \(4, 2\)\)$",
    ):
        layer.apply(params, state, jnp.ones((8, 5)))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(\.\.\., 4\), got shape \(\)"):
        layer.apply(params, state, jnp.ones(()))
    model = nn.Serial(nn.Dense(4), layer)
    params, state, _ = model.init(key, (3,))
    with pytest.raises(
        ValueError,
        match=r"^layer 'hidden' \(Dense\): Dense expects inputs of shape \(\.\.\., 4\), got shape \(8, 5\) "
        r"\(its `w` is \(in, out\) = \(4, 2\)\)$",
    ):
        model.apply({**params, "dense_0": {"w": jnp.ones((3, 5)), "b": jnp.ones(5)}}, state, jnp.ones((8, 3)))


def test_wrong_input_shape_is_caught_under_jit(key):
    layer = nn.Dense(2)
    params, state, _ = layer.init(key, (4,))
    with pytest.raises(ValueError, match=r"got shape \(3, 6\)"):
        jax.jit(layer.apply)(params, state, jnp.ones((3, 6)))


def test_bad_construction_and_init_arguments(key):
    with pytest.raises(ValueError, match=r"`features` must be a positive integer, got 0"):
        nn.Dense(0)
    with pytest.raises(ValueError, match=r"`features` must be a positive integer, got 2.5"):
        nn.Dense(2.5)
    with pytest.raises(ValueError, match=r"Dense needs inputs with at least one axis, got input_shape \(\)"):
        nn.Dense(2).init(key, ())
    with pytest.raises(
        ValueError, match=r"`input_shape` must be a tuple of non-negative ints, got \(-1, 3\)"
    ):
        nn.Dense(2).init(key, (-1, 3))
