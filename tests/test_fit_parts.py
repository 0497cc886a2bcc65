"""``fit``'s parts: the pure pieces on their own, callbacks, loggers (TensorBoard read back)."""

from __future__ import annotations

import struct

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl.fit import (
    Control,
    EarlyStopping,
    Eval,
    Every,
    Execution,
    Logging,
    ReduceLROnPlateau,
    TensorBoardLogger,
    fit,
    pieces,
)

QUIET = Logging(progress=False)


def regression_data(n=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3)[:, None].astype(np.float32)
    return x, y


def linear_loss(params, state, batch, key):
    x, y = batch
    pred = x @ params["w"] + params["b"][None, :]  # (b, 1)
    return jnp.mean((pred - y) ** 2), (state, {})


def linear_params():
    return {"w": jnp.zeros((3, 1)), "b": jnp.zeros((1,))}


def eval_on(data):
    def eval_fn(params, state):
        return {"loss": linear_loss(params, state, data, None)[0]}

    return eval_fn


# --------------------------------------------------------------------------------- pure pieces


def test_batch_at_is_the_documented_slice_of_the_epoch_order():
    data = (jnp.arange(12.0)[:, None], jnp.arange(12))
    key = jax.random.key(3)
    orders = pieces.epoch_orders(key, 12, jnp.asarray(1), 2)  # epochs 1 and 2
    assert orders.shape == (2, 12)
    for step in range(3, 9):  # the steps of epochs 1 and 2 (3 steps of 4 examples per epoch)
        batch = pieces.batch_at(data, jnp.asarray(step), orders, jnp.asarray(1), 4, 3)
        order = np.asarray(jax.random.permutation(jax.random.fold_in(key, step // 3), 12))
        np.testing.assert_array_equal(batch[1], order[(step % 3) * 4 : (step % 3 + 1) * 4])


def test_in_compute_dtype_casts_inside_and_returns_a_float32_loss():
    seen = {}

    def loss_fn(params, state, batch, key):
        seen["dtypes"] = (params["w"].dtype, batch[0].dtype, batch[1].dtype)
        return jnp.sum(params["w"] * batch[0]), (state, {})

    cast = pieces.in_compute_dtype(loss_fn, jnp.bfloat16)
    loss, _ = cast({"w": jnp.ones(2)}, {}, (jnp.ones(2), jnp.arange(2)), None)
    assert seen["dtypes"] == (jnp.bfloat16, jnp.bfloat16, jnp.int32) and loss.dtype == jnp.float32
    assert pieces.in_compute_dtype(loss_fn, None) is loss_fn


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_guard_keeps_the_state_of_a_non_finite_step(policy):
    def loss_fn(params, state, batch, key):
        return jnp.sum(params * batch), (state, {})

    optimizer = fdl.optim.sgd(0.1)
    guarded = pieces.guard(fdl.train.make_step(loss_fn, optimizer), policy)
    start = pieces.Carry(fdl.train.init_state(jnp.ones(2), optimizer), jnp.asarray(False))
    bad, record = guarded(start, jnp.array([1.0, jnp.nan]), None)
    chex.assert_trees_all_equal(bad.state.params, start.state.params)
    # the gradient and the parameter it would make are both non-finite (sgd has no state)
    assert pieces.guarded_leaves(start.state, start.state.params) == (
        ["gradient", "parameter"],
        ["(root)", "(root)"],
    )
    assert not bool(record["finite"]) and list(np.asarray(record["leaf_finite"])) == [False, False]
    assert bool(bad.halted) == (policy == "raise")
    assert int(bad.state.step) == 1  # the counter moves on; under "raise" the carry is halted
    good, record = guarded(bad, jnp.array([1.0, 1.0]), None)
    if policy == "raise":  # halted: nothing changes any more
        chex.assert_trees_all_equal(good.state, bad.state)
        assert not bool(record["active"])
    else:
        np.testing.assert_allclose(good.state.params, [0.9, 0.9])
        assert int(good.state.step) == 2


def _nan_row_data():
    x, y = regression_data(16)
    x[5, 1] = np.nan  # one bad example: its step's loss and gradients are NaN
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.parametrize("policy", ["raise", "skip"])
@pytest.mark.parametrize(
    "case, data, lr",
    [
        ("finite", lambda: tuple(jnp.asarray(a) for a in regression_data(16)), 0.05),
        ("nan_example", _nan_row_data, 0.05),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_checked_run_equals_the_full_guard_and_replays_only_a_bad_call(policy, case, data, lr):
    traces = []

    def loss_fn(params, state, batch, key):
        traces.append(1)  # once per trace of the step
        return linear_loss(params, state, batch, key)

    optimizer = fdl.optim.sgd(lr)
    step = fdl.train.make_step(loss_fn, optimizer)
    data = data()
    keys = tuple(jax.random.split(jax.random.key(0)))
    start = pieces.Carry(fdl.train.init_state(linear_params(), optimizer), jnp.asarray(False))
    checked = pieces.make_checked_run(step, policy, 4, 4, 8)
    full = pieces.make_run(pieces.guard(step, policy), 4, 4, 8, donate=False)
    want, want_records = full(start, data, keys, jnp.asarray(8))
    got, got_records = checked(start, data, keys, jnp.asarray(8))  # may donate `start`
    chex.assert_trees_all_equal(got, want)
    for name in ("step", "loss", "finite", "active"):
        np.testing.assert_array_equal(got_records[name], want_records[name])
    bad = not bool(np.all(want_records["finite"]))
    assert bad == (case != "finite")
    # the cheap run traced the step once; the full guard's run only for a call with a bad step
    assert len(traces) == 1 + 1 + int(bad)  # (+1: `full` above, traced for the comparison)


@pytest.mark.parametrize("policy", ["raise", "skip"])
def test_checked_run_sees_parameters_that_overflow_from_finite_gradients(policy):
    # A one-step call whose loss (0) and gradients (1e30) are finite, but whose update overflows
    # the parameters to -inf: only the check of the final state at the end of the call sees it,
    # and the replay under the full guard refuses the step.
    def loss_fn(params, state, batch, key):
        return 1e30 * (jnp.sum(params["w"]) + jnp.sum(params["b"])), (state, {})

    optimizer = fdl.optim.sgd(1e9)
    step = fdl.train.make_step(loss_fn, optimizer)
    data = tuple(jnp.asarray(a) for a in regression_data(16))
    keys = tuple(jax.random.split(jax.random.key(0)))
    start = pieces.Carry(fdl.train.init_state(linear_params(), optimizer), jnp.asarray(False))
    fast, fast_records = pieces.make_run(pieces.fast_guard(step), 4, 4, 1, donate=False)(
        start, data, keys, jnp.asarray(1)
    )
    assert bool(fast_records["finite"][0]) and np.isneginf(fast.state.params["b"]).all()
    got, records = pieces.make_checked_run(step, policy, 4, 4, 1)(start, data, keys, jnp.asarray(1))
    assert not bool(records["finite"][0])
    # gradients of b and w finite, the parameters b and w after the update not
    assert list(np.asarray(records["leaf_finite"][0])) == [True, True, False, False]
    chex.assert_trees_all_equal(got.state.params, linear_params())
    assert bool(got.halted) == (policy == "raise")


# ------------------------------------------------------------------------------------ callbacks


def test_early_stopping_stops_after_patience_evaluations_without_improvement():
    stopper = EarlyStopping("eval_loss", patience=2)
    control = Control()
    for step, value in [(1, 3.0), (2, 2.0), (3, 2.5), (4, 2.1)]:
        stopper.on_row({"step": step, "eval_loss": value}, control)
        assert control.stop == (step == 4)
    assert stopper.best == 2.0 and stopper.best_step == 2
    assert control.reason == ("early stopping: eval_loss has not improved on 2 (step 2) for 2 evaluations")
    stopper.on_row({"step": 5, "loss": 1.0}, Control())  # rows without the metric are ignored


def test_early_stopping_in_fit_ends_the_run_and_says_why():
    data = regression_data()
    # lr 0 never improves: the run stops after the first evaluation plus `patience` more
    result = fit(
        linear_loss,
        fdl.optim.sgd(0.0),
        linear_params(),
        data,
        key=jax.random.key(0),
        batch_size=8,
        steps=600,
        evaluate=Eval(eval_on(data), every=6),
        logging=QUIET,
        callbacks=[EarlyStopping("eval_loss", patience=3)],
    )
    assert result.step == 24 and [r["step"] for r in result.history] == [6, 12, 16, 18, 24]
    assert result.stopped.startswith("early stopping: eval_loss has not improved")


def test_every_calls_the_function_at_exact_steps_with_the_state_of_that_step():
    calls = []
    fit(
        linear_loss,
        fdl.optim.sgd(0.1),
        linear_params(),
        regression_data(),
        key=jax.random.key(0),
        batch_size=8,
        steps=20,
        execution=Execution(steps_per_call=16),
        logging=QUIET,
        callbacks=[Every(7, lambda step, state, row: calls.append((step, int(state.step))))],
    )
    assert calls == [(7, 7), (14, 14)]


def test_reduce_lr_on_plateau_scales_the_updates():
    plateau = ReduceLROnPlateau("eval_loss", factor=0.5, patience=1, min_scale=0.2)
    control = Control()
    for value in [1.0, 1.0, 1.0, 1.0, 0.5]:
        plateau.on_row({"step": 1, "eval_loss": value}, control)
    assert plateau.scale == pytest.approx(0.2) and control.lr_scale == pytest.approx(0.2)


def test_reduce_lr_on_plateau_in_fit_equals_sgd_with_the_reduced_rate():
    """The metric never improves: the scale halves at the second and third evaluations (patience
    1), and the parameters equal SGD run by hand at 0.1 for 12 steps, then 0.05."""
    data = regression_data()
    plateau = ReduceLROnPlateau("eval_const", factor=0.5, patience=1)
    result = fit(
        linear_loss,
        fdl.optim.sgd(0.1),
        linear_params(),
        data,
        key=jax.random.key(0),
        batch_size=8,
        steps=18,
        logging=QUIET,
        execution=Execution(steps_per_call=6),
        evaluate=Eval(lambda p, s: {"const": jnp.asarray(1.0)}, every=6),
        callbacks=[plateau],
    )
    assert float(result.opt_state.scale) == pytest.approx(0.25)
    # By hand over fit's batches: a unit-rate SGD step gives -g, scaled by each segment's rate.
    step_fn = fdl.train.make_train_step(linear_loss, fdl.optim.sgd(1.0), donate=False)
    state = fdl.train.init_state(linear_params(), fdl.optim.sgd(1.0))
    data_key, step_key = jax.random.split(jax.random.key(0))
    x, y = data
    for s in range(18):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, s // 6), 48))
        idx = order[(s % 6) * 8 : (s % 6 + 1) * 8]
        lr = 0.1 if s < 12 else 0.05
        new, _ = step_fn(state, (x[idx], y[idx]), jax.random.fold_in(step_key, s))
        params = jax.tree.map(lambda old, n, lr=lr: old + lr * (n - old), state.params, new.params)
        state = state._replace(params=params)
    chex.assert_trees_all_close(result.params, state.params, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: EarlyStopping(3), TypeError, r"`metric` must be a history key such as 'eval_loss', got 3"),
        (lambda: EarlyStopping(mode="up"), ValueError, r"`mode` must be one of 'min', 'max', got 'up'"),
        (lambda: EarlyStopping(patience=0), ValueError, r"`patience` must be a positive integer, got 0"),
        (lambda: Every(0, print), ValueError, r"`every` must be a positive integer, got 0"),
        (
            lambda: Every(5, "print"),
            TypeError,
            r"Every: `fn` must be callable \(step, state, row\), got 'print'",
        ),
        (lambda: ReduceLROnPlateau(factor=1.5), ValueError, r"`factor` must be in \(0, 1\), got 1.5"),
        (lambda: ReduceLROnPlateau(min_scale=2), ValueError, r"`min_scale` must be in \[0, 1\], got 2"),
        (
            lambda: ReduceLROnPlateau(cooldown=-1),
            ValueError,
            r"`cooldown` must be a non-negative integer, got -1",
        ),
    ],
)
def test_callback_arguments_are_checked(build, error, match):
    with pytest.raises(error, match=match):
        build()


# -------------------------------------------------------------------------------------- loggers


def read_events(directory):
    """Every scalar in the TensorBoard event files of ``directory``, as {tag: [(step, value)]},
    parsed from the TFRecord framing with the writer's own protobuf schema."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(directory.glob("events.out.tfevents.*")):
        raw = path.read_bytes()
        offset = 0
        while offset < len(raw):
            (length,) = struct.unpack("<Q", raw[offset : offset + 8])
            data = raw[offset + 12 : offset + 12 + length]  # after the length and its CRC
            offset += 12 + length + 4  # and the data's CRC
            event = event_pb2.Event.FromString(data)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_logger_writes_events_that_read_back(tmp_path):
    data = regression_data()
    result = fit(
        linear_loss,
        fdl.optim.adam(0.05),
        linear_params(),
        data,
        key=jax.random.key(0),
        batch_size=8,
        steps=24,
        execution=Execution(steps_per_call=6),
        evaluate=Eval(eval_on(data), every=12),
        logging=Logging(progress=False, loggers=[TensorBoardLogger(tmp_path / "tb")]),
    )
    scalars = read_events(tmp_path / "tb")
    assert [s for s, _ in scalars["loss"]] == [6, 12, 18, 24]
    np.testing.assert_allclose(
        [v for _, v in scalars["loss"]], [r["loss"] for r in result.history], rtol=1e-6
    )
    assert [s for s, _ in scalars["eval_loss"]] == [12, 24]
    np.testing.assert_allclose(scalars["eval_loss"][-1][1], result.history[-1]["eval_loss"], rtol=1e-6)


def test_a_custom_logger_sees_every_row():
    class Rows:
        def __init__(self):
            self.seen, self.closed = [], False

        def write(self, history):
            self.seen.append(len(history))

        def close(self):
            self.closed = True

    rows = Rows()
    fit(
        linear_loss,
        fdl.optim.sgd(0.1),
        linear_params(),
        regression_data(),
        key=jax.random.key(0),
        batch_size=8,
        steps=12,
        execution=Execution(steps_per_call=4),
        logging=Logging(progress=False, loggers=[rows]),
    )
    assert rows.seen == [1, 2, 3] and rows.closed


def test_the_history_plot_puts_eval_loss_with_the_losses_and_no_train_eval_labels(tmp_path):
    from matplotlib.figure import Figure

    saved = {}
    original = Figure.savefig

    def keep(fig, *args, **kwargs):
        saved["fig"] = fig
        return original(fig, *args, **kwargs)

    history = [
        {"step": 6, "loss": 1.0, "accuracy": 0.5, "skipped": 0},
        {"step": 12, "loss": 0.5, "accuracy": 0.7, "skipped": 0, "eval_loss": 0.6, "eval_accuracy": 0.65},
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Figure, "savefig", keep)
        fdl.fit.save_history_plot(history, tmp_path / "curves.png")
    loss_ax, metric_ax = saved["fig"].axes
    assert [line.get_label() for line in loss_ax.lines] == ["train loss", "eval loss"]
    assert [line.get_label() for line in metric_ax.lines] == ["train accuracy", "eval accuracy"]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
