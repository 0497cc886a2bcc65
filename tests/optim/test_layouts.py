"""flatten: against optax step by step, the same updates as the inner transformation unflattened
(for an element-wise one), dtypes, extra arguments, and its errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adam import adam
from fdl.optim.base import EmptyState, GradientTransformation
from fdl.optim.clipping import clip_by_global_norm
from fdl.optim.layouts import flatten
from fdl.optim.momentum import sgd
from tests.optim.helpers import assert_same_trajectory, assert_same_tree, make_problem, run_trajectories

STEPS = 200


def test_same_updates_and_states_as_optax():
    pairs = [
        (flatten(adam(1e-2)), optax.flatten(optax.adam(1e-2)), make_problem("mlp", jnp.float32)),
        (
            flatten(sgd(0.1, momentum=0.9, nesterov=True)),
            optax.flatten(optax.sgd(0.1, momentum=0.9, nesterov=True)),
            make_problem("logistic", jnp.float32),
        ),
    ]
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), where in zip(records, ["adam mlp", "nesterov logistic"], strict=True):
        assert_same_trajectory(ours, theirs, f"flatten {where}:")


def test_the_same_updates_as_the_inner_transformation_unflattened():
    problem = make_problem("mlp", jnp.float32)
    for inner in (adam(1e-2), sgd(0.1, momentum=0.9)):
        [(flat, plain)] = run_trajectories([(flatten(inner), inner, problem)], 50, teacher_forcing=True)
        assert_same_tree(flat["updates"], plain["updates"], "flatten(inner) vs inner updates")
        # the state is the inner state of one vector: 64*32 + 32 + 32*10 + 10 + 1 elements
        assert {leaf.shape for leaf in jax.tree.leaves(flat["init_state"]) if leaf.ndim} == {(2411,)}


def test_a_whole_tree_transformation_sees_one_vector():
    params = {"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}
    updates, _ = flatten(clip_by_global_norm(1.0)).update(params, EmptyState(), params)
    np.testing.assert_allclose([float(updates["a"][0]), float(updates["b"][0])], [0.6, 0.8], rtol=1e-6)


def test_leaf_order_shapes_dtypes_and_none_leaves():
    params = {
        "w": jnp.arange(6.0).reshape(2, 3),
        "b": jnp.ones(2, jnp.bfloat16),
        "frozen": None,
        "s": jnp.asarray(2.0),
    }
    seen = []

    def record(updates, state, params=None, **extra_args):
        seen.append((updates, params))
        return -updates, state

    opt = flatten(GradientTransformation(lambda p: EmptyState(), record))
    state = opt.init(params)
    updates, _ = opt.update(params, state, params)
    flat_updates, flat_params = seen[0]
    # leaves in jax.tree.leaves order (b, s, w), None skipped, in the promoted dtype
    assert flat_updates.dtype == jnp.float32 and flat_updates.shape == (9,)
    assert flat_updates.tolist() == [1.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert flat_params.tolist() == flat_updates.tolist()
    assert updates["frozen"] is None
    assert updates["b"].dtype == jnp.bfloat16 and updates["b"].tolist() == [-1.0, -1.0]
    assert updates["w"].shape == (2, 3) and updates["w"].tolist() == [[-0.0, -1.0, -2.0], [-3.0, -4.0, -5.0]]
    assert updates["s"].shape == () and float(updates["s"]) == -2.0


def test_without_params_and_extra_arguments_reach_the_inner_transformation():
    def update(updates, state, params=None, **extra_args):
        assert params is None
        return updates * extra_args["loss"], state

    opt = flatten(GradientTransformation(lambda p: EmptyState(), update))
    updates, _ = opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.ones(2)}), loss=jnp.asarray(3.0))
    assert updates["w"].tolist() == [3.0, 3.0]
    plain = flatten(optax.scale(2.0))  # an update without **extra_args gets none
    assert plain.update({"w": jnp.ones(1)}, EmptyState(), loss=1.0)[0]["w"].tolist() == [2.0]


def test_an_empty_tree_is_an_empty_vector():
    opt = flatten(adam(0.1))
    state = opt.init({})
    assert state[0].mu.shape == (0,)
    updates, _ = opt.update({}, state, {})
    assert updates == {}


def test_it_runs_under_jit():
    opt = flatten(adam(0.1))
    params = {"w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    step = jax.jit(opt.update)
    updates, state = step(params, opt.init(params), params)
    updates, state = step(params, state, params)
    assert int(state[0].count) == 2 and updates["w"].shape == (2, 2)


def test_bad_arguments_are_refused():
    with pytest.raises(
        TypeError,
        match=r"^flatten: `inner` must be a gradient transformation with init and update .*got 0.1$",
    ):
        flatten(0.1)
    opt = flatten(adam(0.1))
    params = {"w": jnp.ones(3)}
    with pytest.raises(
        ValueError,
        match=r"^flatten: `updates` leaf 'w' has shape \(2,\), but its `params` leaf has shape \(3,\)",
    ):
        opt.update({"w": jnp.ones(2)}, opt.init(params), params)
