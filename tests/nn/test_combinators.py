"""Combinators: composition order, key splitting, merges, skips, as_function and their errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import nn


def scale(c):
    """A parameter-free layer multiplying by ``c`` (makes composition order visible)."""
    return nn.Elementwise(lambda x: c * x)


def add(c):
    return nn.Elementwise(lambda x: x + c)


def test_serial_applies_in_order(key):
    model = nn.Serial(scale(2.0), add(1.0), scale(3.0))  # 3 * (2x + 1)
    params, state, shape = model.init(key, (2,))
    assert params == {} and state == {} and shape == (2,)  # parameter-free parts are left out
    np.testing.assert_array_equal(model.apply(params, state, jnp.array([1.0, -1.0]))[0], [9.0, -3.0])


def counter(name=None):
    """A layer counting its calls in its state."""
    init = lambda k, s: ({}, {"n": jnp.zeros((), jnp.int32)}, s)

    def apply(params, state, x, *, key=None, train=False):
        return x, {"n": state["n"] + 1}

    return nn.Layer(init, apply, name=name, kind="Counter")


def test_serial_threads_state_per_layer(key):
    model = nn.Serial(counter(), scale(2.0), counter())
    params, state, _ = model.init(key, (1,))
    assert sorted(state) == ["counter_0", "counter_1"]
    for _ in range(3):
        _, state = model.apply(params, state, jnp.ones(1))
    assert int(state["counter_0"]["n"]) == 3 and int(state["counter_1"]["n"]) == 3


def test_serial_dense_values_by_hand():
    model = nn.Serial(nn.Dense(2), nn.Relu(), nn.Dense(1, name="out"))
    params = {
        "dense_0": {"w": jnp.array([[1.0, -1.0], [2.0, 1.0]]), "b": jnp.array([0.0, 0.5])},
        "out": {"w": jnp.array([[1.0], [10.0]]), "b": jnp.array([-1.0])},
    }
    # x=[1,1]: hidden = [3, 0.5] -> relu [3, 0.5] -> 3 + 5 - 1 = 7
    # x=[1,-1]: hidden = [-1, -1.5] -> relu [0, 0] -> -1
    y, _ = model.apply(params, None, jnp.array([[1.0, 1.0], [1.0, -1.0]]))
    np.testing.assert_array_equal(y, [[7.0], [-1.0]])


def test_automatic_names_count_per_kind_and_explicit_names_win(key):
    model = nn.Serial(nn.Dense(3), nn.Relu(), nn.Dense(3), nn.Serial(nn.Dense(2), name="head"))
    assert [name for name, _ in model.children] == ["dense_0", "relu_0", "dense_1", "head"]
    params, _, _ = model.init(key, (4,))
    assert nn.leaf_paths(params) == [
        "dense_0/b",
        "dense_0/w",
        "dense_1/b",
        "dense_1/w",
        "head/dense_0/b",
        "head/dense_0/w",
    ]


def test_branch_and_explicit_fanout_parallel_agree(key):
    d1, d2 = nn.Dense(2), nn.Dense(3)
    branch = nn.Branch(d1, d2)
    explicit = nn.Serial(nn.FanOut(2), nn.Parallel(d1, d2), nn.Concat())
    bp, bs, bshape = branch.init(key, (4,))
    ep = {"parallel_0": bp}
    x = jnp.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(branch.apply(bp, bs, x)[0], explicit.apply(ep, None, x)[0])
    assert bshape == explicit.init(key, (4,))[2] == (5,)


def test_merges_by_hand():
    x = jnp.array([1.0, 2.0])
    concat, _ = nn.Branch(scale(2.0), add(1.0)).apply({}, None, x)
    total, _ = nn.Branch(scale(2.0), add(1.0), merge="sum").apply({}, None, x)
    product, _ = nn.Branch(scale(2.0), add(1.0), merge="product").apply({}, None, x)
    np.testing.assert_array_equal(concat, [2.0, 4.0, 2.0, 3.0])
    np.testing.assert_array_equal(total, [4.0, 7.0])
    np.testing.assert_array_equal(product, [4.0, 12.0])  # (2x) * (x + 1)
    y, _ = nn.Concat(axis=-2).apply({}, {}, (jnp.zeros((3, 1, 2)), jnp.ones((3, 2, 2))))
    assert y.shape == (3, 3, 2)
    assert nn.Concat(axis=-2).init(None, ((1, 2), (2, 2)))[2] == (3, 2)
    m, _ = nn.Multiply().apply({}, {}, (jnp.array([2.0, 3.0]), jnp.array([4.0, -1.0]), jnp.array([0.5, 2.0])))
    np.testing.assert_array_equal(m, [4.0, -6.0])


def test_multiply_gradient_is_the_other_factor():
    g = jax.grad(lambda a, b: nn.Multiply().apply({}, {}, (a, b))[0].sum(), argnums=(0, 1))
    da, db = g(jnp.array([2.0, 3.0]), jnp.array([5.0, 7.0]))
    np.testing.assert_array_equal(da, [5.0, 7.0])
    np.testing.assert_array_equal(db, [2.0, 3.0])


def test_elementwise_over_tuple_inputs(key):
    gate = nn.Elementwise(lambda h, g: h * fdl.activations.sigmoid(g), name="gate")
    assert gate.init(key, ((3,), (3,)))[2] == (3,)
    h, g = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 100.0, -100.0])
    np.testing.assert_allclose(gate.apply({}, {}, (h, g))[0], [0.5, 2.0, 0.0], atol=1e-6)


def test_gated_residual_block_composes_from_public_layers(keys):
    """The issue's block, y = x + (x W + b) * sigmoid(x V + c), with no hand-computed shapes."""
    block = nn.Residual(
        nn.Branch(
            nn.Dense(4, name="value"), nn.Serial(nn.Dense(4), nn.Sigmoid(), name="gate"), merge="product"
        ),
        name="gated",
    )
    model = nn.Serial(block, nn.Dense(2, name="head"))
    params, state, shape = model.init(next(keys), (4,))
    assert shape == (2,)
    assert nn.leaf_paths(params) == [
        "gated/gate/dense_0/b",
        "gated/gate/dense_0/w",
        "gated/value/b",
        "gated/value/w",
        "head/b",
        "head/w",
    ]
    x = jax.random.normal(next(keys), (5, 4))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["gated"])
    head = jax.tree.map(lambda a: np.asarray(a, np.float64), params["head"])
    x64 = np.asarray(x, np.float64)
    h = x64 @ p["value"]["w"] + p["value"]["b"]
    g = 1.0 / (1.0 + np.exp(-(x64 @ p["gate"]["dense_0"]["w"] + p["gate"]["dense_0"]["b"])))
    expected = (x64 + h * g) @ head["w"] + head["b"]
    np.testing.assert_allclose(model.apply(params, state, x)[0], expected, rtol=1e-5, atol=1e-6)


