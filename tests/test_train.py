"""The one train step: exact agreement with a hand-written optax step, the state, donation, tracing,
the loss signature and its errors, freezing."""

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
    model = nn.MLP((16, 1), activation=fdl.activations.tanh)
    params, state, _ = model.init(next(keys), (3,))
    x = jax.random.normal(next(keys), (32, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))

    def loss(params, batch, key):
        xb, yb = batch
        return fdl.losses.mse(model.apply(params, state, xb)[0], yb, reduction="mean")

    return params, (x, y), loss


def test_step_equals_hand_written_optax_step(keys):
    params, batch, loss = regression_problem(keys)
    optimizer = optax.adam(1e-2)
    step = fdl.train.make_train_step(fdl.train.simple_loss(loss), optimizer)
    state = fdl.train.init_state(params, optimizer)
    ref_params, ref_state = params, optimizer.init(params)
    key = next(keys)
    for t in range(1, 6):
        state, metrics = step(state, batch, key)
        ref_loss, grads = jax.value_and_grad(loss)(ref_params, batch, key)
        updates, ref_state = optimizer.update(grads, ref_state, ref_params)
        ref_params = optax.apply_updates(ref_params, updates)
        np.testing.assert_allclose(metrics["loss"], ref_loss, rtol=1e-6)
        chex.assert_trees_all_close(state.params, ref_params, rtol=1e-6, atol=1e-7)
        chex.assert_trees_all_close(state.opt_state, ref_state, rtol=1e-6, atol=1e-7)
        assert int(state.step) == t


def test_training_reduces_the_loss(keys):
    params, batch, loss = regression_problem(keys)
    optimizer = optax.adam(1e-2)
    step = fdl.train.make_train_step(fdl.train.simple_loss(loss), optimizer)
    state = fdl.train.init_state(params, optimizer)
    first = None
    for _ in range(200):
        state, metrics = step(state, batch, None)
        first = float(metrics["loss"]) if first is None else first
    assert float(metrics["loss"]) < first / 10


def test_the_state_is_donated_but_the_callers_arrays_are_not(keys):
    params, batch, loss = regression_problem(keys)
    optimizer = optax.adam(1e-2)
    init_params = params  # a user keeps these to restart from
    state = fdl.train.init_state(params, optimizer)
    first = state
    donating = fdl.train.make_train_step(fdl.train.simple_loss(loss), optimizer)
    state, _ = donating(state, batch, None)
    assert all(x.is_deleted() for x in jax.tree.leaves(first.params))
    assert not any(x.is_deleted() for x in jax.tree.leaves(init_params))
    restart = fdl.train.init_state(init_params, optimizer)  # works: init_state copied them
    keeping = fdl.train.make_train_step(fdl.train.simple_loss(loss), optimizer, donate=False)
    keeping(restart, batch, None)
    assert not any(x.is_deleted() for x in jax.tree.leaves(restart))


def test_reusing_a_donated_state_says_why(keys):
    params, batch, loss = regression_problem(keys)
    optimizer = optax.sgd(0.1)
    step = fdl.train.make_train_step(fdl.train.simple_loss(loss), optimizer)
    old = fdl.train.init_state(params, optimizer)
    step(old, batch, None)
    with pytest.raises(
        RuntimeError,
        match=r"the train step was given a state whose arrays were donated "
        r"to an earlier call .* pass the state that the last call returned, or build "
        r"the step with donate=False",
    ):
        step(old, batch, None)


def test_no_retrace_on_later_calls(keys):
    params, batch, loss = regression_problem(keys)
    counted = chex.assert_max_traces(fdl.train.simple_loss(loss), n=1)
    optimizer = optax.sgd(0.1)
    step = fdl.train.make_train_step(counted, optimizer)
    state = fdl.train.init_state(params, optimizer)
    for _ in range(4):
        state, _ = step(state, batch, next(keys))


def test_aux_metrics_and_dropout_key(keys):
    model = nn.MLP((32, 2), dropout_rate=0.5)
    params, _, _ = model.init(next(keys), (4,))
    x = jax.random.normal(next(keys), (16, 4))
    y = jnp.arange(16) % 2

    def loss(params, batch, key):
        logits, _ = model.apply(params, {}, batch[0], key=key, train=True)
        per_example = fdl.losses.softmax_cross_entropy_with_integer_labels(logits, batch[1])
        return jnp.mean(per_example), {"accuracy": fdl.metrics.accuracy(logits, batch[1])}

    optimizer = optax.sgd(0.0)
    step = fdl.train.make_train_step(fdl.train.simple_loss(loss), optimizer, donate=False)
    state = fdl.train.init_state(params, optimizer)
    k1, k2 = next(keys), next(keys)
    _, m1 = step(state, (x, y), k1)
    _, m1_again = step(state, (x, y), k1)
    _, m2 = step(state, (x, y), k2)
    assert set(m1) == {"loss", "accuracy"}
    assert float(m1["loss"]) == float(m1_again["loss"])  # same key: same dropout mask
    assert float(m1["loss"]) != float(m2["loss"])  # another key: another mask


