"""The train-step factory: exact agreement with a hand-written optax step, donation, tracing."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl
from fdl import nn


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's adam raises b1 to its int32 step count, which strict promotion rejects: the
    train step is checked with optax's optimizers, so this module uses standard promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def regression_problem(keys):
    model = nn.mlp((16, 1), activation=fdl.activations.tanh)
    params, state, _ = model.init(next(keys), (3,))
    x = jax.random.normal(next(keys), (32, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))

    def loss_fn(params, batch, key):
        xb, yb = batch
        return fdl.losses.mse(model.apply(params, state, xb)[0], yb, reduction="mean")

    return params, (x, y), loss_fn


def test_step_equals_hand_written_optax_step(keys):
    params, batch, loss_fn = regression_problem(keys)
    optimizer = optax.adam(1e-2)
    step = fdl.train.make_train_step(loss_fn, optimizer, donate=False)
    opt_state = optimizer.init(params)
    ref_params, ref_state = params, opt_state
    key = next(keys)
    for _ in range(5):
        params, opt_state, metrics = step(params, opt_state, batch, key)
        ref_loss, grads = jax.value_and_grad(loss_fn)(ref_params, batch, key)
        updates, ref_state = optimizer.update(grads, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, updates)
        np.testing.assert_allclose(metrics["loss"], ref_loss, rtol=1e-6)
        chex.assert_trees_all_close(params, ref_params, rtol=1e-6, atol=1e-7)
        chex.assert_trees_all_close(opt_state, ref_state, rtol=1e-6, atol=1e-7)


def test_training_reduces_the_loss(keys):
    params, batch, loss_fn = regression_problem(keys)
    optimizer = optax.adam(1e-2)
    step = fdl.train.make_train_step(loss_fn, optimizer)
    opt_state = optimizer.init(params)
    first = None
    for _ in range(200):
        params, opt_state, metrics = step(params, opt_state, batch, None)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < first / 10


def test_params_and_state_are_donated(keys):
    params, batch, loss_fn = regression_problem(keys)
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)
    donating = fdl.train.make_train_step(loss_fn, optimizer)
    keeping = fdl.train.make_train_step(loss_fn, optimizer, donate=False)
    kept_params = jax.tree.map(jnp.copy, params)
    kept_state = jax.tree.map(jnp.copy, opt_state)
    keeping(kept_params, kept_state, batch, None)
    assert not any(x.is_deleted() for x in jax.tree.leaves((kept_params, kept_state)))
    donating(params, opt_state, batch, None)
    assert all(x.is_deleted() for x in jax.tree.leaves(params))
    assert all(x.is_deleted() for x in jax.tree.leaves(opt_state) if x.size > 0)


def test_no_retrace_on_later_calls(keys):
    params, batch, loss_fn = regression_problem(keys)
    counted = chex.assert_max_traces(loss_fn, n=1)
    optimizer = optax.sgd(0.1)
    step = fdl.train.make_train_step(counted, optimizer)
    opt_state = optimizer.init(params)
    for _ in range(4):
        params, opt_state, _ = step(params, opt_state, batch, next(keys))


def test_aux_metrics_and_dropout_key(keys):
    model = nn.mlp((32, 2), dropout_rate=0.5)
    params, state, _ = model.init(next(keys), (4,))
    x = jax.random.normal(next(keys), (16, 4))
    y = jnp.arange(16) % 2

    def loss_fn(params, batch, key):
        logits, _ = model.apply(params, state, batch[0], key=key, train=True)
        per_example = fdl.losses.softmax_cross_entropy_with_integer_labels(logits, batch[1])
        loss = jnp.mean(per_example)
        return loss, {"accuracy": fdl.metrics.accuracy(logits, batch[1])}

    step = fdl.train.make_train_step(loss_fn, optax.sgd(0.0), has_aux=True, donate=False)
    opt_state = optax.sgd(0.0).init(params)
    k1, k2 = next(keys), next(keys)
    _, _, m1 = step(params, opt_state, (x, y), k1)
    _, _, m1_again = step(params, opt_state, (x, y), k1)
    _, _, m2 = step(params, opt_state, (x, y), k2)
    assert set(m1) == {"loss", "accuracy"}
    assert float(m1["loss"]) == float(m1_again["loss"])  # same key: same dropout mask
    assert float(m1["loss"]) != float(m2["loss"])  # another key: another mask


def test_bad_arguments():
    with pytest.raises(TypeError, match=r"make_train_step: `loss_fn` must be callable, got 3"):
        fdl.train.make_train_step(3, optax.sgd(0.1))
    with pytest.raises(TypeError, match=r"`optimizer` must have optax's \(init, update\) interface \(e.g. fdl.optim.adam\(1e-3\) or optax.adam\(1e-3\)\), got 'adam'"):
        fdl.train.make_train_step(lambda p, b, k: 0.0, "adam")


def counting_scale_layer():
    """A layer with state: y = w * x, and the state counts the training calls (a stand-in for
    batch norm's running statistics, so the step's plumbing is tested on its own)."""

    def init(key, input_shape):
        return {"w": jnp.ones(input_shape)}, {"calls": jnp.zeros((), jnp.int32)}, input_shape

    def apply(params, state, x, *, key=None, train=False):
        new_state = {"calls": state["calls"] + 1} if train else state
        return jnp.broadcast_to(params["w"], x.shape) * x, new_state

    return nn.Layer(init, apply, "counting_scale")


def test_stateful_step_threads_the_layer_state_and_equals_a_hand_written_step(keys):
    model = nn.Serial(counting_scale_layer(), nn.Dense(1))
    params, state, _ = model.init(next(keys), (3,))
    x = jax.random.normal(next(keys), (8, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))

    def loss_fn(params, state, batch, key):
        out, state = model.apply(params, state, batch[0], train=True)
        return fdl.losses.mse(out, batch[1], reduction="mean"), (state, {"mean_out": jnp.mean(out)})

    optimizer = fdl.optim.adam(1e-2)
    step = fdl.train.make_stateful_train_step(loss_fn, optimizer, donate=False)
    opt_state = optimizer.init(params)
    ref = (params, state, opt_state)
    for t in range(1, 4):
        params, state, opt_state, metrics = step(params, state, opt_state, (x, y), None)
        (loss, (ref_state, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ref[0], ref[1], (x, y), None
        )
        updates, ref_opt = optimizer.update(grads, ref[2], ref[0])
        ref = (fdl.optim.apply_updates(ref[0], updates), ref_state, ref_opt)
        assert int(state[0]["calls"]) == t
        np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
        np.testing.assert_allclose(metrics["mean_out"], aux["mean_out"], rtol=1e-6)
        chex.assert_trees_all_close((params, state, opt_state), ref, rtol=1e-6, atol=1e-7)


def test_stateful_step_donates_and_compiles_once(keys):
    model = nn.Serial(counting_scale_layer(), nn.Dense(2))
    params, state, _ = model.init(next(keys), (3,))
    batch = jax.random.normal(next(keys), (4, 3))

    def loss_fn(params, state, batch, key):
        out, state = model.apply(params, state, batch, train=True)
        return jnp.mean(out**2), (state, {})

    counted = chex.assert_max_traces(loss_fn, n=1)
    optimizer = fdl.optim.sgd(0.1)
    step = fdl.train.make_stateful_train_step(counted, optimizer)
    opt_state = optimizer.init(params)
    first = (params, state)
    for _ in range(3):
        params, state, opt_state, metrics = step(params, state, opt_state, batch, None)
    assert all(x.is_deleted() for x in jax.tree.leaves(first))
    assert int(state[0]["calls"]) == 3 and set(metrics) == {"loss"}


def test_stateful_step_bad_arguments():
    with pytest.raises(
        TypeError, match=r"make_stateful_train_step: `loss_fn` must be callable, got None"
    ):
        fdl.train.make_stateful_train_step(None, fdl.optim.sgd(0.1))
    with pytest.raises(TypeError, match=r"make_stateful_train_step: `optimizer` must have optax's"):
        fdl.train.make_stateful_train_step(lambda *a: 0.0, object())
