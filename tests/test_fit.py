"""``fdl.fit.fit``: equal to a hand-written loop, fused or not; data order; evaluation and history;
the NaN guard; mixed precision; checkpoints with exact resume, also after SIGKILL; errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import checkpoint
from fdl.fit import (
    Checkpoint,
    Eval,
    Execution,
    Logging,
    NonFiniteError,
    classification_eval,
    classification_loss,
    fit,
)
from tests.fit_helpers import linear_params, regression_data

WORKER = Path(__file__).parent / "fit_worker.py"


def linear_loss(params, state, batch, key):
    x, y = batch
    pred = x @ params["w"] + jnp.broadcast_to(params["b"], (x.shape[0], 1))  # (b, 1)
    return jnp.mean((pred - y) ** 2), (state, {"abs_error": jnp.mean(jnp.abs(pred - y))})


QUIET = Logging(progress=False)


def run(steps_per_call=16, **overrides):
    kwargs = dict(
        key=jax.random.key(7),
        batch_size=8,
        steps=30,
        logging=QUIET,
        execution=Execution(steps_per_call=steps_per_call),
    )
    kwargs.update(overrides)
    return fit(linear_loss, fdl.optim.adam(0.05), linear_params(), regression_data(), **kwargs)


def test_fit_equals_a_hand_written_loop_over_the_stated_batches():
    """The batches are the documented ones: permutation(fold_in(data_key, epoch), N), in order."""
    x, y = regression_data()
    result = run(steps=20, steps_per_call=4)
    data_key, step_key = jax.random.split(jax.random.key(7))
    optimizer = fdl.optim.adam(0.05)
    step_fn = fdl.train.make_train_step(linear_loss, optimizer)
    state = fdl.train.init_state(linear_params(), optimizer)
    per_epoch = 48 // 8
    for s in range(20):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, s // per_epoch), 48))
        idx = order[(s % per_epoch) * 8 : (s % per_epoch + 1) * 8]
        state, _ = step_fn(state, (x[idx], y[idx]), jax.random.fold_in(step_key, s))
    chex.assert_trees_all_close(result.params, state.params, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(result.opt_state, state.opt_state, rtol=1e-6, atol=1e-7)
    assert result.step == 20 and result.skipped == 0


def test_fusing_steps_does_not_change_the_result():
    one = run(steps=30, steps_per_call=1)
    fused = run(steps=30, steps_per_call=7)
    chex.assert_trees_all_equal(one.params, fused.params)
    chex.assert_trees_all_equal(one.opt_state, fused.opt_state)


def test_a_second_fit_with_the_same_loss_and_optimizer_does_not_trace_again():
    """fit keeps its compiled program: calling it again (a notebook cell re-run, a benchmark)
    with the same loss_fn and optimizer objects and same-shaped data neither traces the loss
    again nor compiles, even from other parameter values, other data and another key."""
    loss = chex.assert_max_traces(linear_loss, n=1)  # raises if the loss is traced twice
    optimizer = fdl.optim.adam(0.05)
    x, y = regression_data()
    kwargs = dict(batch_size=8, steps=24, logging=QUIET, execution=Execution(steps_per_call=8))
    first = fit(loss, optimizer, linear_params(), (x, y), key=jax.random.key(1), **kwargs)
    second = fit(loss, optimizer, first.params, (x + 1.0, y), key=jax.random.key(2), **kwargs)
    assert second.step == 24 and not np.allclose(first.params["w"], second.params["w"])
    # another optimizer object is another program: the loss is traced again
    with pytest.raises(AssertionError, match="traced > 1 times"):
        fit(loss, fdl.optim.adam(0.05), linear_params(), (x, y), key=jax.random.key(1), **kwargs)


def test_each_epoch_visits_every_example_once():
    x, _ = regression_data()
    ids = np.arange(48, dtype=np.float32)

    def loss_fn(params, state, batch, key):
        xb, idx = batch
        return jnp.mean(xb @ params["w"]) ** 2, (state, {"id_sum": jnp.sum(idx)})

    result = fit(
        loss_fn,
        fdl.optim.sgd(0.1),
        {"w": jnp.zeros((3, 1))},
        (x, ids),
        key=jax.random.key(3),
        batch_size=8,
        epochs=3,
        execution=Execution(steps_per_call=6),
        logging=QUIET,
    )
    # One call per epoch (6 steps): mean of per-step id sums x 6 = sum of all ids.
    for row in result.history:
        assert row["id_sum"] * 6 == pytest.approx(ids.sum())
    assert [row["step"] for row in result.history] == [6, 12, 18]


def test_evaluation_history_files_and_plot(tmp_path):
    x, y = regression_data()

    def eval_fn(params, state):
        return {"loss": linear_loss(params, state, (x, y), None)[0]}

    for suffix in (".jsonl", ".csv"):
        history = tmp_path / f"history{suffix}"
        result = run(
            steps=24,
            steps_per_call=4,
            evaluate=Eval(eval_fn, every=12),
            logging=Logging(history=history, plot=tmp_path / "curves.png", progress=False),
        )
        assert [r["step"] for r in result.history] == [4, 8, 12, 16, 20, 24]
        evaluated = [r["step"] for r in result.history if "eval_loss" in r]
        assert evaluated == [12, 24]
        assert result.history[-1]["eval_loss"] < result.history[0]["loss"]
        if suffix == ".jsonl":
            rows = [json.loads(line) for line in history.read_text().splitlines()]
        else:
            import csv

            rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(history.open())]
        assert [r["step"] for r in rows] == [4, 8, 12, 16, 20, 24]
        assert rows[-1]["loss"] == pytest.approx(result.history[-1]["loss"])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def poisoned_problem():
    """Example 5 has a NaN in the input of the ``b`` branch only: the loss and b's gradient are
    NaN on every batch that holds it, a's gradient stays finite."""
    x, y = regression_data()
    z = np.ones((48,), np.float32)
    z[5] = np.nan

    def loss_fn(params, state, batch, key):
        xb, yb, zb = batch
        fit_term = jnp.mean((xb @ params["a"] - yb) ** 2)
        return fit_term + jnp.mean(zb) * params["b"], (state, {})

    return loss_fn, {"a": jnp.zeros((3, 1)), "b": jnp.zeros(())}, (x, y, z)


