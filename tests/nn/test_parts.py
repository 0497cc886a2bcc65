"""Reaching into a model: paths, sub-models, swaps, selection, partition, eval mode, summary."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import nn


def small_cnn(num_classes=10):
    """A CNN with named parts, as a user builds one for transfer learning."""
    block = lambda f, name: nn.Serial(nn.Conv2D(f, 3, padding="SAME"), nn.BatchNorm(), nn.Relu(), name=name)
    body = nn.Serial(block(4, "conv_1"), block(8, "conv_2"), nn.Flatten(3), name="encoder")
    return nn.Serial(body, nn.Dense(num_classes, name="head"))


def test_paths_name_the_parts_the_user_named(key):
    model = small_cnn()
    params, state, _ = model.init(key, (6, 6, 1))
    assert nn.leaf_paths(params) == [
        "encoder/conv_1/batch_norm_0/bias",
        "encoder/conv_1/batch_norm_0/scale",
        "encoder/conv_1/conv2d_0/b",
        "encoder/conv_1/conv2d_0/w",
        "encoder/conv_2/batch_norm_0/bias",
        "encoder/conv_2/batch_norm_0/scale",
        "encoder/conv_2/conv2d_0/b",
        "encoder/conv_2/conv2d_0/w",
        "head/b",
        "head/w",
    ]
    assert nn.leaf_paths(state) == [
        "encoder/conv_1/batch_norm_0/mean",
        "encoder/conv_1/batch_norm_0/var",
        "encoder/conv_2/batch_norm_0/mean",
        "encoder/conv_2/batch_norm_0/var",
    ]
    assert nn.layer_paths(model)[:4] == [
        "encoder",
        "encoder/conv_1",
        "encoder/conv_1/conv2d_0",
        "encoder/conv_1/batch_norm_0",
    ]


def test_sub_model_runs_alone_on_its_params_and_state(keys):
    model = small_cnn()
    params, state, _ = model.init(next(keys), (6, 6, 1))
    x = jax.random.normal(next(keys), (3, 6, 6, 1))
    encoder = nn.layer_at(model, "encoder")
    features, _ = encoder.apply(nn.tree_at(params, "encoder"), nn.tree_at(state, "encoder"), x)
    head = nn.layer_at(model, "head")
    logits, _ = head.apply(nn.tree_at(params, "head"), {}, features)
    np.testing.assert_allclose(logits, model.apply(params, state, x)[0], rtol=1e-6)


def test_select_patterns(key):
    params, _, _ = small_cnn().init(key, (6, 6, 1))
    chosen = lambda where: [
        p for p, m in zip(nn.leaf_paths(params), jax.tree.leaves(nn.select(params, where)), strict=False) if m
    ]
    assert chosen("**/b") == ["encoder/conv_1/conv2d_0/b", "encoder/conv_2/conv2d_0/b", "head/b"]
    assert chosen("head") == chosen("head/**") == ["head/b", "head/w"]
    assert chosen("encoder/*/conv2d_*/w") == ["encoder/conv_1/conv2d_0/w", "encoder/conv_2/conv2d_0/w"]
    assert chosen(["head/w", "**/scale"]) == [
        "encoder/conv_1/batch_norm_0/scale",
        "encoder/conv_2/batch_norm_0/scale",
        "head/w",
    ]
    assert chosen(lambda path, leaf: leaf.ndim == 4) == [
        "encoder/conv_1/conv2d_0/w",
        "encoder/conv_2/conv2d_0/w",
    ]
    assert len(chosen("**")) == 10


def test_partition_and_combine_round_trip(key):
    params, _, _ = small_cnn().init(key, (6, 6, 1))
    trainable, frozen = nn.partition(params, "head")
    assert nn.leaf_paths(trainable) == ["head/b", "head/w"]
    assert len(nn.leaf_paths(frozen)) == 8
    jax.tree.map(np.testing.assert_array_equal, nn.combine(trainable, frozen), params)
    with pytest.raises(ValueError, match=r"combine: two trees hold a leaf at the same path"):
        nn.combine(params, trainable)


def test_swap_replaces_and_reinitializes_just_that_part(keys):
    model = small_cnn(5)
    params, state, _ = model.init(next(keys), (6, 6, 1))
    new_model, new_params, new_state = nn.swap(
        model, params, state, "head", nn.Dense(10), key=next(keys), input_shape=(6, 6, 1)
    )
    assert new_params["head"]["w"].shape == (6 * 6 * 8, 10)
    jax.tree.map(np.testing.assert_array_equal, new_params["encoder"], params["encoder"])
    jax.tree.map(np.testing.assert_array_equal, new_state, state)
    assert repr(nn.layer_at(new_model, "head")) == "Dense(features=10)"
    y, _ = new_model.apply(new_params, new_state, jnp.ones((2, 6, 6, 1)))
    assert y.shape == (2, 10)


def test_replace_layer_keeps_every_other_path(key):
    model = small_cnn()
    swapped = nn.replace_layer(model, "encoder/conv_2/conv2d_0", nn.Conv2D(8, 5, padding="SAME"))
    assert nn.layer_paths(swapped) == nn.layer_paths(model)
    params, _, _ = swapped.init(key, (6, 6, 1))
    assert params["encoder"]["conv_2"]["conv2d_0"]["w"].shape == (5, 5, 4, 8)


def test_eval_mode_keeps_a_frozen_batch_norm_statistics(keys):
    model = nn.eval_mode(small_cnn(), "encoder")
    params, state, _ = model.init(next(keys), (6, 6, 1))
    x = jax.random.normal(next(keys), (4, 6, 6, 1))
    y_train, new_state = model.apply(params, state, x, key=next(keys), train=True)
    jax.tree.map(np.testing.assert_array_equal, new_state, state)
    y_eval, _ = model.apply(params, state, x)
    np.testing.assert_array_equal(y_train, y_eval)
    # without eval_mode the same batch moves the running statistics
    _, moved = small_cnn().apply(params, state, x, key=next(keys), train=True)
    assert not np.allclose(
        moved["encoder"]["conv_1"]["batch_norm_0"]["mean"], state["encoder"]["conv_1"]["batch_norm_0"]["mean"]
    )


# ------------------------------------------------------------------------------------- errors


def test_unknown_path_lists_the_nearest(key):
    model = small_cnn()
    params, _, _ = model.init(key, (6, 6, 1))
    with pytest.raises(KeyError, match=r"no layer at 'encoder/conv_3'; nearest: \[.*'encoder/conv_1'"):
        nn.layer_at(model, "encoder/conv_3")
    with pytest.raises(
        KeyError, match=r"no path 'haed/w' in the tree \('haed' is missing\); nearest: \['head/w', .*'head'"
    ):
        nn.tree_at(params, "haed/w")
    with pytest.raises(KeyError, match=r"no layer at 'decoder'"):
        nn.replace_layer(model, "decoder", nn.Dense(2))
    with pytest.raises(TypeError, match=r"`path` must be a string like 'encoder/conv_1', got 3"):
        nn.layer_at(model, 3)
    with pytest.raises(TypeError, match=r"replace_layer: `new` must be a fdl.nn.Layer, got 3"):
        nn.replace_layer(model, "head", 3)
    with pytest.raises(TypeError, match=r"layer_at: `model` must be a fdl.nn.Layer, got 'cnn'"):
        nn.layer_at("cnn", "head")


def test_empty_pattern_match_lists_the_nearest(key):
    params, _, _ = small_cnn().init(key, (6, 6, 1))
    with pytest.raises(
        ValueError, match=r"the pattern 'encoder/conv_3/\*\*' matches no leaf; nearest: \[.*'encoder/conv_1"
    ):
        nn.select(params, "encoder/conv_3/**")
    with pytest.raises(ValueError, match=r"the pattern 'heads' matches no leaf"):
        nn.partition(params, ["head", "heads"])
    with pytest.raises(ValueError, match=r"`where` must be a path pattern, a list of them, a predicate"):
        nn.select(params, {"head": True})


def test_swapped_part_whose_output_does_not_fit_names_both_shapes(keys):
    model = small_cnn()
    params, state, _ = model.init(next(keys), (6, 6, 1))
    with pytest.raises(
        ValueError,
        match=r"swap: the new part at 'encoder' outputs \(12,\) where the old one output \(288,\), "
        r"so the parameter 'head/w' that follows it would need shape \(12, 10\), not its \(288, 10\)",
    ):
        nn.swap(
            model,
            params,
            state,
            "encoder",
            nn.Serial(nn.Flatten(3), nn.Dense(12)),
            key=next(keys),
            input_shape=(6, 6, 1),
        )


# ------------------------------------------------------------------------------------ summary


def test_summary_against_hand_counted_numbers():
    model = nn.Serial(
        nn.Serial(nn.Dense(32), nn.Relu(), name="body"), nn.Dense(10, name="head", use_bias=False)
    )
    s = nn.summary(model, (64,))
    rows = {r.path: r for r in s.rows}
    assert list(rows) == ["", "body", "body/dense_0", "body/relu_0", "head"]
    assert rows["body/dense_0"].params == 64 * 32 + 32
    assert rows["head"].params == 32 * 10
    assert rows[""].params == s.total_params == 64 * 32 + 32 + 32 * 10
    assert rows["body"].output_shape == (32,) and rows[""].output_shape == (10,)
    assert rows["head"].dtypes == ("float32",) and rows["body/relu_0"].dtypes == ()
    # matmuls: 2 * (64 * 32 + 32 * 10) multiply-adds; bias adds and relu: 32 + 32 (a few more
    # where XLA counts the relu's compare and select apart)
    matmuls = 2 * (64 * 32 + 32 * 10)
    assert matmuls + 64 <= s.flops <= matmuls + 3 * 32 + 32
    text = str(s)
    assert "body/dense_0  Dense" in text and "total parameters: 2,400" in text
    assert "FLOPs per example (XLA cost analysis)" in text


def test_summary_of_a_batch_norm_cnn_counts_its_parameters_not_its_state():
    s = nn.summary(small_cnn(), (6, 6, 1), flops=False)
    rows = {r.path: r for r in s.rows}
    assert rows["encoder/conv_1/conv2d_0"].params == 3 * 3 * 1 * 4 + 4
    assert rows["encoder/conv_1/batch_norm_0"].params == 2 * 4
    assert rows["head"].params == 6 * 6 * 8 * 10 + 10
    assert s.flops is None


def test_summary_of_models_with_several_inputs_counts_their_flops():
    # two inputs: each Dense's matmul counted once, 2 * (4 * 2 + 5 * 3) FLOPs at least
    s = nn.summary(nn.Parallel(nn.Dense(2), nn.Dense(3)), ((4,), (5,)))
    assert s.total_params == 4 * 2 + 2 + 5 * 3 + 3
    assert 2 * (4 * 2 + 5 * 3) <= s.flops <= 2 * (4 * 2 + 5 * 3) + 2 * (2 + 3)
    # cross-attention: queries (5, 8), keys/values (6, 4); then with a bool key mask as a third input
    attention = nn.MultiHeadAttention(2)
    projections = 2 * (5 * 8 * 8 + 2 * 6 * 4 * 8 + 5 * 8 * 8)  # query, key and value, output
    scores = 2 * 2 * (5 * 6 * 4) * 2  # q k^T and weights @ v, 2 heads of width 4
    flops = nn.summary(attention, ((5, 8), (6, 4))).flops
    assert projections + scores <= flops <= 1.5 * (projections + scores)
    masked = nn.summary(attention, ((5, 8), (6, 4), (6,)), dtype=(jnp.float32, jnp.float32, jnp.bool_))
    assert masked.total_params == nn.summary(attention, ((5, 8), (6, 4)), flops=False).total_params
    assert masked.flops >= projections + scores
    with pytest.raises(ValueError, match=r"the key/value mask must be bool"):
        nn.summary(attention, ((5, 8), (6, 4), (6,)))  # one dtype for all: the mask is float32
    with pytest.raises(ValueError, match=r"`dtype` must be one dtype or one per input, got 2 dtypes for 3"):
        nn.summary(attention, ((5, 8), (6, 4), (6,)), dtype=(jnp.float32, jnp.bool_))


def test_summary_errors():
    with pytest.raises(TypeError, match=r"summary: `model` must be a fdl.nn.Layer, got 'mlp'"):
        nn.summary("mlp", (3,))
    with pytest.raises(
        ValueError, match=r"layer 'dense_0' \(Dense\): Dense needs inputs with at least one axis"
    ):
        nn.summary(nn.Serial(nn.Dense(2)), ())


def test_param_count(key):
    params, _, _ = fdl.nn.MLP((8, 2)).init(key, (3,))
    assert nn.param_count(params) == 3 * 8 + 8 + 8 * 2 + 2
