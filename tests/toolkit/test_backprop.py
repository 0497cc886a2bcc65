"""The hand-written backward pass of fdl.backprop against jax.grad of the same fdl.nn.MLP."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import fdl
from fdl import backprop

RTOL = 1e-12  # float64: the two differ only in the order of floating-point sums

FDL_ACTIVATIONS = {
    "relu": fdl.activations.relu,
    "tanh": fdl.activations.tanh,
    "sigmoid": fdl.activations.sigmoid,
}

# (seed, widths after the input, input width, batch, activation): depths 1 to 4, every activation
CASES = [
    (0, (3,), 4, 1, "relu"),
    (1, (16, 10), 8, 7, "relu"),
    (2, (12, 9, 5), 6, 32, "tanh"),
    (3, (7, 7, 7, 4), 5, 3, "sigmoid"),
    (4, (32, 16, 10), 64, 64, "tanh"),
]


def fdl_model_and_data(seed, widths, features, batch, activation):
    """An fdl.nn.MLP, float64 params in its layout (NumPy draws: no eager JAX ops), and a batch."""
    model = fdl.nn.MLP(widths, activation=FDL_ACTIVATIONS[activation], param_dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    params, fan_in = {}, features
    for i, width in enumerate(widths):  # LeCun-scaled weights, nonzero biases
        w = rng.normal(size=(fan_in, width)) / np.sqrt(fan_in)
        params[f"dense_{i}"] = {"w": jnp.asarray(w), "b": jnp.asarray(0.3 * rng.normal(size=width))}
        fan_in = width
    x = jnp.asarray(rng.normal(size=(batch, features)))
    labels = jnp.asarray(rng.integers(0, widths[-1], size=batch), jnp.int32)
    return model, params, {}, x, labels


def assert_trees_close(actual, expected, rtol=RTOL):
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for path, a in jax.tree_util.tree_leaves_with_path(actual):
        e = expected
        for key in path:
            e = e[key.key]
        assert a.shape == e.shape and a.dtype == e.dtype, jax.tree_util.keystr(path)
        scale = float(jnp.max(jnp.abs(e)))
        assert float(jnp.max(jnp.abs(a - e))) <= rtol * scale, jax.tree_util.keystr(path)


@pytest.mark.parametrize("seed, widths, features, batch, activation", CASES)
def test_mlp_backward_equals_jax_grad_of_the_fdl_model(seed, widths, features, batch, activation):
    with jax.enable_x64(True):
        model, params, state, x, labels = fdl_model_and_data(seed, widths, features, batch, activation)

        def fdl_loss(p):
            logits, _ = model.apply(p, state, x)
            return fdl.losses.softmax_cross_entropy_with_integer_labels(logits, labels, reduction="mean")

        @jax.jit  # one compilation per case: eager dispatch of every small op is slower
        def both(p):
            logits, cache = backprop.mlp_forward(p, x, activation)
            hand = (
                logits,
                backprop.mlp_loss(p, x, labels, activation),
                backprop.mlp_backward(p, cache, labels),
            )
            return hand, (model.apply(p, state, x)[0], *jax.value_and_grad(fdl_loss)(p))

        (logits, loss, grads), (expected_logits, expected_loss, expected) = both(params)
        np.testing.assert_allclose(logits, expected_logits, rtol=RTOL, atol=0)
        np.testing.assert_allclose(loss, expected_loss, rtol=RTOL)
        assert_trees_close(grads, expected)


def test_mlp_backward_runs_under_jit_in_float32():
    with jax.enable_x64(True):
        _, params, _, x, labels = fdl_model_and_data(0, (6, 4), 5, 9, "tanh")
        params, x = fdl.tree.cast(params, jnp.float32), x.astype(jnp.float32)

    @jax.jit
    def hand(p):
        return backprop.mlp_backward(p, backprop.mlp_forward(p, x, "tanh")[1], labels)

    grads = hand(params)
    expected = jax.jit(jax.grad(backprop.mlp_loss), static_argnums=3)(params, x, labels, "tanh")
    assert jax.tree.map(lambda g: g.dtype, grads) == jax.tree.map(lambda g: g.dtype, params)
    assert_trees_close(grads, expected, rtol=1e-5)


@pytest.mark.parametrize("name", backprop.ACTIVATIONS)
def test_activation_derivative_is_the_diagonal_of_the_jacobian(name):
    with jax.enable_x64(True):
        z = jnp.linspace(-4.0, 4.0, 41, dtype=jnp.float64) + 0.01  # avoid relu's kink at 0
        jacobian = jax.jacobian(FDL_ACTIVATIONS[name])(z)  # (41, 41), diagonal
        np.testing.assert_array_equal(jacobian - jnp.diag(jnp.diag(jacobian)), 0.0)
        np.testing.assert_allclose(
            backprop.activation_derivative(name, z), jnp.diag(jacobian), rtol=1e-14, atol=1e-16
        )


def test_relu_derivative_at_zero_matches_jax():
    assert (
        float(backprop.activation_derivative("relu", jnp.zeros(())))
        == float(jax.grad(jax.nn.relu)(0.0))
        == 0.0
    )


def test_dense_backward_equals_jax_vjp():
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        x, w, b, g = (jnp.asarray(rng.normal(size=s)) for s in [(6, 4), (4, 3), (3,), (6, 3)])
        y, vjp = jax.vjp(backprop.dense_forward, x, w, b)
        np.testing.assert_allclose(y, np.asarray(x) @ np.asarray(w) + np.asarray(b)[None, :], rtol=1e-14)
        mine_all = jax.jit(backprop.dense_backward)(x, w, g)
        for mine, ref in zip(mine_all, vjp(g), strict=True):
            np.testing.assert_allclose(mine, ref, rtol=1e-14, atol=1e-15)


def test_softmax_cross_entropy_grad_equals_jax_grad():
    with jax.enable_x64(True):
        logits = jnp.asarray(5.0 * np.random.default_rng(3).normal(size=(8, 6)))
        labels = jnp.arange(8) % 6
        loss = lambda z: fdl.losses.softmax_cross_entropy_with_integer_labels(z, labels, reduction="mean")
        grad = jax.jit(backprop.softmax_cross_entropy_grad)(logits, labels)
        np.testing.assert_allclose(grad, jax.jit(jax.grad(loss))(logits), rtol=1e-13, atol=1e-16)
        np.testing.assert_allclose(jnp.sum(grad, axis=1), 0.0, atol=1e-16)


def test_mlp_loss_passes_finite_difference_check():
    with jax.enable_x64(True):
        _, params, _, x, labels = fdl_model_and_data(9, (5, 3), 4, 6, "sigmoid")
        loss = jax.jit(lambda p: backprop.mlp_loss(p, x, labels, "sigmoid"))
        check_grads(loss, (params,), order=1, modes=["rev"])


# ---- errors ------------------------------------------------------------------------------------

PARAMS = {
    "dense_0": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)},
    "dense_1": {"w": jnp.ones((4, 2)), "b": jnp.zeros(2)},
}


def test_unknown_activation():
    with pytest.raises(
        ValueError, match=r"`activation` must be one of 'relu', 'tanh', 'sigmoid', got 'gelu'"
    ):
        backprop.mlp_forward(PARAMS, jnp.ones((2, 3)), "gelu")
    with pytest.raises(ValueError, match=r"`activation` must be one of .*got 'elu'"):
        backprop.activation_derivative("elu", jnp.ones(2))


def test_params_not_in_mlp_layout():
    with pytest.raises(ValueError, match=r"`params` must be a non-empty dict .* got list"):
        backprop.mlp_forward([], jnp.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"must hold the layers \['dense_0', 'dense_1'\].*got \['dense_0', 'dense_2'\]"
    ):
        backprop.mlp_forward({"dense_0": PARAMS["dense_0"], "dense_2": PARAMS["dense_1"]}, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"layer 'dense_1' must hold 'w' and 'b', got \['w'\]"):
        backprop.mlp_forward({**PARAMS, "dense_1": {"w": jnp.ones((4, 2))}}, jnp.ones((2, 3)))


def test_shape_mismatches_name_the_layer():
    with pytest.raises(ValueError, match=r"layer 'dense_1' takes 5 inputs but 'dense_0' gives 4 outputs"):
        backprop.mlp_forward(
            {**PARAMS, "dense_1": {"w": jnp.ones((5, 2)), "b": jnp.zeros(2)}}, jnp.ones((2, 3))
        )
    with pytest.raises(
        ValueError,
        match=r"layer 'dense_0': `w` must be \(in, out\) and `b` \(out,\), got w \(3, 4\) and b \(3,\)",
    ):
        backprop.mlp_forward(
            {**PARAMS, "dense_0": {"w": jnp.ones((3, 4)), "b": jnp.zeros(3)}}, jnp.ones((2, 3))
        )
    with pytest.raises(ValueError, match=r"`x` must be \(batch, 3\) for layer 'dense_0', got shape \(2, 5\)"):
        backprop.mlp_forward(PARAMS, jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"`x` must be \(batch, 3\) for layer 'dense_0', got shape \(3,\)"):
        backprop.mlp_forward(PARAMS, jnp.ones(3))


def test_backward_checks_labels_and_cache():
    _, cache = backprop.mlp_forward(PARAMS, jnp.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"`labels` must be \(batch,\) = \(2,\) for the cached batch, got shape \(3,\)"
    ):
        backprop.mlp_backward(PARAMS, cache, jnp.zeros(3, jnp.int32))
    one_layer = {"dense_0": {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}}
    with pytest.raises(ValueError, match=r"`cache` holds 2 layers but `params` has 1"):
        backprop.mlp_backward(one_layer, cache, jnp.zeros(2, jnp.int32))
    wider = {
        "dense_0": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)},
        "dense_1": {"w": jnp.ones((4, 5)), "b": jnp.zeros(5)},
    }
    with pytest.raises(
        ValueError,
        match=r"layer 'dense_1': the cache holds inputs \(2, 4\) and errors \(2, 2\), which do not fit w \(4, 5\)",
    ):
        backprop.mlp_backward(wider, cache, jnp.zeros(2, jnp.int32))
    with pytest.raises(
        ValueError,
        match=r"`labels` holds 2 \(at index 1\); class labels must be integers in \[0, 2\) \(`logits` has 2 classes\)",
    ):
        backprop.mlp_backward(PARAMS, cache, jnp.array([0, 2]))
    with pytest.raises(TypeError, match=r"`labels` must be integer class labels, got dtype float32"):
        backprop.softmax_cross_entropy_grad(jnp.zeros((2, 3)), jnp.zeros(2))
    with pytest.raises(
        ValueError, match=r"`logits` must be \(B, C\) and `labels` \(B,\), got shapes \(2, 3\) and \(2, 1\)"
    ):
        backprop.softmax_cross_entropy_grad(jnp.zeros((2, 3)), jnp.zeros((2, 1), jnp.int32))
