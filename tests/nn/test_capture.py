"""Reading values out of a model (fdl.nn.capture): part outputs and sown values, by path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import nn


def dense(x, p):
    """``x @ w + b`` by hand (the bias broadcast explicitly)."""
    return x @ p["w"] + p["b"].reshape((1,) * (x.ndim - 1) + (-1,))


def named_mlp():
    body = nn.Serial(nn.Dense(5, name="hidden"), nn.Relu(name="act"), name="body")
    return nn.Serial(body, nn.Dense(3, name="head"))


def test_captured_outputs_equal_the_parts_applied_by_hand(key):
    model = named_mlp()
    params, state, _ = model.init(key, (4,))
    x = jax.random.normal(jax.random.key(1), (6, 4))
    y, new_state, captured = nn.capture(model, ["body/hidden", "body"])(params, state, x)
    hidden = dense(x, params["body"]["hidden"])
    np.testing.assert_allclose(captured["body/hidden"], hidden, rtol=1e-6)
    np.testing.assert_allclose(captured["body"], jnp.maximum(hidden, 0), rtol=1e-6)
    assert sorted(captured) == ["body", "body/hidden"]  # a pattern names only what it matches
    y_plain, _ = model.apply(params, state, x)
    assert jnp.array_equal(y, y_plain) and new_state == state


def test_patterns_globs_and_predicates(key):
    model = named_mlp()
    params, state, _ = model.init(key, (4,))
    x = jnp.ones((2, 4))
    _, _, inside = nn.capture(model, "body/**")(params, state, x)
    assert sorted(inside) == ["body", "body/act", "body/hidden"]  # ** matches zero segments too
    _, _, by_predicate = nn.capture(model, lambda path: path.endswith("head"))(params, state, x)
    assert list(by_predicate) == ["head"]


def test_capture_composes_with_jit_grad_and_vmap(key):
    model = named_mlp()
    params, state, _ = model.init(key, (4,))
    x = jax.random.normal(jax.random.key(2), (6, 4))
    apply = nn.capture(model, "body/hidden")
    eager = apply(params, state, x)[2]["body/hidden"]
    jitted = jax.jit(apply)(params, state, x)[2]["body/hidden"]
    np.testing.assert_allclose(jitted, eager, rtol=1e-6)
    mapped = jax.vmap(lambda v: apply(params, state, v)[2]["body/hidden"])(x)
    np.testing.assert_allclose(mapped, eager, rtol=1e-6)

    def hidden_energy(p):
        return jnp.sum(apply(p, state, x)[2]["body/hidden"] ** 2)

    grad = jax.grad(hidden_energy)(params)
    hidden = dense(x, params["body"]["hidden"])
    np.testing.assert_allclose(grad["body"]["hidden"]["w"], 2 * x.T @ hidden, rtol=1e-5)
    assert not jnp.any(grad["head"]["w"])  # the head does not touch the captured value


def test_sown_attention_weights_are_the_softmax_of_the_projections(key):
    model = nn.Serial(nn.MultiHeadAttention(2, name="attention"))
    params, state, _ = model.init(key, (5, 4))
    x = jax.random.normal(jax.random.key(3), (3, 5, 4))
    _, _, captured = nn.capture(model, "attention/attention_weights")(params, state, x)
    p = params["attention"]
    q = dense(x, p["query"]).reshape(3, 5, 2, 2)
    k = dense(x, p["key"]).reshape(3, 5, 2, 2)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(2.0)
    np.testing.assert_allclose(captured["attention/attention_weights"], jax.nn.softmax(scores, -1), rtol=1e-5)


def test_a_layer_of_ones_own_sows_a_value_under_its_path(key):
    def apply(params, state, x, **kwargs):
        nn.sow("norm", jnp.linalg.norm(x, axis=-1))  # does nothing outside a capture
        return 2 * x, state

    double = nn.Layer(lambda k, shape: ({}, {}, shape), apply, name="double")
    model = nn.Serial(nn.Dense(3, name="dense"), double)
    params, state, _ = model.init(key, (4,))
    x = jax.random.normal(jax.random.key(4), (5, 4))
    y, _ = model.apply(params, state, x)
    _, _, captured = nn.capture(model, "double/norm")(params, state, x)
    np.testing.assert_allclose(captured["double/norm"], jnp.linalg.norm(y / 2, axis=-1), rtol=1e-6)


def test_nothing_leaks_out_of_a_recurrent_scan(key):
    # a cell whose step applies a Serial: its child's output exists only inside the scan's body
    inner = nn.Serial(nn.Dense(4, name="inner"))

    def step(params, h, x_t):
        h = jnp.tanh(inner.apply(params, {}, x_t)[0] + h)
        return h, h

    cell = nn.Cell(
        init=lambda k, features: inner.init(k, (features,))[0],
        step=step,
        initial_carry=lambda batch_shape=(), dtype=jnp.float32: jnp.zeros((*batch_shape, 4), dtype),
    )
    model = nn.Serial(nn.Dense(3, name="embed"), nn.Recurrent(cell, name="rnn"))
    params, state, _ = model.init(key, (7, 2))
    x = jnp.ones((2, 7, 2))
    y, _, captured = jax.jit(nn.capture(model, "**"))(params, state, x)
    assert sorted(captured) == ["embed", "rnn"]
    assert jnp.array_equal(captured["rnn"], y) and y.shape == (2, 7, 4)


def test_bad_input_messages(key):
    model = named_mlp()
    params, state, _ = model.init(key, (4,))
    x = jnp.ones((2, 4))
    with pytest.raises(
        ValueError, match=r"the pattern 'body/hiden' matches no layer output.*nearest: \['body/hidden'"
    ):
        nn.capture(model, "body/hiden")(params, state, x)
    with pytest.raises(
        TypeError, match=r"`where` must be a path pattern, a non-empty list of them, or a predicate"
    ):
        nn.capture(model, [])
    with pytest.raises(TypeError, match=r"must be a fdl.nn.Layer"):
        nn.capture("not a model", "head")
    twice = nn.composite(
        {"dense": nn.Dense(4)}, lambda call, x, *, train, mask: call("dense", call("dense", x))
    )
    p2, s2, _ = twice.init(key, (4,))
    with pytest.raises(ValueError, match=r"the path 'dense' was produced twice in one apply"):
        nn.capture(twice, "dense")(p2, s2, x)
