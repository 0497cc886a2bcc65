"""Updates of the wrong shape are refused, never broadcast (issue 11, defect 10).

``apply_updates`` checks the tree structure and every leaf's static shape against the
parameters; every transformation that keeps a per-parameter state checks the updates against the
parameters (when given) and against that state. Under ``jit`` both run while tracing. optax
broadcasts in the same places; the test at the end records that difference.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl
import fdl.optim.torch
from fdl.optim import apply_updates, get_optimizer, optimizer_names

BROADCAST = "(fdl.optim does not broadcast: an update must have the shape of its parameter)"
FROZEN = "(a None parameter (a frozen part) takes a None update, and only it)"


def _message(caller, path, shape, like, like_shape, why=BROADCAST):
    def described(s):
        return "is None" if s is None else f"has shape {s}"

    return f"{caller}: `updates` leaf {path} {described(shape)}, but its {like} leaf {described(like_shape)} {why}"


def _raises_exactly(error, message, fn, *args):
    with pytest.raises(error) as info:
        fn(*args)
    assert str(info.value) == message


# ---------------------------------------------------------------------------- apply_updates


def test_apply_updates_refuses_a_broadcast_update_eagerly_and_under_jit():
    params, updates = {"w": jnp.ones(3)}, {"w": jnp.ones(1)}
    message = _message("apply_updates", "'w'", (1,), "`params`", (3,))
    _raises_exactly(ValueError, message, apply_updates, params, updates)
    _raises_exactly(ValueError, message, jax.jit(apply_updates), params, updates)


def test_apply_updates_names_nested_paths_and_a_lone_leaf():
    params = {"encoder": {"layers": [{"w": jnp.ones((3, 2))}]}}
    updates = {"encoder": {"layers": [{"w": jnp.ones((4, 3, 2))}]}}
    message = _message("apply_updates", "'encoder/layers/0/w'", (4, 3, 2), "`params`", (3, 2))
    _raises_exactly(ValueError, message, apply_updates, params, updates)
    message = _message("apply_updates", "(root)", (), "`params`", (3,))
    _raises_exactly(ValueError, message, apply_updates, jnp.ones(3), jnp.asarray(1.0))


def test_apply_updates_refuses_another_tree_structure():
    params = {"a": jnp.ones(2), "b": jnp.ones(2), "c": {"d": jnp.ones(2)}}
    updates = {"a": jnp.ones(2), "x": jnp.ones(2), "y": jnp.ones(2)}
    message = (
        "apply_updates: `updates` must have the tree structure of `params`; leaves only in "
        "`params`: 'b', 'c/d'; only in `updates`: 'x', 'y'"
    )
    _raises_exactly(ValueError, message, apply_updates, params, updates)
    # the same paths in another container: both structures are shown
    with pytest.raises(ValueError) as info:
        apply_updates((jnp.ones(2),), [jnp.ones(2)])
    assert str(info.value) == (
        "apply_updates: `updates` must have the tree structure of `params`; "
        f"`params`: {jax.tree.structure((0,))}, `updates`: {jax.tree.structure([0])}"
    )


def test_apply_updates_lists_at_most_five_paths_of_each_side():
    params = {f"p{i}": jnp.ones(1) for i in range(7)}
    with pytest.raises(ValueError) as info:
        apply_updates(params, {})
    assert str(info.value) == (
        "apply_updates: `updates` must have the tree structure of `params`; leaves only in "
        "`params`: 'p0', 'p1', 'p2', 'p3', 'p4' and 2 more; only in `updates`: none"
    )


def test_apply_updates_keeps_none_parameters_none_as_optax_and_refuses_a_missing_update():
    params = {"body": {"w": None}, "head": {"w": jnp.ones(2)}}
    updates = {"body": {"w": None}, "head": {"w": jnp.full(2, -0.5)}}
    new = apply_updates(params, updates)
    assert new["body"]["w"] is None
    np.testing.assert_array_equal(new["head"]["w"], [0.5, 0.5])
    # a None parameter stays None whatever its update, as in optax (its own suite tests
    # apply_updates(None, x)); an array parameter without an update is still refused
    for update_of_none in (jnp.ones(2), {"a": jnp.ones(3)}):
        wrong = {"body": {"w": update_of_none}, "head": {"w": jnp.ones(2)}}
        assert apply_updates(params, wrong)["body"]["w"] is None
        assert optax.apply_updates(params, wrong)["body"]["w"] is None
    assert apply_updates(None, jnp.ones(3)) is None
    missing = {"body": {"w": None}, "head": {"w": None}}
    message = _message("apply_updates", "'head/w'", None, "`params`", (2,), FROZEN)
    _raises_exactly(ValueError, message, apply_updates, params, missing)


def test_apply_updates_accepts_python_number_parameters_and_updates():
    assert float(apply_updates({"w": 1.0}, {"w": jnp.asarray(0.5)})["w"]) == 1.5
    assert float(apply_updates({"w": jnp.asarray(1.0)}, {"w": 0.5})["w"]) == 1.5


# ------------------------------------------------------------------------ optimizers' update

# (factory, what it is called with besides the learning rate) for every fdl optimizer
OPTIMIZERS = [
    *[(get_optimizer(name), {}) for name in optimizer_names("fdl")],
    (fdl.optim.sgd, {"momentum": 0.9}),
    (fdl.optim.rmsprop, {"momentum": 0.9, "centered": True}),
    (fdl.optim.torch.sgd, {"momentum": 0.9, "dampening": 0.1}),
    (fdl.optim.torch.rmsprop, {}),
    (fdl.optim.torch.adagrad, {}),
    (fdl.optim.torch.adam, {}),
    (fdl.optim.torch.adamw, {}),
]
OPTIMIZER_IDS = [f"{f.__module__.split('.')[-1]}.{f.__name__}-{len(k)}" for f, k in OPTIMIZERS]
WRONG = [((3, 1), "a gradient of a broadcastable shape"), ((4, 3, 2), "per-example gradients")]


@pytest.mark.parametrize("factory, kwargs", OPTIMIZERS, ids=OPTIMIZER_IDS)
@pytest.mark.parametrize("shape, what", WRONG, ids=["3x1", "4x3x2"])
def test_no_optimizer_step_broadcasts_a_gradient(factory, kwargs, shape, what):
    """A train step (update, then apply_updates) under jit with gradients of the wrong shape
    raises naming the leaf and both shapes, whatever the optimizer: in ``update`` where the
    state or the arithmetic would broadcast, else in ``apply_updates``."""
    optimizer = factory(learning_rate=0.1, **kwargs)
    params = {"b": jnp.zeros(2), "w": jnp.ones((3, 2))}
    grads = {"b": jnp.ones(2), "w": jnp.ones(shape)}

    @jax.jit
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return apply_updates(params, updates), state

    pattern = (
        rf"^[\w.]+: `updates` leaf 'w' has shape {re.escape(str(shape))}, "
        rf"but its `(params|state\.\w+)` leaf has shape \(3, 2\) {re.escape(BROADCAST)}"
    )
    with pytest.raises(ValueError, match=pattern):
        step(params, optimizer.init(params), grads)


def test_update_checks_the_gradients_against_the_parameters_then_the_state():
    optimizer = fdl.optim.adam(0.1)
    params = {"w": jnp.ones((3, 2))}
    state = optimizer.init(params)
    grads = {"w": jnp.ones((3, 1))}
    message = _message("scale_by_adam", "'w'", (3, 1), "`params`", (3, 2))
    _raises_exactly(ValueError, message, optimizer.update, grads, state, params)
    # without the parameters (update(grads, state), as optax allows), the state has their shapes
    message = _message("scale_by_adam", "'w'", (3, 1), "`state.nu`", (3, 2))
    _raises_exactly(ValueError, message, optimizer.update, grads, state)
    _raises_exactly(ValueError, message, jax.jit(optimizer.update), grads, state)


STATEFUL_ATOMS = [
    ("trace", fdl.optim.trace(0.9), "trace"),
    ("scale_by_adam", fdl.optim.scale_by_adam(), "nu"),
    ("scale_by_amsgrad", fdl.optim.scale_by_amsgrad(), "nu"),
    ("scale_by_adamax", fdl.optim.scale_by_adamax(), "nu"),
    ("scale_by_rms", fdl.optim.scale_by_rms(), "nu"),
    ("scale_by_stddev", fdl.optim.scale_by_stddev(), "nu"),
    ("scale_by_rss", fdl.optim.scale_by_rss(), "sum_of_squares"),
    ("scale_by_adadelta", fdl.optim.scale_by_adadelta(), "e_g"),
    ("scale_by_lion", fdl.optim.scale_by_lion(), "mu"),
    ("fdl.optim.torch.dampened_trace", fdl.optim.torch.dampened_trace(0.9), "trace"),
    ("fdl.optim.torch.scale_by_rss", fdl.optim.torch.scale_by_rss(), "sum_of_squares"),
]


@pytest.mark.parametrize("name, atom, field", STATEFUL_ATOMS, ids=[row[0] for row in STATEFUL_ATOMS])
def test_every_stateful_atom_checks_against_its_state(name, atom, field):
    state = atom.init({"w": jnp.ones(3)})
    message = _message(name, "'w'", (1,), f"`state.{field}`", (3,))
    _raises_exactly(ValueError, message, atom.update, {"w": jnp.ones(1)}, state)
    message = (
        f"{name}: `updates` must have the tree structure of `state.{field}`; leaves only in "
        f"`state.{field}`: 'w'; only in `updates`: 'v'"
    )
    _raises_exactly(ValueError, message, atom.update, {"v": jnp.ones(3)}, state)


def test_decoupled_weight_decay_checks_against_the_parameters():
    optimizer = fdl.optim.add_decayed_weights(0.1)
    params = {"w": jnp.ones((3, 2))}
    message = _message("add_decayed_weights", "'w'", (2,), "`params`", (3, 2))
    _raises_exactly(ValueError, message, optimizer.update, {"w": jnp.ones(2)}, optimizer.init(params), params)


def test_frozen_parts_and_masks_still_work():
    """None leaves (fdl.nn.partition's frozen part) and masked leaves pass through every check."""
    params = {"body": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2), "b": jnp.zeros(2)}}
    trainable, _ = fdl.nn.partition(params, "head/**")
    grads = jax.tree.map(jnp.ones_like, trainable)
    optimizer = fdl.optim.adamw(0.1, mask={"body": {"w": True}, "head": {"w": True, "b": False}})
    updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(trainable), trainable)
    new = apply_updates(trainable, updates)
    assert new["body"]["w"] is None
    assert jax.tree.map(jnp.shape, new) == jax.tree.map(jnp.shape, trainable)