def first_poisoned_step(key, epochs=4):
    data_key, _ = jax.random.split(key)
    steps = []
    for e in range(epochs):
        order = np.asarray(jax.random.permutation(jax.random.fold_in(data_key, e), 48))
        steps.append(e * 6 + int(np.flatnonzero(order == 5)[0]) // 8)
    return steps


def test_nan_guard_raises_naming_the_step_and_the_parameter_and_keeps_the_state_before():
    loss_fn, params, data = poisoned_problem()
    key = jax.random.key(11)
    bad = first_poisoned_step(key)[0]
    with pytest.raises(
        NonFiniteError,
        match=rf"non-finite gradient of parameter 'b' at step {bad} "
        r"\(loss nan\); the update was not applied",
    ) as caught:
        fit(
            loss_fn,
            fdl.optim.sgd(0.1),
            params,
            data,
            key=key,
            batch_size=8,
            epochs=4,
            execution=Execution(steps_per_call=4),
            logging=QUIET,
        )
    error = caught.value
    assert error.step == bad and error.path == "b"
    # The state handed back is the state before the bad step: a run of exactly `bad` steps.
    if bad:
        before = fit(
            loss_fn,
            fdl.optim.sgd(0.1),
            params,
            data,
            key=key,
            batch_size=8,
            steps=bad,
            execution=Execution(steps_per_call=4),
            logging=QUIET,
        )
        chex.assert_trees_all_equal(error.result.params, before.params)
    assert error.result.step == bad
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(error.result.params))


def test_nan_guard_skip_drops_exactly_the_poisoned_steps():
    loss_fn, params, data = poisoned_problem()
    key = jax.random.key(11)
    result = fit(
        loss_fn,
        fdl.optim.sgd(0.1),
        params,
        data,
        key=key,
        batch_size=8,
        epochs=4,
        execution=Execution(steps_per_call=4, nan_policy="skip"),
        logging=QUIET,
    )
    assert result.skipped == len(first_poisoned_step(key)) == 4
    assert result.step == 24 and result.history[-1]["skipped"] == 4
    assert all(np.isfinite(v).all() for v in jax.tree.leaves(result.params))
    assert float(jnp.abs(result.params["a"]).sum()) > 0  # the clean steps trained


