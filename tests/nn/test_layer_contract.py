"""Every layer against the contract: declared shapes, vmap, jit, finite-difference gradients.

One table of layers, each crossed with the same checks, so a new layer gets all of them by
adding one row.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import fdl
from fdl import nn
from tests.nn.helpers import away_from_kinks

# (id, layer factory, per-example input shape). Factories, so each test builds a fresh layer.
LAYERS = [
    ("dense", lambda: nn.Dense(3), (4,)),
    ("dense_rest_axes", lambda: nn.Dense(3), (5, 4)),
    ("dense_no_bias", lambda: nn.Dense(2, use_bias=False), (3,)),
    ("serial", lambda: nn.Serial(nn.Dense(6), nn.Tanh(), nn.Dense(2)), (4,)),
    ("mlp", lambda: nn.MLP((5, 5, 3), activation=fdl.activations.gelu), (4,)),
    ("branch_concat", lambda: nn.Branch(nn.Dense(2), nn.Identity()), (3,)),
    ("branch_sum", lambda: nn.Branch(nn.Dense(3), nn.Identity(), merge="sum"), (3,)),
    (
        "fanout_parallel_concat",
        lambda: nn.Serial(nn.FanOut(2), nn.Parallel(nn.Dense(2), nn.Dense(3)), nn.Concat()),
        (4,),
    ),
    (
        "fanout_parallel_sum",
        lambda: nn.Serial(nn.FanOut(2), nn.Parallel(nn.Dense(3), nn.Sigmoid()), nn.Sum()),
        (3,),
    ),
    ("residual", lambda: nn.Residual(nn.Serial(nn.Dense(4), nn.Tanh(), nn.Dense(4))), (4,)),
    ("identity", lambda: nn.Identity(), (3,)),
    ("flatten", lambda: nn.Serial(nn.Flatten(2), nn.Dense(2)), (3, 4)),
    ("elementwise", lambda: nn.Elementwise(jnp.sin), (3,)),
    ("dropout_eval", lambda: nn.Dropout(0.3), (5,)),
    ("relu", nn.Relu, (6,)),
    ("leaky_relu", lambda: nn.LeakyRelu(0.2), (6,)),
    ("elu", lambda: nn.Elu(0.5), (6,)),
    ("gelu", nn.Gelu, (6,)),
    ("gelu_tanh", lambda: nn.Gelu(approximate=True), (6,)),
    ("sigmoid", nn.Sigmoid, (6,)),
    ("tanh", nn.Tanh, (6,)),
    ("softmax", nn.Softmax, (6,)),
    ("log_softmax", nn.LogSoftmax, (6,)),
    ("softplus", nn.Softplus, (6,)),
    ("silu", nn.Silu, (6,)),
]
IDS = [row[0] for row in LAYERS]


def build(factory, shape, key, dtype=jnp.float32):
    layer = factory()
    params, state, out_shape = layer.init(key, shape)
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    return layer, params, state, out_shape


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=IDS)
@pytest.mark.parametrize("batch", [(), (7,), (2, 3)], ids=["single", "batch", "two_batch_axes"])
def test_declared_output_shape_is_actual(_, factory, shape, batch, keys):
    layer, params, state, out_shape = build(factory, shape, next(keys))
    x = jax.random.normal(next(keys), batch + shape)
    y, new_state = layer.apply(params, state, x)
    assert y.shape == batch + tuple(out_shape)
    chex.assert_trees_all_equal_structs(new_state, state)


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=IDS)
def test_vmap_over_single_examples_equals_batched_call(_, factory, shape, keys):
    layer, params, state, _ = build(factory, shape, next(keys))
    x = jax.random.normal(next(keys), (5,) + shape)
    batched, _ = layer.apply(params, state, x)
    mapped = jax.vmap(lambda xi: layer.apply(params, state, xi)[0])(x)
    np.testing.assert_allclose(mapped, batched, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=IDS)
def test_jit_equals_eager(_, factory, shape, keys):
    layer, params, state, _ = build(factory, shape, next(keys))
    x = jax.random.normal(next(keys), (4,) + shape)
    eager, _ = layer.apply(params, state, x)
    compiled, _ = jax.jit(layer.apply)(params, state, x)
    np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=IDS)
def test_gradients_match_finite_differences(_, factory, shape, keys):
    """Reverse- and forward-mode derivatives against central differences, in float64."""
    with jax.enable_x64(True):
        layer, params, state, _ = build(factory, shape, next(keys), jnp.float64)
        x = away_from_kinks(jax.random.normal(next(keys), (3,) + shape, jnp.float64))
        wrt_x = functools.partial(lambda p, xi: layer.apply(p, state, xi)[0], params)
        check_grads(wrt_x, (x,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)
        if jax.tree.leaves(params):
            wrt_params = lambda p: layer.apply(p, state, x)[0]
            check_grads(wrt_params, (params,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=IDS)
def test_init_is_deterministic_in_the_key_and_traceable(_, factory, shape, keys):
    layer = factory()
    key = next(keys)
    first = layer.init(key, shape)
    chex.assert_trees_all_equal(first, layer.init(key, shape))
    # init needs no concrete input: it traces with an abstract key (so it can run under jit).
    out_shape = jax.eval_shape(lambda k: layer.init(k, shape)[:2], key)
    chex.assert_trees_all_equal_shapes_and_dtypes(out_shape, first[:2])


CONSTRUCTORS = [
    (nn.Dense, (3,)),
    (nn.Dropout, (0.1,)),
    (nn.Relu, ()),
    (nn.LeakyRelu, ()),
    (nn.Elu, ()),
    (nn.Gelu, ()),
    (nn.Sigmoid, ()),
    (nn.Tanh, ()),
    (nn.Softmax, ()),
    (nn.LogSoftmax, ()),
    (nn.Softplus, ()),
    (nn.Silu, ()),
    (nn.Serial, (nn.Identity(),)),
    (nn.Parallel, (nn.Identity(),)),
    (nn.FanOut, (2,)),
    (nn.Concat, ()),
    (nn.Sum, ()),
    (nn.Multiply, ()),
    (nn.Branch, (nn.Identity(),)),
    (nn.Residual, (nn.Identity(),)),
    (nn.Identity, ()),
    (nn.Flatten, (2,)),
    (nn.Elementwise, (abs,)),
    (nn.Conv1D, (4, 3)),
    (nn.Conv2D, (4, 3)),
    (nn.ConvTranspose1D, (4, 3)),
    (nn.ConvTranspose2D, (4, 3)),
    (nn.MaxPool1D, (2,)),
    (nn.MaxPool2D, (2,)),
    (nn.AvgPool1D, (2,)),
    (nn.AvgPool2D, (2,)),
    (nn.GlobalAvgPool, (1,)),
    (nn.GlobalMaxPool, (1,)),
    (nn.BatchNorm, ()),
    (nn.LayerNorm, ()),
    (nn.RMSNorm, ()),
    (nn.GroupNorm, (2,)),
    (nn.Embedding, (10, 4)),
    (nn.SinusoidalPositionalEncoding, ()),
    (nn.LearnedPositionalEncoding, (8,)),
    (nn.MultiHeadAttention, (2,)),
    (nn.TransformerEncoderBlock, (2, 8)),
    (nn.TransformerDecoderBlock, (2, 8)),
]


@pytest.mark.parametrize("factory, args", CONSTRUCTORS, ids=[f.__name__ for f, _ in CONSTRUCTORS])
def test_every_constructor_records_its_kind_and_name(factory, args):
    """Automatic names (``max_pool2d_0``) and ``repr`` come from the recorded kind and name."""
    layer = factory(*args)
    assert layer.kind == factory.__name__ and layer.name is None
    assert factory(*args, name="part").name == "part"
    assert repr(layer).startswith(factory.__name__ + "(")
