"""``named_chain``: the updates of ``chain``, the states under their names in order, optax's
transformations as members, extra arguments passed on, step by step against optax, every
error."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adam import ScaleByAdamState, scale_by_adam
from fdl.optim.base import EmptyState, GradientTransformation, chain, scale, scale_by_learning_rate
from fdl.optim.clipping import clip_by_global_norm
from fdl.optim.named_chain import named_chain
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, run_trajectories
from tests.optim.test_atoms import f32

STEPS = 200


def test_same_updates_as_chain_with_states_by_name_in_order():
    members = [
        ("z_clip", clip_by_global_norm(1.0)),
        ("adam", scale_by_adam()),
        ("lr", scale_by_learning_rate(0.1)),
    ]
    named, plain = named_chain(*members), chain(*(t for _, t in members))
    params = {"w": jnp.ones(2), "b": jnp.zeros(1)}
    s_named, s_plain = named.init(params), plain.init(params)
    assert isinstance(s_named, collections.OrderedDict) and list(s_named) == ["z_clip", "adam", "lr"]
    for g in ({"w": f32(3.0, -4.0), "b": f32(1.0)}, {"w": f32(0.5, 0.25), "b": f32(-2.0)}):
        u_named, s_named = named.update(g, s_named, params)
        u_plain, s_plain = plain.update(g, s_plain, params)
        for a, b in zip(jax.tree.leaves(u_named), jax.tree.leaves(u_plain), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(s_named["adam"], ScaleByAdamState) and int(s_named["adam"].count) == 2
    np.testing.assert_array_equal(np.asarray(s_named["adam"].mu["w"]), np.asarray(s_plain[1].mu["w"]))


def test_the_order_of_the_state_follows_the_arguments():
    opt = named_chain(("b", scale_by_adam()), ("a", scale_by_adam(b1=0.5)))
    state = opt.init(jnp.zeros(1))
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    assert jax.tree_util.keystr(leaves[0][0]).startswith("['b']")  # not sorted to 'a' first
    _, state = jax.jit(opt.update)(f32(1.0), state)
    assert list(state) == ["b", "a"]


def test_an_empty_named_chain_is_the_identity():
    opt = named_chain()
    state = opt.init(jnp.zeros(2))
    assert state == collections.OrderedDict()
    u, state = opt.update(f32(1.0, -2.0), state)
    assert u.tolist() == [1.0, -2.0] and state == collections.OrderedDict()


def _scale_by_loss():
    """optax's own test member: divides by the ``loss`` extra argument, which it requires."""

    def update(updates, state, params, *, loss, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda u: u / loss, updates), state

    return optax.GradientTransformationExtraArgs(optax.init_empty_state, update)


def test_extra_arguments_reach_the_members_that_take_them():
    """optax's _combining_test: ``scale(0.1)`` (an optax member without extra arguments) then
    a member that needs ``loss``."""
    for scaler in (optax.scale(0.1), scale(0.1)):
        opt = named_chain(("scale", scaler), ("scale_loss", _scale_by_loss()))
        params = {"a": jnp.ones((4,))}
        u, state = opt.update(params, opt.init(params), params, loss=0.1)
        np.testing.assert_allclose(np.asarray(u["a"]), np.ones(4), rtol=1e-6)
        assert state["scale"] == EmptyState()


def _in_standard_promotion(tx):
    """An optax member of fdl's chain: its update runs under the promotion rules it needs
    (``optax_promotion``), as the runner runs optax's own chain."""

    def update(updates, state, params=None):
        with optax_promotion():
            return tx.update(updates, state, params)

    return optax.GradientTransformation(tx.init, update)


def test_same_updates_and_states_as_optax():
    def build(lib):
        return lib.named_chain(
            ("clip", lib.clip_by_global_norm(1.0)),
            ("adam", lib.scale_by_adam(b1=0.8)),
            ("lr", lib.scale_by_learning_rate(lib.linear_schedule(0.05, 0.005, 150))),
        )

    from fdl import optim  # the public namespace for its schedules and atoms

    class Fdl:
        named_chain = staticmethod(named_chain)
        clip_by_global_norm = staticmethod(clip_by_global_norm)
        scale_by_adam = staticmethod(scale_by_adam)
        scale_by_learning_rate = staticmethod(scale_by_learning_rate)
        linear_schedule = staticmethod(optim.linear_schedule)

    pairs = [(build(Fdl), build(optax), make_problem(name, jnp.float32)) for name in ("quadratic", "mlp")]
    # an optax member inside fdl's named_chain, and fdl's inside optax's
    pairs.append(
        (
            named_chain(("adam", _in_standard_promotion(optax.scale_by_adam())), ("lr", scale(-0.01))),
            optax.named_chain(("adam", scale_by_adam()), ("lr", optax.scale(-0.01))),
            make_problem("logistic", jnp.float32),
        )
    )
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), name in zip(records, ["quadratic", "mlp", "mixed, logistic"], strict=True):
        assert_same_trajectory(ours, theirs, f"named_chain on {name}:")


def test_is_a_gradient_transformation():
    assert isinstance(named_chain(("s", scale(1.0))), GradientTransformation)


# ------------------------------------------------------------------------------------- errors


def test_arguments_that_are_not_named_transformations_are_refused():
    with pytest.raises(TypeError) as info:
        named_chain(("a", scale(1.0)), scale(1.0))
    assert str(info.value).startswith(
        "named_chain argument 1 must be a (name, transformation) pair, e.g. "
        "('adam', fdl.optim.scale_by_adam()), got GradientTransformation("
    )
    with pytest.raises(TypeError) as info:
        named_chain(("a", scale(1.0), "extra"))
    assert str(info.value).startswith("named_chain argument 0 must be a (name, transformation) pair")
    with pytest.raises(TypeError) as info:
        named_chain((0, scale(1.0)))
    assert str(info.value) == "named_chain argument 0: the name must be a string, got 0"
    with pytest.raises(TypeError) as info:
        named_chain(("a", scale(1.0)), ("b", 0.1))
    assert str(info.value) == (
        "named_chain argument 1 ('b'): the transformation must have init and update "
        "(e.g. fdl.optim.scale(0.1) or optax.scale(0.1)), got 0.1"
    )


def test_repeated_names_are_refused():
    with pytest.raises(ValueError) as info:
        named_chain(("a", scale(1.0)), ("b", scale(2.0)), ("a", scale(3.0)))
    assert str(info.value) == "named_chain names must be unique, got ['a', 'b', 'a'] (a repeated)"


def test_a_state_of_another_chain_is_refused_at_update():
    opt = named_chain(("a", scale(1.0)), ("b", scale_by_adam()))
    with pytest.raises(ValueError) as info:
        opt.update(f32(1.0), (EmptyState(), EmptyState()))
    assert (
        str(info.value)
        == "named_chain expects a state with the keys ['a', 'b'] (as its init returned), got tuple"
    )
    with pytest.raises(ValueError) as info:
        opt.update(f32(1.0), {"a": EmptyState()})
    assert (
        str(info.value)
        == "named_chain expects a state with the keys ['a', 'b'] (as its init returned), got keys ['a']"
    )
    # a plain dict with the right keys, in any order (a restored checkpoint) is accepted
    state = opt.init(jnp.zeros(1))
    u, _ = opt.update(f32(1.0), {"b": state["b"], "a": state["a"]})
    assert np.isfinite(np.asarray(u)).all()