def test_mixed_precision_computes_in_bfloat16_and_keeps_float32_state():
    seen = {}

    def loss_fn(params, state, batch, key):
        seen["params"], seen["x"] = params["w"].dtype, batch[0].dtype
        return linear_loss(params, state, batch, key)

    result = fit(
        loss_fn,
        fdl.optim.adam(0.05),
        linear_params(),
        regression_data(),
        key=jax.random.key(7),
        batch_size=8,
        steps=60,
        logging=QUIET,
        execution=Execution(compute_dtype=jnp.bfloat16),
    )
    assert seen == {"params": jnp.bfloat16, "x": jnp.bfloat16}
    leaves = jax.tree.leaves((result.params, result.opt_state))
    assert {leaf.dtype for leaf in leaves if jnp.issubdtype(leaf.dtype, jnp.floating)} == {
        jnp.dtype(jnp.float32)
    }
    assert result.history[-1]["loss"] < 0.1 * result.history[0]["loss"]


def test_resume_from_a_checkpoint_is_bit_identical(tmp_path):
    whole = run(steps=30, steps_per_call=5, checkpoint=Checkpoint(tmp_path / "a", every=10))
    run(steps=20, steps_per_call=5, checkpoint=Checkpoint(tmp_path / "b", every=10))
    resumed = run(steps=30, steps_per_call=5, checkpoint=Checkpoint(tmp_path / "b", every=10, resume=True))
    chex.assert_trees_all_equal(resumed.params, whole.params)
    chex.assert_trees_all_equal(resumed.opt_state, whole.opt_state)
    assert resumed.history == whole.history
    assert checkpoint.all_steps(tmp_path / "b") == [10, 20, 30]


def test_resume_with_another_key_or_model_is_refused(tmp_path):
    run(steps=10, checkpoint=Checkpoint(tmp_path, every=10))
    with pytest.raises(ValueError, match=r"was made with another `key` \(seed\)"):
        run(steps=20, checkpoint=Checkpoint(tmp_path, resume=True), key=jax.random.key(8))
    with pytest.raises(ValueError, match=r"params/w"):
        fit(
            linear_loss,
            fdl.optim.adam(0.05),
            {"w": jnp.zeros((3, 2)), "b": jnp.zeros((1,))},
            regression_data(),
            key=jax.random.key(7),
            batch_size=8,
            steps=20,
            checkpoint=Checkpoint(tmp_path, resume=True),
            logging=QUIET,
        )


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    whole = run(steps=30, steps_per_call=5)
    run(steps=20, steps_per_call=5, checkpoint=Checkpoint(tmp_path, every=10))
    newest = tmp_path / "ckpt-00000020.npz"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    with pytest.warns(checkpoint.CheckpointWarning):
        resumed = run(steps=30, steps_per_call=5, checkpoint=Checkpoint(tmp_path, every=10, resume=True))
    chex.assert_trees_all_equal(resumed.params, whole.params)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_parameters(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    killed_dir, whole_dir = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(killed_dir), str(tmp_path / "x.npz")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if killed_dir.exists() and (checkpoint.latest_step(killed_dir) or 0) >= 30:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run ended before the kill:\n{output}"
    killed_at = checkpoint.latest_step(killed_dir)
    assert 30 <= killed_at < 2000 and not (tmp_path / "x.npz").exists()

    for args in (
        [str(killed_dir), str(tmp_path / "resumed.npz"), "--resume"],
        [str(whole_dir), str(tmp_path / "whole.npz")],
    ):
        done = subprocess.run([sys.executable, str(WORKER), *args], env=env, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
    resumed, whole = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "whole.npz")
    assert int(resumed["step"]) == int(whole["step"]) == 2000
    names = [n for n in whole.files if n != "step"]
    assert names and sorted(resumed.files) == sorted(whole.files)
    for name in names:
        np.testing.assert_array_equal(resumed[name], whole[name])  # bit for bit


def test_classification_helpers_train_a_model():
    data = fdl.data.load_digits(seed=0)
    model = fdl.nn.MLP((32, 10))
    params, state, _ = model.init(jax.random.key(0), (64,))
    result = fit(
        classification_loss(model),
        fdl.optim.adam(1e-2),
        params,
        (data.x_train, data.y_train),
        layer_state=state,
        key=jax.random.key(1),
        batch_size=32,
        epochs=3,
        logging=QUIET,
        evaluate=Eval(classification_eval(model, data.x_test, data.y_test)),
    )
    assert result.history[-1]["eval_accuracy"] > 0.85
    assert {"loss", "accuracy", "eval_loss", "eval_accuracy"} <= set(result.history[-1])


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(batch_size=0), r"`batch_size` must be a positive integer, got 0"),
        (dict(batch_size=100), r"`batch_size` \(100\) must not exceed the number of examples \(48\)"),
        (dict(steps=None), r"give exactly one of `steps` and `epochs`, got steps=None, epochs=None"),
        (dict(epochs=2), r"give exactly one of `steps` and `epochs`, got steps=30, epochs=2"),
        (dict(steps=0), r"`steps` must be a positive integer, got 0"),
        (dict(key=0), r"`key` must be a JAX PRNG key \(jax.random.key\(seed\)\), got 0"),
    ],
)
def test_invalid_arguments(overrides, match):
    with pytest.raises(ValueError, match=match):
        run(**overrides)


