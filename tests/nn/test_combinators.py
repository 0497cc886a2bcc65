"""Combinators: composition order, key splitting, merges, skips, as_function and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import nn


def scale(c):
    """A parameter-free layer multiplying by ``c`` (makes composition order visible)."""
    return nn.Elementwise(lambda x: c * x, name=f"times_{c}")


def add(c):
    return nn.Elementwise(lambda x: x + c, name=f"plus_{c}")


def test_serial_applies_in_order(key):
    model = nn.Serial(scale(2.0), add(1.0), scale(3.0))  # 3 * (2x + 1)
    params, state, shape = model.init(key, (2,))
    assert params == ({}, {}, {}) and shape == (2,)
    np.testing.assert_array_equal(model.apply(params, state, jnp.array([1.0, -1.0]))[0], [9.0, -3.0])


def test_serial_threads_state_per_layer(key):
    def counter():
        init = lambda k, s: ({}, {"n": jnp.zeros((), jnp.int32)}, s)  # noqa: E731

        def apply(params, state, x, *, key=None, train=False):
            return x, {"n": state["n"] + 1}

        return nn.Layer(init, apply, "counter")

    model = nn.Serial(counter(), scale(2.0), counter())
    params, state, _ = model.init(key, (1,))
    for _ in range(3):
        _, state = model.apply(params, state, jnp.ones(1))
    assert int(state[0]["n"]) == 3 and int(state[2]["n"]) == 3 and state[1] == {}


def test_serial_dense_values_by_hand():
    model = nn.Serial(nn.Dense(2), nn.Relu(), nn.Dense(1))
    params = (
        {"w": jnp.array([[1.0, -1.0], [2.0, 1.0]]), "b": jnp.array([0.0, 0.5])},
        {},
        {"w": jnp.array([[1.0], [10.0]]), "b": jnp.array([-1.0])},
    )
    # x=[1,1]: hidden = [3, 0.5] -> relu [3, 0.5] -> 3 + 5 - 1 = 7
    # x=[1,-1]: hidden = [-1, -1.5] -> relu [0, 0] -> -1
    y, _ = model.apply(params, None, jnp.array([[1.0, 1.0], [1.0, -1.0]]))
    np.testing.assert_array_equal(y, [[7.0], [-1.0]])


def test_branch_and_explicit_fanout_parallel_agree(key):
    d1, d2 = nn.Dense(2), nn.Dense(3)
    branch = nn.Branch(d1, d2)
    explicit = nn.Serial(nn.FanOut(2), nn.Parallel(d1, d2), nn.Concat())
    bp, bs, bshape = branch.init(key, (4,))
    ep = ((), bp, ())
    x = jnp.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(branch.apply(bp, bs, x)[0], explicit.apply(ep, None, x)[0])
    assert bshape == explicit.init(key, (4,))[2] == (5,)


def test_merges_by_hand():
    x = jnp.array([1.0, 2.0])
    concat, _ = nn.Branch(scale(2.0), add(1.0)).apply(({}, {}), None, x)
    total, _ = nn.Branch(scale(2.0), add(1.0), merge="sum").apply(({}, {}), None, x)
    np.testing.assert_array_equal(concat, [2.0, 4.0, 2.0, 3.0])
    np.testing.assert_array_equal(total, [4.0, 7.0])
    y, _ = nn.Concat(axis=-2).apply({}, {}, (jnp.zeros((3, 1, 2)), jnp.ones((3, 2, 2))))
    assert y.shape == (3, 3, 2)
    assert nn.Concat(axis=-2).init(None, ((1, 2), (2, 2)))[2] == (3, 2)


def test_residual_adds_the_input(key):
    model = nn.Residual(scale(3.0))
    np.testing.assert_array_equal(model.apply({}, {}, jnp.array([1.0, 2.0]))[0], [4.0, 8.0])
    # The Jacobian of x + f(x) is I + J_f: here 1 + 3.
    np.testing.assert_array_equal(jax.grad(lambda v: model.apply({}, {}, v)[0].sum())(jnp.ones(2)), [4.0, 4.0])


def test_flatten_by_hand():
    x = jnp.arange(24.0).reshape(2, 3, 4)
    y, _ = nn.Flatten(2).apply({}, {}, x)
    np.testing.assert_array_equal(y, np.arange(24.0).reshape(2, 12))
    assert nn.Flatten(2).init(None, (2, 3, 4))[2] == (2, 12)


def test_layer_unpacks_like_a_pair(key):
    init, apply = nn.Dense(2)
    params, state, _ = init(key, (3,))
    assert apply(params, state, jnp.ones(3))[0].shape == (2,)


def test_as_function_gives_one_line_gradients(keys):
    model = nn.mlp((4, 1))
    params, state, _ = model.init(next(keys), (3,))
    x, y = jax.random.normal(next(keys), (5, 3)), jax.random.normal(next(keys), (5, 1))
    f = nn.as_function(model)
    grads = jax.grad(lambda p: fdl.losses.mse(f(p, x), y))(params)
    manual = jax.grad(lambda p: jnp.mean((model.apply(p, state, x)[0] - y) ** 2))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), grads, manual)


def test_as_function_train_mode_uses_the_key(key):
    f = nn.as_function(nn.Dropout(0.5), train=True)
    y = f({}, jnp.ones(100), key)
    assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 2.0}


# ---------------------------------------------------------------- errors


def test_non_layer_arguments_are_rejected():
    with pytest.raises(TypeError, match=r"Serial argument 1 must be a fdl.nn.Layer, got <function relu.*wrap a plain function with fdl.nn.Elementwise\(fn\)"):
        nn.Serial(nn.Dense(2), fdl.activations.relu)
    with pytest.raises(ValueError, match=r"Serial needs at least one layer, got none"):
        nn.Serial()
    with pytest.raises(TypeError, match=r"Residual argument 0 must be a fdl.nn.Layer, got 3"):
        nn.Residual(3)
    with pytest.raises(TypeError, match=r"as_function: `model` must be a fdl.nn.Layer, got 'dense'"):
        nn.as_function("dense")
    with pytest.raises(TypeError, match=r"Elementwise: `fn` must be callable, got 1.0"):
        nn.Elementwise(1.0)


def test_params_of_the_wrong_structure_are_rejected(key):
    model = nn.Serial(nn.Dense(2), nn.Dense(2), name="net")
    params, state, _ = model.init(key, (2,))
    with pytest.raises(ValueError, match=r"Serial 'net' of 2 layers expects `params` to be a tuple of 2 entries \(one per layer, as its init returned\), got tuple of length 1"):
        model.apply(params[:1], state, jnp.ones(2))
    with pytest.raises(ValueError, match=r"expects `params` to be a tuple of 2 entries.*got dict of length 2"):
        model.apply({"w": 1, "b": 2}, state, jnp.ones(2))


def test_residual_that_changes_shape(key):
    with pytest.raises(ValueError, match=r"Residual 'residual': the wrapped layer 'dense' must keep the shape for x \+ f\(x\), but maps \(3,\) to \(2,\)"):
        nn.Residual(nn.Dense(2)).init(key, (3,))


def test_merge_errors(key):
    with pytest.raises(ValueError, match=r"`axis` must be a negative int .* got 0"):
        nn.Concat(axis=0)
    with pytest.raises(ValueError, match=r"`merge` must be one of 'concat', 'sum', got 'max'"):
        nn.Branch(nn.Identity(), merge="max")
    with pytest.raises(ValueError, match=r"Sum 'sum' sums inputs of equal shapes, got shapes \(\(2,\), \(3,\)\)"):
        nn.Sum().init(key, ((2,), (3,)))
    with pytest.raises(ValueError, match=r"Concat 'concat' concatenates along axis -1: the other axes must match, got shapes \(\(2, 3\), \(4, 3\)\)"):
        nn.Concat().init(key, ((2, 3), (4, 3)))
    with pytest.raises(ValueError, match=r"Branch 'branch' sums inputs of equal shapes, got shapes \(\(2,\), \(3,\)\)"):
        nn.Branch(nn.Dense(2), nn.Identity(), merge="sum").init(key, (3,))
    with pytest.raises(ValueError, match=r"Parallel 'parallel' of 2 layers expects `input_shape` to be a tuple of 2 entries"):
        nn.Parallel(nn.Identity(), nn.Identity()).init(key, ((3,),))
    with pytest.raises(ValueError, match=r"`num` must be a positive integer, got 0"):
        nn.FanOut(0)


def test_flatten_errors(key):
    with pytest.raises(ValueError, match=r"`ndim` must be a positive integer, got 0"):
        nn.Flatten(0)
    with pytest.raises(ValueError, match=r"Flatten 'flatten' flattens the last 3 axes, got input_shape \(4, 4\)"):
        nn.Flatten(3).init(key, (4, 4))
    with pytest.raises(ValueError, match=r"Flatten 'flatten' flattens the last 3 axes, got an input of shape \(4, 4\)"):
        nn.Flatten(3).apply({}, {}, jnp.ones((4, 4)))


def test_mlp_errors():
    with pytest.raises(ValueError, match=r"`features` must list at least one layer width, got \(\)"):
        nn.mlp(())
    with pytest.raises(ValueError, match=r"`features\[1\]` must be a positive integer, got -3"):
        nn.mlp((4, -3))
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got 1.0"):
        nn.mlp((4, 2), dropout_rate=1.0)


def test_mlp_structure(key):
    model = nn.mlp((8, 8, 3), dropout_rate=0.2)
    params, _, out_shape = model.init(key, (5,))
    # dense, act, dropout, dense, act, dropout, dense
    assert len(params) == 7 and out_shape == (3,)
    assert [p["w"].shape for p in params if p] == [(5, 8), (8, 8), (8, 3)]