SIGNATURE = r"loss_fn\(params, layer_state, batch, key\) -> \(loss, \(layer_state, metrics\)\)"


def test_bad_arguments():
    with pytest.raises(
        TypeError, match=r"make_step: `loss_fn` must be callable \(" + SIGNATURE + r"\), got 3"
    ):
        fdl.train.make_train_step(3, optax.sgd(0.1))
    with pytest.raises(
        TypeError,
        match=r"`optimizer` must have optax's \(init, update\) interface \(e.g. fdl.optim.adam\(1e-3\) or optax.adam\(1e-3\)\), got 'adam'",
    ):
        fdl.train.make_train_step(lambda p, s, b, k: 0.0, "adam")
    with pytest.raises(TypeError, match=r"init_state: `optimizer` must have optax's"):
        fdl.train.init_state({}, object())
    with pytest.raises(TypeError, match=r"simple_loss: `fn` must be callable, got None"):
        fdl.train.simple_loss(None)


def test_a_three_argument_loss_names_the_signature_and_the_adapter():
    def loss3(params, batch, key):
        return jnp.sum(params)

    with pytest.raises(
        TypeError,
        match=r"make_step: `loss_fn` must take 4 arguments, "
        + SIGNATURE
        + r"; got 'loss3' with signature \(params, batch, key\)\. .*fdl.train.simple_loss\(loss_fn\)",
    ):
        fdl.train.make_train_step(loss3, optax.sgd(0.1))


@pytest.mark.parametrize(
    "loss_fn, match",
    [
        (lambda p, s, b, k: jnp.sum(p), r"got an array of shape \(\).*fdl.train.simple_loss"),
        (lambda p, s, b, k: (jnp.sum(p), {}), r"got a tuple of 2.*fdl.train.simple_loss"),
        (lambda p, s, b, k: (p * 2.0, (s, {})), r"with a scalar loss; got a loss of shape \(3,\)"),
        (lambda p, s, b, k: (jnp.sum(p), (s, 1.0)), r"with metrics a dict of scalars; got metrics float"),
        (
            lambda p, s, b, k: (jnp.sum(p), ({"n": 1.0}, {})),
            r"the returned layer state must have the structure",
        ),
    ],
    ids=["scalar", "loss_and_metrics", "per_example", "metrics_not_dict", "state_changed"],
)
def test_a_loss_that_returns_the_wrong_shape_is_a_clear_error(loss_fn, match):
    optimizer = optax.sgd(0.1)
    step = fdl.train.make_train_step(loss_fn, optimizer, donate=False)
    state = fdl.train.init_state(jnp.ones(3), optimizer)
    with pytest.raises(
        TypeError, match=r"`loss_fn` must return \(loss, \(layer_state, metrics\)\) .*" + match
    ):
        step(state, None, None)


def test_simple_loss_keeps_the_model_for_fit():
    model = nn.Dense(2)

    def loss(params, batch, key):
        return 0.0

    loss.model = model
    assert fdl.train.simple_loss(loss).model is model


def counting_scale_layer():
    """A layer with state: y = w * x, and the state counts the training calls (a stand-in for
    batch norm's running statistics, so the step's plumbing is tested on its own)."""

    def init(key, input_shape):
        return {"w": jnp.ones(input_shape)}, {"calls": jnp.zeros((), jnp.int32)}, input_shape

    def apply(params, state, x, *, key=None, train=False):
        new_state = {"calls": state["calls"] + 1} if train else state
        return jnp.broadcast_to(params["w"], x.shape) * x, new_state

    return nn.Layer(init, apply, name="counting_scale")