@pytest.mark.parametrize(
    "build, error, match",
    [
        (
            lambda: Execution(steps_per_call=0),
            ValueError,
            r"`steps_per_call` must be a positive integer, got 0",
        ),
        (
            lambda: Execution(nan_policy="ignore"),
            ValueError,
            r"`nan_policy` must be one of 'raise', 'skip', got 'ignore'",
        ),
        (lambda: Eval(lambda p, s: {}, every=0), ValueError, r"`every` must be a positive integer, got 0"),
        (
            lambda: Eval("loss"),
            TypeError,
            r"Eval: `fn` must be callable \(params, layer_state\) -> dict, got 'loss'",
        ),
        (lambda: Checkpoint("ck", keep=0), ValueError, r"`keep` must be a positive integer, got 0"),
        (lambda: Checkpoint("ck", every=-1), ValueError, r"`every` must be a positive integer, got -1"),
        (lambda: Checkpoint(3), TypeError, r"Checkpoint: `dir` must be a path, got 3"),
        (lambda: Checkpoint("ck", resume="yes"), TypeError, r"`resume` must be a bool, got 'yes'"),
        (lambda: Logging(history="h.txt"), ValueError, r"`history` 'h.txt' must end in .jsonl or .csv"),
        (lambda: Logging(history="h.json"), ValueError, r"`history` 'h.json' must end in .jsonl or .csv"),
        (lambda: Logging(plot="curves.pdf"), ValueError, r"`plot` 'curves.pdf' must end in .png"),
        (lambda: Logging(loggers=[print]), TypeError, r"each of `loggers` must have write\(rows\)"),
    ],
)
def test_invalid_records(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_a_checkpoint_dir_that_is_a_file_is_refused(tmp_path):
    file = tmp_path / "ckpt"
    file.write_text("")
    with pytest.raises(ValueError, match=r"Checkpoint: `dir` '.*ckpt' exists and is not a directory"):
        Checkpoint(file)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(evaluate=lambda p, s: {}), r"`evaluate` must be a fdl.fit.Eval\(...\), got <function"),
        (dict(checkpoint="ckpt/"), r"`checkpoint` must be a fdl.fit.Checkpoint\(...\), got 'ckpt/'"),
        (dict(logging=False), r"`logging` must be a fdl.fit.Logging\(...\), got False"),
        (dict(execution=dict(steps_per_call=4)), r"`execution` must be a fdl.fit.Execution\(...\), got \{"),
        (dict(callbacks=[print]), r"each of `callbacks` must have on_row\(row, control\)"),
    ],
)
def test_records_of_the_wrong_kind_are_refused(overrides, match):
    with pytest.raises(TypeError, match=match):
        run(**overrides)