def test_the_train_step_refuses_an_optimizer_that_broadcasts():
    """``fdl.train.make_step`` adds the updates with apply_updates, so a transformation that
    returns updates of another shape (here an optax-style one adding an axis) is caught."""

    def update(updates, state, params=None):
        return jax.tree.map(lambda u: u[None], updates), state

    broken = optax.GradientTransformation(lambda params: optax.EmptyState(), update)

    def loss(params, batch, key):
        return jnp.sum(params["w"] ** 2)

    params = {"w": jnp.ones(3)}
    step = fdl.train.make_train_step(fdl.train.simple_loss(loss), broken)
    message = _message("apply_updates", "'w'", (1, 3), "`params`", (3,))
    _raises_exactly(ValueError, message, step, fdl.train.init_state(params, broken), None, None)


# ------------------------------------------------------------------------ difference from optax


def test_optax_broadcasts_where_fdl_raises():
    """The documented departure (docs/design.md): optax returns a parameter of a new shape."""
    params, updates = {"w": jnp.ones(3)}, {"w": jnp.full(1, -0.5)}
    assert optax.apply_updates(params, updates)["w"].shape == (3,)
    with pytest.raises(ValueError, match=r"^apply_updates: `updates` leaf 'w' has shape \(1,\)"):
        apply_updates(params, updates)
    opt, grads = optax.adam(0.1), {"w": jnp.ones((3, 1))}
    big = {"w": jnp.ones((3, 2))}
    with jax.numpy_dtype_promotion("standard"):  # optax raises b1 to its int32 count
        updates, state = opt.update(grads, opt.init(big), big)
    assert updates["w"].shape == (3, 2) and state[0].nu["w"].shape == (3, 2)
    with pytest.raises(ValueError, match=r"^scale_by_adam: `updates` leaf 'w' has shape \(3, 1\)"):
        fdl.optim.adam(0.1).update(grads, fdl.optim.adam(0.1).init(big), big)
