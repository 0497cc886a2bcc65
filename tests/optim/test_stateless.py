"""stateless and stateless_with_tree_map: by hand, against optax, with and without parameters,
in a chain with extra arguments, and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

from fdl.optim.base import EmptyState, chain
from fdl.optim.momentum import sgd
from fdl.optim.stateless import stateless, stateless_with_tree_map
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories


def _add_weight_decay(updates, params):
    return jax.tree.map(lambda g, p: g + 0.01 * p, updates, params)


def _add_weight_decay_leaf(g, p):
    return g + 0.01 * p


def test_same_updates_and_states_as_optax():
    problem = make_problem("mlp", jnp.float32)
    pairs = [
        (
            chain(stateless(_add_weight_decay), sgd(0.1)),
            optax.chain(optax.stateless(_add_weight_decay), optax.sgd(0.1)),
        ),
        (
            chain(stateless_with_tree_map(_add_weight_decay_leaf), sgd(0.1)),
            optax.chain(optax.stateless_with_tree_map(_add_weight_decay_leaf), optax.sgd(0.1)),
        ),
    ]
    records = run_trajectories([(a, b, problem) for a, b in pairs], 100, teacher_forcing=True)
    for (ours, theirs), where in zip(records, ["stateless", "stateless_with_tree_map"], strict=True):
        assert_same_trajectory(ours, theirs, f"{where}:")


def test_by_hand_with_and_without_params():
    seen = []

    def f(updates, params):
        seen.append(params)
        return jax.tree.map(lambda g: 3.0 * g, updates)

    opt = stateless(f)
    params = {"w": jnp.asarray([1.0, 2.0])}
    assert opt.init(params) == EmptyState()
    updates, state = opt.update({"w": jnp.asarray([1.0, -1.0])}, EmptyState(), params)
    assert updates["w"].tolist() == [3.0, -3.0] and state == EmptyState()
    opt.update({"w": jnp.ones(2)}, EmptyState())
    assert seen[0] is params and seen[1] is None


def test_tree_map_by_hand_with_and_without_params():
    opt = stateless_with_tree_map(lambda g, p: g if p is None else g * p)
    params = {"a": jnp.asarray([2.0]), "b": jnp.asarray([-1.0, 4.0])}
    grads = {"a": jnp.asarray([3.0]), "b": jnp.asarray([1.0, 0.5])}
    updates, state = opt.update(grads, opt.init(params), params)
    assert updates["a"].tolist() == [6.0] and updates["b"].tolist() == [-1.0, 2.0]
    assert state == EmptyState()
    updates, _ = opt.update(grads, EmptyState())
    assert updates["b"].tolist() == [1.0, 0.5]


def test_extra_arguments_are_ignored_in_a_chain():
    opt = chain(stateless(lambda g, p: g), stateless_with_tree_map(lambda g, p: -g))
    updates, _ = opt.update(jnp.ones(1), opt.init(jnp.ones(1)), None, loss=jnp.asarray(1.0))
    assert updates.tolist() == [-1.0]


def test_a_function_that_is_not_callable_is_refused():
    with pytest.raises(
        TypeError, match=r"^stateless: `f` must be a function \(updates, params\) -> updates .*got 0.5$"
    ):
        stateless(0.5)
    with pytest.raises(
        TypeError,
        match=r"^stateless_with_tree_map: `f` must be a function \(update, param\) -> update of one leaf .*got None$",
    ):
        stateless_with_tree_map(None)
