"""Gradient noise (``add_noise``, ``noisy_sgd``): by hand from the PRNG draws, against optax step
by step (the same key gives bit-identical noise), dtypes and every error message.

The states hold PRNG keys, which the shared trajectory recorder cannot pack, so
:func:`trajectory` here records both libraries' steps in one ``lax.scan`` with each key as its
raw ``key_data`` (compared exactly, as integers); ``test_polyak`` and ``test_privacy`` use it
too.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import apply_updates
from fdl.optim.noise import AddNoiseState, add_noise, noisy_sgd
from fdl.problems import Problem
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, start


def _raw_keys(tree):
    """``tree`` with every typed PRNG key replaced by its ``key_data`` (uint32)."""

    def raw(x):
        if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    return jax.tree.map(raw, tree)


def trajectory(fdl_opt, optax_opt, problem, steps, *, grad_of=None, extra_args=False):
    """Both optimizers for ``steps`` teacher-forced steps on ``problem`` (both get the gradient
    at fdl's parameters; ``grad_of(params)`` replaces ``jax.grad(problem.loss)``); with
    ``extra_args`` the loss is passed as ``value=`` to both ``update`` calls. Returns records
    for :func:`~tests.optim.helpers.assert_same_trajectory`."""
    grad = grad_of or jax.grad(problem.loss)

    def step(carry, _):
        params, fdl_state, optax_state = carry
        grads = grad(params)
        extra = {"value": problem.loss(params)} if extra_args else {}
        fdl_updates, fdl_state = fdl_opt.update(grads, fdl_state, params, **extra)
        with optax_promotion():
            optax_updates, optax_state = optax_opt.update(grads, optax_state, params, **extra)
        new_params = apply_updates(params, fdl_updates)
        records = (
            {"updates": fdl_updates, "state": _raw_keys(fdl_state)},
            {"updates": optax_updates, "state": _raw_keys(optax_state)},
        )
        return (new_params, fdl_state, optax_state), records

    def run():
        params = start(problem)
        fdl_init = fdl_opt.init(params)
        with optax_promotion():
            optax_init = optax_opt.init(params)
        _, (ours, theirs) = jax.lax.scan(step, (params, fdl_init, optax_init), None, length=steps)
        return ({"init_state": _raw_keys(fdl_init), **ours}, {"init_state": _raw_keys(optax_init), **theirs})

    return jax.device_get(jax.jit(run)())


# ------------------------------------------------------------------------------------ by hand


def test_add_noise_by_hand_from_the_draws(key):
    eta, gamma = 0.3, 0.55
    grads = {"a": jnp.asarray([1.0, -2.0], jnp.float32), "b": jnp.asarray([[0.5]], jnp.float32)}
    opt = add_noise(eta, gamma, key)
    state = opt.init(grads)
    assert isinstance(state, AddNoiseState) and int(state.count) == 0
    expected_key = key
    for t in (1, 2):
        expected_key, draw = jax.random.split(expected_key)
        leaf_keys = jax.random.split(draw, 2)  # one per leaf, in tree order: a, b
        std = np.sqrt(eta / t**gamma)
        u, state = opt.update(grads, state)
        for k, name in zip(leaf_keys, ("a", "b"), strict=True):
            xi = np.asarray(jax.random.normal(k, grads[name].shape, jnp.float32), np.float64)
            expected = np.asarray(grads[name], np.float64) + std * xi
            np.testing.assert_allclose(np.asarray(u[name], np.float64), expected, rtol=1e-6, atol=1e-7)
        assert int(state.count) == t
        np.testing.assert_array_equal(jax.random.key_data(state.rng_key), jax.random.key_data(expected_key))


def test_zero_variance_adds_nothing_and_an_int_seed_is_a_key():
    grads = jnp.asarray([1.0, -2.0, 3.0])
    u, state = add_noise(0.0, 0.55, 7).update(grads, add_noise(0.0, 0.55, 7).init(grads))
    np.testing.assert_array_equal(u, grads)
    same = add_noise(0.1, 0.55, jax.random.key(7)).init(grads).rng_key
    np.testing.assert_array_equal(
        jax.random.key_data(add_noise(0.1, 0.55, 7).init(grads).rng_key), jax.random.key_data(same)
    )
    default = add_noise(0.1, 0.55).init(grads).rng_key  # None: the seed 0
    np.testing.assert_array_equal(jax.random.key_data(default), jax.random.key_data(jax.random.key(0)))
    assert int(state.count) == 1


def test_noisy_sgd_by_hand(key):
    lr, eta, gamma = 0.1, 0.2, 0.55
    g = jnp.asarray([1.0, 2.0], jnp.float32)
    opt = noisy_sgd(lr, eta, gamma, key)
    u, _ = opt.update(g, opt.init(g))
    _, draw = jax.random.split(key)
    xi = np.asarray(jax.random.normal(jax.random.split(draw, 1)[0], (2,), jnp.float32), np.float64)
    expected = -lr * (np.asarray(g, np.float64) + np.sqrt(eta) * xi)
    np.testing.assert_allclose(np.asarray(u, np.float64), expected, rtol=1e-6)


def test_the_updates_keep_their_dtype_and_the_noise_is_drawn_in_it(key):
    g = jnp.asarray([1.0, -1.0, 0.5], jnp.bfloat16)
    opt = add_noise(0.5, 0.0, key)
    u, _ = jax.jit(opt.update)(g, opt.init(g))
    assert u.dtype == jnp.bfloat16
    _, draw = jax.random.split(key)
    xi = jax.random.normal(jax.random.split(draw, 1)[0], (3,), jnp.bfloat16)  # drawn in bfloat16
    expected = np.asarray(g, np.float32) + np.float32(np.sqrt(np.float32(0.5))) * np.asarray(xi, np.float32)
    np.testing.assert_array_equal(
        np.asarray(u, np.float32), np.asarray(expected.astype(jnp.bfloat16), np.float32)
    )


# ---------------------------------------------------------------------------- against optax


@pytest.mark.parametrize("eta, gamma", [(0.01, 0.55), (0.3, 1.0), (0.05, 0.0)])
def test_noisy_sgd_same_updates_states_and_noise_as_optax(eta, gamma):
    problem = make_problem("quadratic", jnp.float32)
    ours_opt = noisy_sgd(0.05, eta, gamma, jax.random.key(11))
    theirs_opt = optax.noisy_sgd(0.05, eta, gamma, jax.random.key(11))
    ours, theirs = trajectory(ours_opt, theirs_opt, problem, 100)
    assert_same_trajectory(ours, theirs, f"noisy_sgd eta={eta} gamma={gamma}:")


def test_add_noise_with_an_int_seed_matches_optax_bit_for_bit():
    problem = Problem(  # three leaves: one key per leaf, in tree order
        name="bowl",
        description="a sum of squares over three leaves",
        loss=lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p)),
        init_params=lambda key: {"a": jnp.ones((2, 3)), "b": jnp.full(1, 2.0), "c": {"d": jnp.zeros(4)}},
    )
    ours, theirs = trajectory(add_noise(0.2, 0.55, 3), optax.add_noise(0.2, 0.55, 3), problem, 100)
    assert_same_trajectory(ours, theirs, "add_noise seed 3:")
    for a, b in zip(jax.tree.leaves(ours["updates"]), jax.tree.leaves(theirs["updates"]), strict=True):
        np.testing.assert_array_equal(a, b)  # bit for bit, not only within tolerance


def test_traced_hyperparameters_are_accepted(key):
    g = jnp.ones(2)

    @jax.jit
    def step(eta, gamma):
        opt = add_noise(eta, gamma, key)
        return opt.update(g, opt.init(g))[0]

    np.testing.assert_array_equal(step(0.0, 0.5), g)


# ------------------------------------------------------------------------------------ errors


def test_every_error_message():
    with pytest.raises(ValueError, match=r"^add_noise: `eta` must be a non-negative number, got -0\.1$"):
        add_noise(-0.1, 0.55, 0)
    with pytest.raises(TypeError, match=r"^add_noise: `gamma` must be a real number, got '1' \(str\)$"):
        add_noise(0.1, "1", 0)
    with pytest.raises(ValueError, match=r"^noisy_sgd: `eta` must be a non-negative number"):
        noisy_sgd(0.1, eta=-1.0)
    with pytest.raises(ValueError, match=r"^noisy_sgd: `learning_rate` must be a non-negative number"):
        noisy_sgd(-0.1)
    bad_keys = [
        1.5,
        True,
        "0",
        jax.random.PRNGKey(0),
        jax.random.split(jax.random.key(0), 2),
        jnp.zeros((2,), jnp.int32),
    ]
    shown = [
        r"1\.5 \(float\)",
        r"True \(bool\)",
        r"'0' \(str\)",
        r"an array of dtype uint32 and shape \(2,\)",
        r"an array of dtype key<fry> and shape \(2,\)",
        r"an array of dtype int32 and shape \(2,\)",
    ]
    for bad, got in zip(bad_keys, shown, strict=True):
        with pytest.raises(TypeError) as info:
            add_noise(0.1, 0.55, bad)
        assert re.fullmatch(
            r"add_noise: `key` must be a PRNG key of shape \(\) \(e\.g\. jax\.random\.key\(0\)\) or an "
            rf"integer seed, got {got}; a legacy uint32 key can be wrapped with jax\.random\.wrap_key_data",
            str(info.value),
        ), str(info.value)
    with pytest.raises(TypeError, match=r"^noisy_sgd: `key` must be a PRNG key"):
        noisy_sgd(0.1, key=2.0)