def test_repr_shows_the_tree_of_layers():
    model = nn.Serial(
        nn.Dense(8), nn.Relu(), nn.Residual(nn.Dense(8)), nn.Dropout(0.1, name="drop"), name="net"
    )
    assert repr(model) == (
        "Serial(\n"
        "  dense_0: Dense(features=8),\n"
        "  relu_0: Relu(),\n"
        "  residual_0: Residual(Dense(features=8)),\n"
        "  drop: Dropout(rate=0.1),\n"
        ")"
    )
    assert "function" not in repr(nn.MLP((4, 2), w_init=fdl.initializers.he_normal()))


def test_mask_keyword_reaches_every_child(key):
    seen = []

    def spy(name):
        def apply(params, state, x, *, key=None, train=False, mask=None):
            seen.append((name, mask))
            return x, state

        return nn.Layer(lambda k, s: ({}, {}, s), apply, name=name)

    model = nn.Serial(
        spy("a"), nn.Residual(spy("b")), nn.Branch(spy("c"), spy("d"), merge="sum"), nn.Dense(3)
    )
    params, state, _ = model.init(key, (4, 3))
    mask = jnp.array([True, True, False, False])
    model.apply(params, state, jnp.ones((4, 3)), mask=mask)
    assert [n for n, _ in seen] == ["a", "b", "c", "d"]
    assert all(m is mask for _, m in seen)


def test_residual_adds_the_input(key):
    model = nn.Residual(scale(3.0))
    np.testing.assert_array_equal(model.apply({}, {}, jnp.array([1.0, 2.0]))[0], [4.0, 8.0])
    # The Jacobian of x + f(x) is I + J_f: here 1 + 3.
    np.testing.assert_array_equal(
        jax.grad(lambda v: model.apply({}, {}, v)[0].sum())(jnp.ones(2)), [4.0, 4.0]
    )


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
    model = nn.MLP((4, 1))
    params, state, _ = model.init(next(keys), (3,))
    x, y = jax.random.normal(next(keys), (5, 3)), jax.random.normal(next(keys), (5, 1))
    f = nn.as_function(model)
    grads = jax.grad(lambda p: fdl.losses.mse(f(p, x), y, reduction="mean"))(params)
    manual = jax.grad(lambda p: jnp.mean((model.apply(p, state, x)[0] - y) ** 2))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), grads, manual)


