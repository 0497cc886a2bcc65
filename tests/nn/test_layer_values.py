"""Layer outputs against hand computation and NumPy formulas written here, independently.

The contract table (``test_layer_contract.py``) checks shapes, vmap, jit and gradients, which
compare a layer with itself; this module checks what each layer *computes*: the activation
layers against NumPy formulas (their hyperparameters included), the fan-out / parallel / merge
combinators and ``mlp`` against hand-written NumPy forward passes, and dropout in training
against its mask.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import fdl
from fdl import nn

X = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0])


def np_softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


# (id, layer, NumPy formula written out here)
ACTIVATION_LAYERS = [
    ("relu", nn.Relu(), lambda x: np.maximum(x, 0.0)),
    ("leaky_relu_0.2", nn.LeakyRelu(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    ("elu_0.5", nn.Elu(0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    (
        "gelu_exact",
        nn.Gelu(),
        lambda x: 0.5 * x * (1 + np.array([math.erf(v / math.sqrt(2)) for v in x])),
    ),
    (
        "gelu_tanh",
        nn.Gelu(approximate=True),
        lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    ),
    ("sigmoid", nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    ("tanh", nn.Tanh(), np.tanh),
    ("softmax", nn.Softmax(), np_softmax),
    ("log_softmax", nn.LogSoftmax(), lambda x: np.log(np_softmax(x))),
    ("softplus", nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    ("silu", nn.Silu(), lambda x: x / (1 + np.exp(-x))),
]


@pytest.mark.parametrize("_, layer, formula", ACTIVATION_LAYERS, ids=[r[0] for r in ACTIVATION_LAYERS])
def test_activation_layers_compute_their_formula(_, layer, formula):
    y, state = layer.apply({}, {}, jnp.asarray(X, jnp.float32))
    np.testing.assert_allclose(np.asarray(y, np.float64), formula(X), rtol=2e-6, atol=1e-7)
    assert state == {}


def test_activation_layer_hyperparameters_reach_the_function():
    """LeakyRelu's slope, Elu's alpha and Gelu's approximation change the output as stated."""
    x = jnp.asarray([-1.0, 1.0])
    assert nn.LeakyRelu(0.2).apply({}, {}, x)[0].tolist() == pytest.approx([-0.2, 1.0])
    assert nn.LeakyRelu().apply({}, {}, x)[0].tolist() == pytest.approx([-0.01, 1.0])
    assert nn.Elu(0.5).apply({}, {}, x)[0][0] == pytest.approx(0.5 * math.expm1(-1.0))
    assert nn.Elu().apply({}, {}, x)[0][0] == pytest.approx(math.expm1(-1.0))
    exact, approx = nn.Gelu().apply({}, {}, x)[0], nn.Gelu(approximate=True).apply({}, {}, x)[0]
    assert float(jnp.max(jnp.abs(exact - approx))) > 1e-5  # two different functions


def dense_params(w, b):
    return {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}


def test_fanout_parallel_concat_and_sum_by_hand():
    x = np.array([[1.0, 2.0], [-1.0, 0.5]])  # (B=2, 2)
    wa, ba = np.array([[1.0, 0.0, 2.0], [0.0, -1.0, 1.0]]), np.array([0.5, 0.0, -1.0])
    wb, bb = np.array([[2.0, 1.0, 0.0], [1.0, 1.0, 1.0]]), np.array([0.0, 1.0, 0.0])
    ya, yb = x @ wa + ba, x @ wb + bb  # (2, 3) each, by NumPy

    copies, _ = nn.FanOut(2).apply({}, {}, jnp.asarray(x))
    assert isinstance(copies, tuple) and len(copies) == 2
    for copy in copies:
        np.testing.assert_array_equal(copy, x)

    parallel = nn.Parallel(nn.Dense(3), nn.Dense(3))
    params = {"dense_0": dense_params(wa, ba), "dense_1": dense_params(wb, bb)}
    _, parallel_state, _ = parallel.init(jax.random.key(0), ((2,), (2,)))
    (out_a, out_b), _ = parallel.apply(params, parallel_state, copies)
    np.testing.assert_allclose(out_a, ya, rtol=1e-6)
    np.testing.assert_allclose(out_b, yb, rtol=1e-6)

    concat, _ = nn.Concat().apply({}, {}, (out_a, out_b))
    np.testing.assert_allclose(concat, np.concatenate([ya, yb], axis=-1), rtol=1e-6)
    total, _ = nn.Sum().apply({}, {}, (out_a, out_b))
    np.testing.assert_allclose(total, ya + yb, rtol=1e-6)

    model = nn.Serial(nn.FanOut(2), nn.Parallel(nn.Dense(3), nn.Dense(3)), nn.Concat())
    _, state, _ = model.init(jax.random.key(0), (2,))
    y, _ = model.apply({"parallel_0": params}, state, jnp.asarray(x))
    np.testing.assert_allclose(y, np.concatenate([ya, yb], axis=-1), rtol=1e-6)


def test_mlp_computes_the_forward_pass_by_hand(keys):
    model = nn.MLP((4, 3, 2), activation=fdl.activations.tanh)
    params, state, out_shape = model.init(next(keys), (5,))
    x = np.asarray(jax.random.normal(next(keys), (7, 5)), np.float64)
    dense = [jax.tree.map(lambda a: np.asarray(a, np.float64), params[f"dense_{i}"]) for i in range(3)]
    assert [d["w"].shape for d in dense] == [(5, 4), (4, 3), (3, 2)]
    h = np.tanh(x @ dense[0]["w"] + dense[0]["b"])
    h = np.tanh(h @ dense[1]["w"] + dense[1]["b"])
    expected = h @ dense[2]["w"] + dense[2]["b"]  # no activation after the last layer
    y, _ = model.apply(params, state, jnp.asarray(x, jnp.float32))
    assert out_shape == (2,)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_dropout_in_training_declared_shape_jit_and_finite_differences(keys):
    """With a fixed key, training-mode dropout is the linear map x -> mask * x / (1 - rate)."""
    layer = nn.Dropout(0.3)
    params, state, out_shape = layer.init(next(keys), (4, 5))
    key = next(keys)
    x = jax.random.normal(next(keys), (3, 4, 5))
    y, new_state = layer.apply(params, state, x, key=key, train=True)
    assert y.shape == (3, *out_shape) and new_state == state
    compiled, _ = jax.jit(lambda x, k: layer.apply(params, state, x, key=k, train=True))(x, key)
    np.testing.assert_array_equal(compiled, y)
    kept = np.asarray(y) != 0
    np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / 0.7, rtol=1e-6)
    with jax.enable_x64(True):
        x64 = x.astype(jnp.float64)
        f = lambda xi: layer.apply(params, state, xi, key=key, train=True)[0]
        check_grads(f, (x64,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-8, rtol=1e-8)
