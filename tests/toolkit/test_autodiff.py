"""The tape autodiff of fdl.autodiff against jax.grad (float64), primitive by primitive and on MLPs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import autodiff as ad
from fdl import backprop

RTOL = 1e-12

# (name, tape function, the same function in jax.numpy), each of one array argument
UNARY = [
    ("tanh", lambda a: ad.sum(ad.tanh(a)), lambda a: jnp.sum(jnp.tanh(a))),
    ("exp", lambda a: ad.sum(ad.exp(a)), lambda a: jnp.sum(jnp.exp(a))),
    ("log", lambda a: ad.sum(ad.log(a * a + 1.0)), lambda a: jnp.sum(jnp.log(a * a + 1.0))),
    ("relu", lambda a: ad.sum(ad.relu(a) * a), lambda a: jnp.sum(jax.nn.relu(a) * a)),
    ("sigmoid", lambda a: ad.sum(ad.sigmoid(a)), lambda a: jnp.sum(jax.nn.sigmoid(a))),
    ("neg-sub", lambda a: ad.sum(1.0 - (-a) * 3.0 - a), lambda a: jnp.sum(1.0 - (-a) * 3.0 - a)),
    (
        "div",
        lambda a: ad.sum(2.0 / (a * a + 1.0) + a / 4.0),
        lambda a: jnp.sum(2.0 / (a * a + 1.0) + a / 4.0),
    ),
    (
        "sum-axis",
        lambda a: ad.sum(ad.sum(a, axis=1) * ad.sum(a, axis=1)),
        lambda a: jnp.sum(jnp.sum(a, axis=1) ** 2),
    ),
    (
        "sum-keepdims",
        lambda a: ad.sum(ad.exp(a - ad.sum(a, axis=0, keepdims=True))),
        lambda a: jnp.sum(jnp.exp(a - jnp.sum(a, axis=0, keepdims=True))),
    ),
    ("mean", lambda a: ad.mean(a * a, axis=(0, 1)) * 1.0, lambda a: jnp.mean(a * a)),
    ("fan-out", lambda a: ad.sum(a * a * a + ad.tanh(a) * a), lambda a: jnp.sum(a**3 + jnp.tanh(a) * a)),
]


def allclose(actual, expected, rtol=RTOL):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    assert np.max(np.abs(actual - expected)) <= rtol * max(np.max(np.abs(expected)), 1e-300)


@pytest.mark.parametrize("name, tape_fn, jax_fn", UNARY, ids=[u[0] for u in UNARY])
def test_primitive_gradients_equal_jax_grad(name, tape_fn, jax_fn):
    a = np.random.default_rng(len(name)).normal(size=(3, 4)) + 0.01
    value, grad = ad.value_and_grad(tape_fn)(a)
    with jax.enable_x64(True):
        expected_value, expected = jax.value_and_grad(jax_fn)(jnp.asarray(a))
    allclose(value, expected_value)
    allclose(grad, expected)


def test_matmul_gradients_both_sides():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 5)), rng.normal(size=(5, 2))
    f = lambda a, b: ad.sum(ad.tanh(ad.matmul(a, b)))
    with jax.enable_x64(True):
        ref = lambda a, b: jnp.sum(jnp.tanh(a @ b))
        ga, gb = jax.grad(ref, argnums=(0, 1))(jnp.asarray(a), jnp.asarray(b))
    allclose(ad.grad(f, argnums=0)(a, b), ga)
    allclose(ad.grad(f, argnums=1)(a, b), gb)
    allclose(ad.grad(lambda a: ad.sum(a @ b))(a), np.ones((3, 2)) @ b.T)  # operator form
    allclose(ad.grad(lambda b: ad.sum(a @ b))(b), a.T @ np.ones((3, 2)))  # numpy @ Var


BROADCASTS = [((3, 1), (3, 4)), ((4,), (3, 4)), ((), (2, 3)), ((2, 1, 4), (3, 1)), ((1, 1), (5,))]


@pytest.mark.parametrize("shape_a, shape_b", BROADCASTS)
@pytest.mark.parametrize("op", ["add", "mul", "div"])
def test_broadcasting_sums_the_adjoint_back(shape_a, shape_b, op):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=shape_a), rng.uniform(1.0, 2.0, size=shape_b)
    weights = rng.normal(size=np.broadcast_shapes(shape_a, shape_b))  # a non-uniform output adjoint
    ops = {"add": lambda x, y: x + y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y}
    tape = lambda a, b: ad.sum(ops[op](a, b) * weights)
    with jax.enable_x64(True), jax.numpy_rank_promotion("allow"):
        ga, gb = jax.grad(lambda a, b: jnp.sum(ops[op](a, b) * weights), argnums=(0, 1))(
            jnp.asarray(a), jnp.asarray(b)
        )
    grad_a, grad_b = ad.grad(tape, 0)(a, b), ad.grad(tape, 1)(a, b)
    assert np.shape(grad_a) == shape_a and np.shape(grad_b) == shape_b
    allclose(grad_a, ga)
    allclose(grad_b, gb)


def test_unbroadcast_counts_the_uses_of_each_entry():
    assert ad.unbroadcast(np.ones((2, 3, 4)), (3, 1)).tolist() == [[8.0]] * 3
    assert ad.grad(lambda a: ad.sum(a + np.zeros((5, 3))))(np.zeros(3)).tolist() == [5.0, 5.0, 5.0]


FDL_ACTIVATIONS = {
    "relu": fdl.activations.relu,
    "tanh": fdl.activations.tanh,
    "sigmoid": fdl.activations.sigmoid,
}


@pytest.mark.parametrize(
    "seed, widths, features, batch, activation",
    [
        (0, (4,), 3, 1, "tanh"),
        (1, (10, 6), 8, 17, "relu"),
        (2, (9, 7, 5), 4, 32, "sigmoid"),
        (3, (6, 6, 6, 3), 5, 8, "tanh"),
    ],
)
def test_mlp_tape_gradient_equals_jax_grad_of_the_fdl_model(seed, widths, features, batch, activation):
    rng = np.random.default_rng(seed)
    params, fan_in = {}, features
    for i, width in enumerate(widths):
        params[f"dense_{i}"] = {
            "w": rng.normal(size=(fan_in, width)) / np.sqrt(fan_in),
            "b": 0.3 * rng.normal(size=width),
        }
        fan_in = width
    x, labels = rng.normal(size=(batch, features)), rng.integers(0, widths[-1], size=batch)
    loss, grads = ad.value_and_grad(ad.mlp_loss)(params, x, labels, activation)
    model = fdl.nn.MLP(widths, activation=FDL_ACTIVATIONS[activation], param_dtype=jnp.float64)
    with jax.enable_x64(True):

        @jax.jit
        def fdl_loss(p):
            logits, _ = model.apply(p, {}, jnp.asarray(x))
            return fdl.losses.softmax_cross_entropy_with_integer_labels(
                logits, jnp.asarray(labels), reduction="mean"
            )

        expected_loss, expected = jax.value_and_grad(fdl_loss)(jax.tree.map(jnp.asarray, params))
    allclose(loss, expected_loss)
    for name in params:
        for leaf in ("w", "b"):
            allclose(grads[name][leaf], expected[name][leaf])


def test_tape_on_jax_arrays_matches_the_hand_backward_pass():
    """JAX values go through jax.numpy on the tape (rank promotion stays 'raise')."""
    rng = np.random.default_rng(5)
    params = {
        f"dense_{i}": {"w": jnp.asarray(rng.normal(size=s), jnp.float32), "b": jnp.zeros(s[1])}
        for i, s in enumerate([(4, 5), (5, 3)])
    }
    x, labels = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), jnp.asarray([0, 1, 2, 0, 1, 2])
    grads = ad.grad(ad.mlp_loss)(params, x, labels, "relu")
    expected = backprop.mlp_backward(params, backprop.mlp_forward(params, x, "relu")[1], labels)
    for name in params:
        assert isinstance(grads[name]["w"], jax.Array) and grads[name]["w"].dtype == jnp.float32
        np.testing.assert_allclose(grads[name]["w"], expected[name]["w"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(grads[name]["b"], expected[name]["b"], rtol=1e-5, atol=1e-6)


def test_tape_records_each_primitive_once_and_ignores_unused_leaves():
    tape = ad.Tape()
    x = ad.Var(np.array([1.0, 2.0]), tape)
    y = ad.sum(x * x + 1.0)  # mul, add, sum
    assert len(tape) == 3
    assert tape.backward(y)[id(x)].tolist() == [2.0, 4.0]
    grads = ad.grad(lambda p: ad.sum(p["used"] * 2.0))({"used": np.ones(2), "unused": np.ones(3)})
    assert grads["unused"].tolist() == [0.0, 0.0, 0.0] and grads["used"].tolist() == [2.0, 2.0]


def test_errors():
    with pytest.raises(ValueError, match=r"grad needs a scalar output, got shape \(2,\)"):
        ad.grad(lambda a: a * 2.0)(np.ones(2))
    with pytest.raises(ValueError, match=r"must return a scalar Var computed from argument 0, got float"):
        ad.grad(lambda a: 1.0)(np.ones(2))
    with pytest.raises(ValueError, match=r"`argnums` is 2 but the function got 1 arguments"):
        ad.grad(lambda a: ad.sum(a), argnums=2)(np.ones(2))
    with pytest.raises(
        ValueError, match=r"matmul needs shapes \(m, k\) and \(k, n\), got \(2, 3\) and \(2, 3\)"
    ):
        ad.grad(lambda a: ad.sum(a @ np.ones((2, 3))))(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"cannot combine Vars from two different tapes"):
        ad.Var(np.ones(2), ad.Tape()) + ad.Var(np.ones(2), ad.Tape())
    with pytest.raises(
        ValueError, match=r"`activation` must be one of 'relu', 'tanh', 'sigmoid', got 'gelu'"
    ):
        ad.mlp_loss(
            {"dense_0": {"w": np.ones((2, 2)), "b": np.zeros(2)}}, np.ones((1, 2)), np.zeros(1, int), "gelu"
        )