def test_as_function_train_mode_uses_the_key(key):
    f = nn.as_function(nn.Dropout(0.5), train=True)
    y = f({}, jnp.ones(100), key)
    assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 2.0}


# ---------------------------------------------------------------- errors


def test_non_layer_arguments_are_rejected():
    with pytest.raises(
        TypeError,
        match=r"Serial argument 1 must be a fdl.nn.Layer, got <function relu.*wrap a plain function with fdl.nn.Elementwise\(fn\)",
    ):
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
    with pytest.raises(
        ValueError,
        match=r"Serial 'net' expects `params` to be a dict keyed by its children's names \(as its init returned\), got tuple",
    ):
        model.apply((params["dense_0"],), state, jnp.ones(2))
    with pytest.raises(
        KeyError,
        match=r"layer 'dense_1' \(Dense\): no entry 'w' in its params or state; pass the trees its "
        r"init returned \(a renamed or reordered part moves its entries\)",
    ):
        model.apply({"dense_0": params["dense_0"]}, state, jnp.ones(2))
    with pytest.raises(KeyError, match=r"layer 'dense_1' \(Dense\): no entry 'b' in its params"):
        model.apply({**params, "dense_1": {"w": params["dense_1"]["w"]}}, state, jnp.ones(2))
    renamed = {"dense_0": params["dense_0"], "head": params["dense_1"]}  # saved before a rename
    with pytest.raises(
        ValueError,
        match=r"^Serial 'net': `params` has entries \['head'\] that name none of its children "
        r"\['dense_0', 'dense_1'\]; pass the trees its init returned \(was a part renamed",
    ):
        model.apply(renamed, state, jnp.ones(2))
    parallel = nn.Parallel(nn.Dense(2), nn.Dense(2), name="net")
    with pytest.raises(ValueError, match=r"^Parallel 'net': `params` has entries \['head'\]"):
        parallel.apply(renamed, state, (jnp.ones(2), jnp.ones(2)))
    with pytest.raises(ValueError, match=r"^Serial 'net': `state` has entries \['bn'\]"):
        model.apply(params, {"bn": {}}, jnp.ones(2))


def test_duplicate_names_are_rejected():
    with pytest.raises(
        ValueError,
        match=r"Serial: duplicate child name 'head' among \['head', 'relu_0', 'head'\]; give each child its own `name=`",
    ):
        nn.Serial(nn.Dense(2, name="head"), nn.Relu(), nn.Dense(3, name="head"))
    with pytest.raises(ValueError, match=r"Branch: duplicate child name 'dense_0'"):
        nn.Branch(nn.Dense(2, name="dense_0"), nn.Dense(3))
    with pytest.raises(ValueError, match=r"a layer `name` must be a non-empty string .* got 'a/b'"):
        nn.Dense(2, name="a/b")


def test_errors_name_the_full_path_of_the_failing_layer(key):
    encoder = nn.Serial(nn.Dense(4), nn.Relu(), nn.Dense(4, name="proj"), name="encoder")
    model = nn.Serial(encoder, nn.Dense(2, name="head"))
    params, state, _ = model.init(key, (3,))
    params["encoder"]["proj"]["w"] = jnp.ones((5, 4))
    with pytest.raises(
        ValueError,
        match=r"^layer 'encoder/proj' \(Dense\): Dense expects inputs of shape \(\.\.\., 5\), got shape \(2, 4\) "
        r"\(its `w` is \(in, out\) = \(5, 4\)\)$",
    ):
        model.apply(params, state, jnp.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"^layer 'encoder/dense_0' \(Dense\): Dense needs inputs with at least one axis"
    ):
        model.init(key, ())


class _Bad:
    """Layers that break the contract in ways a batch size of 2 used to hide."""

    @staticmethod
    def returns_y_only():
        return nn.Layer(lambda k, s: ({}, {}, s), lambda p, s, x, **kw: x * 2.0, kind="Doubler")

    @staticmethod
    def changes_state_structure():
        def apply(params, state, x, *, key=None, train=False):
            return x, {"seen": jnp.sum(x, axis=-1)}

        return nn.Layer(lambda k, s: ({}, {}, s), apply, kind="Leaky")


@pytest.mark.parametrize("batch", [2, 5])
def test_a_child_that_returns_y_alone_is_named(batch, key):
    model = nn.Serial(nn.Dense(2), nn.Serial(_Bad.returns_y_only(), name="block"))
    params, state, _ = model.init(key, (2,))
    with pytest.raises(
        TypeError,
        match=rf"^layer 'block/doubler_0' \(Doubler\): `apply` must return the pair \(y, new_state\), got a ArrayImpl of shape \({batch}, 2\)",
    ):
        model.apply(params, state, jnp.ones((batch, 2)))