def test_data_must_be_a_tuple_with_one_leading_axis():
    with pytest.raises(ValueError, match=r"`data` must be a tuple of arrays"):
        fit(
            linear_loss,
            fdl.optim.sgd(0.1),
            linear_params(),
            np.zeros((4, 3)),
            key=jax.random.key(0),
            batch_size=2,
            steps=1,
            logging=QUIET,
        )
    with pytest.raises(ValueError, match=r"same leading axis, got shapes \(4, 3\), \(5, 1\)"):
        fit(
            linear_loss,
            fdl.optim.sgd(0.1),
            linear_params(),
            (np.zeros((4, 3)), np.zeros((5, 1))),
            key=jax.random.key(0),
            batch_size=2,
            steps=1,
            logging=QUIET,
        )


# ------------------------------------------------------------------- models without layer_state


def digits_subset(n=256):
    data = fdl.data.load_digits(seed=0)
    return data.x_train[:n], data.y_train[:n]


@pytest.mark.parametrize(
    "build, shape",
    [
        (lambda: fdl.nn.Serial(fdl.nn.Dense(16), fdl.nn.Relu(), fdl.nn.Dense(10)), (64,)),
        (lambda: fdl.nn.MLP((16, 10), dropout_rate=0.1), (64,)),
        (lambda: fdl.nn.Serial(fdl.nn.Dense(16), fdl.nn.BatchNorm(), fdl.nn.Relu(), fdl.nn.Dense(10)), (64,)),
    ],
    ids=["serial", "mlp", "batch_norm"],
)
def test_fit_works_without_layer_state(build, shape):
    model = build()
    params, state, _ = model.init(jax.random.key(0), shape)
    x, y = digits_subset()
    common = dict(key=jax.random.key(1), batch_size=32, steps=8, logging=QUIET)
    without = fit(classification_loss(model), fdl.optim.adam(1e-2), params, (x, y), **common)
    given = fit(classification_loss(model), fdl.optim.adam(1e-2), params, (x, y), layer_state=state, **common)
    chex.assert_trees_all_equal(without.params, given.params)
    chex.assert_trees_all_equal(without.layer_state, given.layer_state)
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), without.params, params)
    assert all(jax.tree.leaves(moved))  # every parameter trained


def test_fit_trains_only_the_trainable_part_and_keeps_the_frozen_bit_identical():
    model = fdl.nn.Serial(fdl.nn.Dense(16, name="body"), fdl.nn.Relu(), fdl.nn.Dense(10, name="head"))
    params, _, _ = model.init(jax.random.key(0), (64,))
    result = fit(
        classification_loss(model),
        fdl.optim.adam(1e-2),
        params,
        digits_subset(),
        key=jax.random.key(1),
        batch_size=32,
        steps=16,
        logging=QUIET,
        trainable="head",
    )
    chex.assert_trees_all_equal(result.params["body"], params["body"])
    assert not np.array_equal(result.params["head"]["w"], params["head"]["w"])
    assert all("body" not in p for p in fdl.nn.leaf_paths(result.opt_state))


def test_nan_guard_names_the_named_path():
    model = fdl.nn.Serial(fdl.nn.Dense(4, name="hidden"), fdl.nn.Dense(1, name="out"))
    params, _, _ = model.init(jax.random.key(0), (3,))
    x, y = regression_data()
    x = x.copy()
    x[:, 0] = np.inf

    def loss_fn(params, state, batch, key):
        pred, _ = model.apply(params, state, batch[0])
        return jnp.mean((pred - batch[1]) ** 2), (state, {})

    with pytest.raises(NonFiniteError, match=r"non-finite gradient of parameter 'hidden/b' at step 0"):
        fit(
            loss_fn,
            fdl.optim.sgd(0.1),
            params,
            (x, y),
            key=jax.random.key(0),
            batch_size=8,
            steps=2,
            logging=QUIET,
        )