def test_stateful_step_threads_the_layer_state_and_equals_a_hand_written_step(keys):
    model = nn.Serial(counting_scale_layer(), nn.Dense(1))
    params, state, _ = model.init(next(keys), (3,))
    x = jax.random.normal(next(keys), (8, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))

    def loss_fn(params, state, batch, key):
        out, state = model.apply(params, state, batch[0], train=True)
        return fdl.losses.mse(out, batch[1], reduction="mean"), (state, {"mean_out": jnp.mean(out)})

    optimizer = fdl.optim.adam(1e-2)
    step = fdl.train.make_train_step(loss_fn, optimizer)
    train_state = fdl.train.init_state(params, optimizer, layer_state=state)
    ref = (params, state, optimizer.init(params))
    for t in range(1, 4):
        train_state, metrics = step(train_state, (x, y), None)
        params, state, opt_state = train_state.params, train_state.layer_state, train_state.opt_state
        (loss, (ref_state, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            ref[0], ref[1], (x, y), None
        )
        updates, ref_opt = optimizer.update(grads, ref[2], ref[0])
        ref = (fdl.optim.apply_updates(ref[0], updates), ref_state, ref_opt)
        assert int(state["counting_scale"]["calls"]) == t
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
    step = fdl.train.make_train_step(counted, optimizer)
    train_state = fdl.train.init_state(params, optimizer, layer_state=state)
    first = train_state
    for _ in range(3):
        train_state, metrics = step(train_state, batch, None)
    assert all(x.is_deleted() for x in jax.tree.leaves((first.params, first.layer_state)))
    assert int(train_state.layer_state["counting_scale"]["calls"]) == 3 and set(metrics) == {"loss"}


# ------------------------------------------------------------------------------- freezing


def frozen_body_problem(keys):
    body = nn.Serial(nn.Dense(256), nn.Relu(), nn.Dense(256), nn.Relu(), name="body")
    model = nn.Serial(body, nn.Dense(10, name="head"))
    params, _, _ = model.init(next(keys), (64,))
    f = nn.as_function(model)
    x, y = jax.random.normal(next(keys), (32, 64)), jax.random.normal(next(keys), (32, 10))

    def loss(params, batch, key):
        return fdl.losses.mse(f(params, batch[0]), batch[1], reduction="mean")

    return params, fdl.train.simple_loss(loss), (x, y)


def compiled_flops(step, *args):
    cost = jax.jit(step).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def test_a_frozen_part_is_never_differentiated_flops_drop_by_its_backward_cost(keys):
    params, loss_fn, batch = frozen_body_problem(keys)
    optimizer = fdl.optim.adam(1e-3)
    full = fdl.train.make_step(loss_fn, optimizer)
    frozen = fdl.train.make_step(loss_fn, optimizer, trainable="head")
    full_flops = compiled_flops(lambda *a: full(*a)[:2], fdl.train.init_state(params, optimizer), batch, None)
    frozen_state = fdl.train.init_state(params, optimizer, trainable="head")
    frozen_flops = compiled_flops(lambda *a: frozen(*a)[:2], frozen_state, batch, None)
    b = 32
    # The body's backward pass: dL/dW of both dense layers (2 b in out each) and dL/dh into the
    # second (2 b 256 256); nothing flows into the input. Its Adam updates add ~10 FLOPs/param.
    body_backward = 2 * b * (64 * 256 + 256 * 256) + 2 * b * 256 * 256
    saved = full_flops - frozen_flops
    assert saved >= body_backward, (full_flops, frozen_flops, body_backward)
    # and no more than that plus the body's optimizer update and elementwise backward work
    body_params = 64 * 256 + 256 + 256 * 256 + 256
    assert saved <= body_backward + 20 * body_params + 10 * b * 512


def test_frozen_params_come_back_bit_identical_and_the_rest_trains(keys):
    params, loss_fn, batch = frozen_body_problem(keys)
    optimizer = fdl.optim.adam(1e-2)
    step = fdl.train.make_train_step(loss_fn, optimizer, trainable=["head/**"])
    state = fdl.train.init_state(params, optimizer, trainable="head/**")
    moments = [p for p in nn.leaf_paths(state.opt_state) if "/mu/" in p or "/nu/" in p]
    assert moments and all("/head/" in p for p in moments)  # no optimizer state for the body
    body_before = jax.tree.map(np.array, params["body"])
    head_before = np.array(params["head"]["w"])
    losses = []
    for _ in range(20):
        state, metrics = step(state, batch, None)
        losses.append(float(metrics["loss"]))
    jax.tree.map(np.testing.assert_array_equal, state.params["body"], body_before)
    assert not np.array_equal(state.params["head"]["w"], head_before)
    assert losses[-1] < losses[0]


def test_stateful_step_with_a_frozen_part(keys):
    model = nn.Serial(counting_scale_layer(), nn.Dense(2, name="head"))
    params, state, _ = model.init(next(keys), (3,))
    batch = jax.random.normal(next(keys), (4, 3))

    def loss_fn(params, state, batch, key):
        out, state = model.apply(params, state, batch, train=True)
        return jnp.mean(out**2), (state, {})

    optimizer = fdl.optim.sgd(0.1)
    step = fdl.train.make_train_step(loss_fn, optimizer, trainable="head")
    new, _ = step(fdl.train.init_state(params, optimizer, layer_state=state, trainable="head"), batch, None)
    np.testing.assert_array_equal(new.params["counting_scale"]["w"], params["counting_scale"]["w"])
    assert not np.array_equal(new.params["head"]["w"], params["head"]["w"])
    assert int(new.layer_state["counting_scale"]["calls"]) == 1


def test_a_trainable_pattern_that_matches_nothing_is_a_clear_error(keys):
    params, _loss_fn, _batch = frozen_body_problem(keys)
    with pytest.raises(ValueError, match=r"the pattern 'haed' matches no leaf; nearest: \['head'"):
        fdl.train.trainable_part(params, "haed")


# ----------------------------------------------------- optimizers that take optax's extra args

QUADRATIC_A = np.array([[3.0, 0.5], [0.5, 1.0]], np.float32)
QUADRATIC_B = np.array([1.0, -2.0], np.float32)


def _quadratic(p):
    return 0.5 * p @ jnp.asarray(QUADRATIC_A) @ p - jnp.asarray(QUADRATIC_B) @ p


def test_optax_lbfgs_through_the_one_step_equals_optaxs_documented_loop():
    """The step passes value, grad and value_fn: optax's L-BFGS (zoom line search) follows the
    loop of optax's documentation step for step, and reaches the minimizer A^{-1} b."""
    opt = optax.lbfgs()
    step = jax.jit(fdl.train.make_step(fdl.train.simple_loss(lambda p, batch, key: _quadratic(p)), opt))
    state = fdl.train.init_state(jnp.zeros(2), opt)
    params, opt_state = jnp.zeros(2), opt.init(jnp.zeros(2))
    value_and_grad = optax.value_and_grad_from_state(_quadratic)
    for _ in range(6):
        state, metrics, _ = step(state, None, jax.random.key(0))
        value, grad = value_and_grad(params, state=opt_state)
        updates, opt_state = opt.update(grad, opt_state, params, value=value, grad=grad, value_fn=_quadratic)
        params = optax.apply_updates(params, updates)
        np.testing.assert_array_equal(np.asarray(state.params), np.asarray(params))
        np.testing.assert_array_equal(np.asarray(metrics["loss"]), np.asarray(value))
    solution = np.linalg.solve(QUADRATIC_A.astype(np.float64), QUADRATIC_B.astype(np.float64))
    np.testing.assert_allclose(np.asarray(state.params), solution, rtol=1e-5)


def test_the_value_fn_holds_a_frozen_part_fixed():
    """A line search under ``trainable=`` sees the loss as a function of the trainable part."""
    seen = []

    def probe():
        def init(params):
            return optax.EmptyState()

        def update(updates, state, params=None, *, value_fn=None, value=None, **extra):
            seen.append(jax.eval_shape(value_fn, params))
            # value_fn at params equals the loss the step computed
            return jax.tree.map(lambda u: u * (value_fn(params) - value), updates), state

        return optax.GradientTransformationExtraArgs(init, update)

    def loss(p, batch, key):
        return jnp.sum(p["a"] ** 2) + 3.0 * jnp.sum(p["b"])

    opt = probe()
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    step = fdl.train.make_step(fdl.train.simple_loss(loss), opt, trainable="a")
    state = fdl.train.init_state(params, opt, trainable="a")
    new, metrics, _ = step(state, None, None)
    assert seen[0].shape == () and float(metrics["loss"]) == 2.0 + 9.0
    np.testing.assert_array_equal(np.asarray(new.params["a"]), [1.0, 1.0])  # value_fn(p) - value == 0
    np.testing.assert_array_equal(np.asarray(new.params["b"]), np.ones(3))


def test_fit_with_reduce_on_plateau_gets_the_loss_as_value():
    """optax's reduce_on_plateau reads ``value``: under fit it sees the loss and cuts the scale
    once the loss stops improving."""
    opt = optax.chain(optax.sgd(0.5), optax.contrib.reduce_on_plateau(patience=2, factor=0.5, cooldown=0))
    data = (np.zeros((8, 1), np.float32), np.zeros((8, 1), np.float32))

    def loss(p, batch, key):  # a loss with a floor: stops improving after a few steps
        return jnp.maximum(jnp.sum((p - 1.0) ** 2), 0.25)

    result = fdl.fit.fit(
        fdl.train.simple_loss(loss),
        opt,
        jnp.zeros(1),
        data,
        batch_size=8,
        steps=20,
        key=jax.random.key(0),
        logging=fdl.fit.Logging(progress=False),
    )
    plateau_state = result.opt_state[1]
    assert float(plateau_state.scale) < 1.0