@pytest.mark.parametrize("batch", [2, 5])
def test_a_child_that_changes_its_state_structure_is_named(batch, key):
    model = nn.Serial(nn.Dense(2), _Bad.changes_state_structure())
    params, state, _ = model.init(key, (2,))
    with pytest.raises(
        ValueError,
        match=r"^layer 'leaky_0' \(Leaky\): `apply` returned a state whose structure differs from the state it was given: got PyTreeDef\(\{'seen': \*\}\), expected PyTreeDef\(\{\}\)",
    ):
        model.apply(params, state, jnp.ones((batch, 2)))


def test_residual_that_changes_shape(key):
    with pytest.raises(
        ValueError,
        match=r"Residual: the wrapped Dense must keep the shape for x \+ f\(x\), but maps \(3,\) to \(2,\)",
    ):
        nn.Residual(nn.Dense(2)).init(key, (3,))


def test_merge_errors(key):
    with pytest.raises(ValueError, match=r"`axis` must be a negative int .* got 0"):
        nn.Concat(axis=0)
    with pytest.raises(ValueError, match=r"`merge` must be one of 'concat', 'sum', 'product', got 'max'"):
        nn.Branch(nn.Identity(), merge="max")
    with pytest.raises(
        ValueError, match=r"Sum needs inputs of equal shapes for its sum, got shapes \(\(2,\), \(3,\)\)"
    ):
        nn.Sum().init(key, ((2,), (3,)))
    with pytest.raises(
        ValueError,
        match=r"Multiply needs inputs of equal shapes for its product, got shapes \(\(2,\), \(3,\)\)",
    ):
        nn.Multiply().init(key, ((2,), (3,)))
    with pytest.raises(ValueError, match=r"Multiply merges a tuple of inputs, got input_shape \(2, 3\)"):
        nn.Multiply().init(key, (2, 3))
    with pytest.raises(
        ValueError,
        match=r"Concat concatenates along axis -1: the other axes must match, got shapes \(\(2, 3\), \(4, 3\)\)",
    ):
        nn.Concat().init(key, ((2, 3), (4, 3)))
    with pytest.raises(
        ValueError, match=r"Branch needs inputs of equal shapes for its sum, got shapes \(\(2,\), \(3,\)\)"
    ):
        nn.Branch(nn.Dense(2), nn.Identity(), merge="sum").init(key, (3,))
    with pytest.raises(
        ValueError, match=r"Parallel of 2 layers expects `input_shape` to be a tuple of 2 entries"
    ):
        nn.Parallel(nn.Identity(), nn.Identity()).init(key, ((3,),))
    with pytest.raises(ValueError, match=r"`num` must be a positive integer, got 0"):
        nn.FanOut(0)


def test_elementwise_errors(key):
    with pytest.raises(
        ValueError,
        match=r"Elementwise\(<lambda>\) expects input_shape to be a shape or a tuple of shapes, got 3",
    ):
        nn.Elementwise(lambda x: x).init(key, 3)
    with pytest.raises(
        TypeError,
        match=r"Elementwise\(<lambda>\) could not be applied to inputs of shape\(s\) \(\(3,\), \(3,\)\)",
    ):
        nn.Elementwise(lambda x: x).init(key, ((3,), (3,)))


def test_flatten_errors(key):
    with pytest.raises(ValueError, match=r"`ndim` must be a positive integer, got 0"):
        nn.Flatten(0)
    with pytest.raises(ValueError, match=r"Flatten flattens the last 3 axes, got input_shape \(4, 4\)"):
        nn.Flatten(3).init(key, (4, 4))
    with pytest.raises(ValueError, match=r"Flatten flattens the last 3 axes, got an input of shape \(4, 4\)"):
        nn.Flatten(3).apply({}, {}, jnp.ones((4, 4)))


def test_mlp_errors():
    with pytest.raises(ValueError, match=r"`features` must list at least one layer width, got \(\)"):
        nn.MLP(())
    with pytest.raises(ValueError, match=r"`features\[1\]` must be a positive integer, got -3"):
        nn.MLP((4, -3))
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got 1.0"):
        nn.MLP((4, 2), dropout_rate=1.0)


def test_mlp_structure(key):
    model = nn.MLP((8, 8, 3), dropout_rate=0.2)
    params, _, out_shape = model.init(key, (5,))
    assert [name for name, _ in model.children] == [
        "dense_0",
        "relu_0",
        "dropout_0",
        "dense_1",
        "relu_1",
        "dropout_1",
        "dense_2",
    ]
    assert out_shape == (3,)
    assert {k: p["w"].shape for k, p in params.items()} == {
        "dense_0": (5, 8),
        "dense_1": (8, 8),
        "dense_2": (8, 3),
    }
