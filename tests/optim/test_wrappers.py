"""Wrappers: ``MultiSteps`` (gradient accumulation), ``apply_if_finite`` and the conditional
transformations, against optax step by step and against what they promise.

The conditional wrappers, ``apply_every`` and ``apply_if_finite`` on finite problems also have
rows in ``test_parity.py`` (500 steps, every dtype); here ``MultiSteps`` (a class, outside the
table) runs 300 calls against optax's on the MLP problem, and the semantics are checked beyond
equality: accumulation equals a step on the mean gradient, NaN steps are skipped and counted.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl import optim
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, run_trajectories

CALLS = 300


def _pair(**kwargs):
    def build(lib, inner):
        return lib.MultiSteps(inner, **kwargs).gradient_transformation()

    return build(optim, optim.adam(1e-2)), build(optax, optax.adam(1e-2))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(every_k_schedule=3),
        dict(every_k_schedule=4, use_grad_mean=False),
        dict(every_k_schedule=lambda step: jnp.where(step < 10, 2, 5)),
        dict(every_k_schedule=2, should_skip_update_fn=optax.skip_not_finite),
        dict(every_k_schedule=2, accumulator_dtype=jnp.bfloat16),
    ],
    ids=["k3", "sum", "schedule", "skip_not_finite", "bf16_accumulator"],
)
def test_multisteps_same_updates_and_states_as_optax(kwargs):
    problem = make_problem("mlp", jnp.float32)
    fdl_opt, optax_opt = _pair(**kwargs)
    if "should_skip_update_fn" in kwargs:  # each library's own skip function
        fdl_opt, _ = _pair(**{**kwargs, "should_skip_update_fn": optim.skip_not_finite})
    [(ours, theirs)] = run_trajectories([(fdl_opt, optax_opt, problem)], CALLS, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, f"MultiSteps {kwargs}:")


def test_multisteps_over_k_calls_is_one_step_on_the_mean_gradient():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2)}
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params) for _ in range(4)
    ]
    multi = optim.MultiSteps(optim.adam(0.1), every_k_schedule=4)
    state = multi.init(params)
    for i, g in enumerate(grads):
        updates, state = multi.update(g, state, params)
        if i < 3:
            assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates))
            assert not bool(multi.has_updated(state))
    assert bool(multi.has_updated(state)) and int(state.gradient_step) == 1
    mean = jax.tree.map(lambda *g: sum(g) / 4, *grads)
    adam = optim.adam(0.1)
    expected, adam_state = adam.update(mean, adam.init(params), params)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(state.inner_opt_state[0].mu["w"]), np.asarray(adam_state[0].mu["w"]), rtol=1e-6
    )
    assert all(float(jnp.max(jnp.abs(a))) == 0.0 for a in jax.tree.leaves(state.acc_grads))


def test_multisteps_skips_a_nan_gradient_and_keeps_its_state():
    multi = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=2, should_skip_update_fn=optim.skip_not_finite)
    state = multi.init(jnp.zeros(2))
    _, state = multi.update(jnp.asarray([1.0, 1.0]), state)
    before = state
    updates, state = multi.update(jnp.asarray([jnp.nan, 1.0]), state)
    assert updates.tolist() == [0.0, 0.0]
    assert int(state.mini_step) == int(before.mini_step) == 1
    assert state.acc_grads.tolist() == before.acc_grads.tolist()
    assert int(state.skip_state["num_not_finite"]) == 1 and bool(state.skip_state["should_skip"])
    updates, state = multi.update(jnp.asarray([3.0, 3.0]), state)
    assert updates.tolist() == [-2.0, -2.0]  # the mean of the two finite gradients


def test_multisteps_skip_large_updates_with_a_bound():
    skip = functools.partial(optim.skip_large_updates, max_squared_norm=10.0)
    multi = optim.MultiSteps(optim.sgd(1.0), every_k_schedule=1, should_skip_update_fn=skip)
    state = multi.init(jnp.zeros(2))
    big, state = multi.update(jnp.asarray([3.0, 4.0]), state)  # |g|^2 = 25
    small, state = multi.update(jnp.asarray([1.0, 2.0]), state)  # 5
    assert big.tolist() == [0.0, 0.0] and small.tolist() == [-1.0, -2.0]
    assert float(state.skip_state["norm_squared"]) == 5.0


@pytest.mark.parametrize("k", [0, -2, 1.5, True])
def test_multisteps_every_k_below_one_is_refused(k):
    with pytest.raises(ValueError, match=r"MultiSteps: `every_k_schedule` must be an int >= 1 .*got"):
        optim.MultiSteps(optim.sgd(0.1), every_k_schedule=k)


def test_multisteps_skip_function_must_return_a_bool_scalar():
    multi = optim.MultiSteps(optim.sgd(0.1), 2, should_skip_update_fn=lambda u, s, p: (jnp.zeros(2), ()))
    with pytest.raises(
        ValueError, match=r"must return a bool scalar first, got an array of dtype float32 and shape \(2,\)"
    ):
        multi.update(jnp.ones(2), multi.init(jnp.zeros(2)))


def test_apply_if_finite_skips_and_counts_nan_steps_then_gives_up():
    opt = optim.apply_if_finite(optim.adam(0.1), max_consecutive_errors=2)
    state = opt.init(jnp.zeros(1))
    u, state = opt.update(jnp.asarray([1.0]), state)
    assert float(u[0]) == pytest.approx(-0.1, rel=1e-4)  # 1 - 0.999 rounds in float32
    moments = state.inner_state[0]
    for in_a_row in (1, 2):
        u, state = opt.update(jnp.asarray([jnp.nan]), state)
        assert u.tolist() == [0.0] and int(state.notfinite_count) == in_a_row
        assert not bool(state.last_finite) and int(state.total_notfinite) == in_a_row
        assert state.inner_state[0].mu.tolist() == moments.mu.tolist()  # the moments never see it
    u, state = opt.update(jnp.asarray([jnp.nan]), state)  # a third in a row: applied
    assert np.isnan(float(u[0])) and int(state.inner_state[0].count) == 2
    u, state = opt.update(jnp.asarray([1.0]), state)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 3


def test_apply_if_finite_matches_optax_through_nan_steps():
    grads = [1.0, jnp.nan, 2.0, jnp.inf, jnp.nan, -1.0, jnp.nan, jnp.nan, jnp.nan, 0.5]
    ours = optim.apply_if_finite(optim.adam(0.1), max_consecutive_errors=1)
    theirs = optax.apply_if_finite(optax.adam(0.1), max_consecutive_errors=1)
    a = ours.init(jnp.zeros(1))
    with optax_promotion():
        b = theirs.init(jnp.zeros(1))
    for g in grads:
        ua, a = ours.update(jnp.asarray([g]), a)
        with optax_promotion():
            ub, b = theirs.update(jnp.asarray([g]), b)
        np.testing.assert_array_equal(np.asarray(ua), np.asarray(ub))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_wrapper_errors_name_the_argument():
    with pytest.raises(
        ValueError, match=r"apply_if_finite: `max_consecutive_errors` must be a whole number >= 0"
    ):
        optim.apply_if_finite(optim.sgd(0.1), max_consecutive_errors=-1)
    with pytest.raises(TypeError, match=r"conditionally_mask: `inner` must be a GradientTransformation"):
        optim.conditionally_mask(optax.sgd, lambda step: True)
    with pytest.raises(TypeError, match=r"conditionally_transform: `should_transform_fn` must be a function"):
        optim.conditionally_transform(optim.sgd(0.1), 3)
    with pytest.raises(
        ValueError, match=r"apply_every: `k` must be a whole number >= 1 \(calls per emitted sum\), got 0"
    ):
        optim.apply_every(0)
    with pytest.raises(TypeError, match=r"apply_every: `k` must be a real number, got '2' \(str\)"):
        optim.apply_every("2")


def test_optax_state_aliases_are_the_same_classes():
    assert optim.MultiTransformState is optim.PartitionState
    for alias in (optim.ScaleState, optim.AddDecayedWeightsState, optim.ScaleByTrustRatioState):
        assert alias is optim.EmptyState is optax.EmptyState
    assert optim.init_empty_state({"w": jnp.ones(2)}) == optim.EmptyState()
    top = jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32)
    assert int(optim.safe_int32_increment(top)) == int(top)  # saturates, as safe_increment


def test_safe_increment_counts_floats_as_optax_and_refuses_bools():
    for count in (jnp.asarray(3.0), jnp.asarray(3.0, jnp.bfloat16), jnp.asarray(7, jnp.int8)):
        ours, theirs = optim.safe_increment(count), optax.safe_increment(count)
        assert ours.dtype == theirs.dtype and float(ours) == float(theirs)
    top = jnp.asarray(jnp.finfo(jnp.float32).max, jnp.float32)
    assert float(optim.safe_increment(top)) == float(top)  # saturates, not inf
    with pytest.raises(
        ValueError, match=r"`count` must have an integer or floating dtype to be incremented, got bool"
    ):
        optim.safe_increment(jnp.asarray(True))


def test_scale_by_learning_rate_none_is_no_scaling_as_optax():
    g = {"w": jnp.asarray([1.5, -2.0])}
    for flip_sign in (True, False):
        ours = optim.scale_by_learning_rate(flip_sign=flip_sign)
        theirs = optax.scale_by_learning_rate(None, flip_sign=flip_sign)
        np.testing.assert_array_equal(
            ours.update(g, ours.init(g))[0]["w"], theirs.update(g, theirs.init(g))[0]["w"]
        )
    # the aliases still refuse it: there None would be an unscaled ascent step
    with pytest.raises(TypeError, match=r"^adam: `learning_rate` must be a real number or a schedule"):
        optim.adam(None)


def test_with_extra_args_support_takes_optax_keyword():
    tx = optim.with_extra_args_support(tx=optax.scale(2.0))
    assert tx.update(jnp.ones(1), tx.init(jnp.ones(1)), None, loss=1.0)[0].tolist() == [2.0]
