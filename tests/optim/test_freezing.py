"""Optimizer-side freezing and partitions: ``set_to_zero``, ``partition`` / ``multi_transform``,
``freeze``, ``selective_transform`` and ``labels_by_path``.

Against optax: the same labels and inner optimizers in both libraries, 200 steps on the MLP
problem (a nested dict with a scalar leaf) in float32, updates and full states compared leaf by
leaf at every step (``helpers.assert_same_trajectory``). Beyond equality: frozen leaves come
back bit-identical, labels from path patterns, and the error messages.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl import optim
from fdl.optim.freezing import PartitionState
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories, start

STEPS = 200


def _labels(params):
    """Weights of the first layer 'a', everything else of the net 'b', the scalar 'c'."""
    net = {name: {"w": "a" if name == "dense_0" else "b", "b": "b"} for name in params["net"]}
    return {"net": net, "temperature": "c"}


def _pair(build):
    return build(optim), build(optax)


CASES = {
    "partition": lambda lib: lib.partition(
        {"a": lib.adam(1e-2), "b": lib.sgd(0.05, momentum=0.9), "c": lib.set_to_zero()}, _labels
    ),
    "multi_transform-label_tree": lambda lib: lib.multi_transform(
        {"net": lib.rmsprop(1e-3), "scale": lib.adam(1e-3)}, {"net": "net", "temperature": "scale"}
    ),
    "freeze": lambda lib: lib.chain(lib.freeze({"net": True, "temperature": False}), lib.adam(1e-2)),
    "selective_transform": lambda lib: lib.selective_transform(
        lib.adam(1e-2), freeze_mask={"net": {"dense_0": True, "dense_1": False}, "temperature": False}
    ),
    "set_to_zero": lambda lib: lib.chain(lib.adam(1e-2), lib.set_to_zero()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_same_updates_and_states_as_optax(case):
    problem = make_problem("mlp", jnp.float32)
    fdl_opt, optax_opt = _pair(CASES[case])
    [(fdl_record, optax_record)] = run_trajectories(
        [(fdl_opt, optax_opt, problem)], STEPS, teacher_forcing=True
    )
    assert_same_trajectory(fdl_record, optax_record, f"{case}:")


def _train(opt, params, steps=20):
    problem = make_problem("mlp", jnp.float32)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(problem.loss)(params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def test_partition_with_set_to_zero_leaves_frozen_leaves_bit_identical():
    params = start(make_problem("mlp", jnp.float32))
    labels = optim.labels_by_path({"net/dense_0/**": "freeze"}, default="train")
    opt = optim.multi_transform({"train": optim.adam(1e-2), "freeze": optim.set_to_zero()}, labels)
    trained, state = _train(opt, params)
    before, after = params["net"]["dense_0"], trained["net"]["dense_0"]
    for name in ("w", "b"):
        np.testing.assert_array_equal(np.asarray(after[name]), np.asarray(before[name]))
    assert not np.array_equal(
        np.asarray(trained["net"]["dense_1"]["w"]), np.asarray(params["net"]["dense_1"]["w"])
    )
    # Adam keeps moments for the trainable leaves only
    adam_state = state.inner_states["train"].inner_state[0]
    assert isinstance(state, PartitionState)
    assert all(isinstance(leaf, optim.MaskedNode) for leaf in adam_state.mu["net"]["dense_0"].values())
    assert adam_state.mu["net"]["dense_1"]["w"].shape == params["net"]["dense_1"]["w"].shape


def test_selective_transform_equals_partition_by_hand():
    params = start(make_problem("mlp", jnp.float32))
    mask = {"net": {"dense_0": False, "dense_1": True}, "temperature": True}
    labels = {"net": {"dense_0": "train", "dense_1": "freeze"}, "temperature": "freeze"}
    a, _ = _train(optim.selective_transform(optim.adam(1e-2), freeze_mask=mask), params)
    b, _ = _train(optim.partition({"train": optim.adam(1e-2), "freeze": optim.set_to_zero()}, labels), params)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_labels_by_path_first_match_wins_and_default():
    params = {
        "body": {"conv": {"w": jnp.ones(2), "b": jnp.ones(1)}},
        "head": {"w": jnp.ones(2), "b": jnp.ones(1)},
    }
    labels = optim.labels_by_path({"**/b": "bias", "body": "body"}, default="rest")(params)
    assert labels == {"body": {"conv": {"b": "bias", "w": "body"}}, "head": {"b": "bias", "w": "rest"}}


def test_labels_by_path_errors_name_the_pattern_and_the_leaf():
    params = {"body": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
    with pytest.raises(ValueError, match=r"the pattern 'bdy/\*\*' matches no parameter; nearest: \['body/w'"):
        optim.labels_by_path({"bdy/**": "freeze"}, default="train")(params)
    with pytest.raises(
        ValueError, match=r"the parameter 'head/w' matches no pattern of \['body'\] and there is no"
    ):
        optim.labels_by_path({"body": "freeze"})(params)
    with pytest.raises(ValueError, match=r"`rules` must be a non-empty dict of pattern -> label, got \{\}"):
        optim.labels_by_path({})
    with pytest.raises(
        ValueError, match=r"each pattern must be a non-empty string like 'body/\*\*', got '/'"
    ):
        optim.labels_by_path({"/": "x"})


def test_partition_errors_list_unknown_labels_and_misfit_trees():
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    opt = optim.partition({"train": optim.sgd(0.1)}, {"w": "train", "b": "frozen"})
    with pytest.raises(
        ValueError,
        match=r"partition: the labels 'frozen' have no transformation; the transforms are labelled 'train'",
    ):
        opt.init(params)
    misfit = optim.partition({"train": optim.sgd(0.1)}, {"w": "train", "v": "train"})
    with pytest.raises(ValueError, match=r"partition: the labels must have the structure of the parameters"):
        misfit.init(params)
    with pytest.raises(ValueError, match=r"partition: `transforms` must be a non-empty dict"):
        optim.partition({}, {"w": "train"})
    with pytest.raises(
        TypeError, match=r"partition: `transforms\['train'\]` must be a GradientTransformation"
    ):
        optim.partition({"train": optax.sgd}, {"w": "train"})


def test_freeze_masks_must_be_python_bools():
    with pytest.raises(TypeError, match=r"`freeze_mask` leaf w must be a Python bool .*got Array"):
        optim.selective_transform(optim.sgd(0.1), freeze_mask={"w": jnp.asarray(True)})


def test_set_to_zero_keeps_dtypes_and_is_stateless():
    u, state = optim.set_to_zero().update({"w": jnp.ones(2, jnp.bfloat16)}, optim.EmptyState())
    assert u["w"].dtype == jnp.bfloat16 and u["w"].tolist() == [0.0, 0.0]
    assert state == optim.EmptyState()
