"""DP-SGD (``differentially_private_aggregate``, ``dpsgd``): clipping and noise by hand, against
optax step by step on per-example gradients (the same key gives bit-identical noise), and every
error message."""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from fdl.optim.momentum import TraceState
from fdl.optim.privacy import DifferentiallyPrivateAggregateState, differentially_private_aggregate, dpsgd
from fdl.problems import Problem
from tests.optim.helpers import assert_same_trajectory
from tests.optim.test_atoms import close
from tests.optim.test_noise import trajectory

# --------------------------------------------------------------------- a per-example problem

_X = np.linspace(-1.0, 1.0, 24, dtype=np.float32).reshape(8, 3)  # (B, features)
_Y = np.asarray([1.0, -2.0, 0.5, 3.0, -1.0, 0.0, 2.0, -0.5], np.float32)  # (B,)


def _example_loss(params, x, y):
    return 0.5 * (x @ params["w"] + params["b"][0] - y) ** 2


def _regression() -> Problem:
    """Least squares on 8 fixed examples; the optimizers get its per-example gradients."""
    return Problem(
        name="regression",
        description="least squares on 8 examples",
        loss=lambda p: jnp.mean(
            jax.vmap(_example_loss, in_axes=(None, 0, 0))(p, jnp.asarray(_X), jnp.asarray(_Y))
        ),
        init_params=lambda key: {
            "w": jnp.asarray([0.5, -1.0, 2.0], jnp.float32),
            "b": jnp.zeros(1, jnp.float32),
        },
    )


def _per_example_grads(params):
    return jax.vmap(jax.grad(_example_loss), in_axes=(None, 0, 0))(params, jnp.asarray(_X), jnp.asarray(_Y))


def _optax_dpsgd(*args, **kwargs):
    with warnings.catch_warnings():  # optax's dpsgd passes its own deprecated `seed`
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.contrib.dpsgd(*args, **kwargs)


# ------------------------------------------------------------------------------------ by hand


def test_clipping_and_averaging_by_hand_without_noise():
    grads = {"a": jnp.asarray([[3.0], [0.0], [0.3]]), "b": jnp.asarray([[4.0, 0.0], [0.0, 0.0], [0.4, 0.0]])}
    opt = differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0, key=0)
    u, state = opt.update(grads, opt.init(None))
    # example norms 5 (scaled by 1/5), 0 (0/0: factor 1, adds nothing) and 0.5 (kept)
    close(u["a"], [(3.0 / 5 + 0.3) / 3]), close(u["b"], [(4.0 / 5 + 0.4) / 3, 0.0])
    assert isinstance(state, DifferentiallyPrivateAggregateState)


def test_the_noise_by_hand_from_the_draws(key):
    clip, sigma = 2.0, 0.7
    grads = {"a": jnp.asarray([[1.0, 1.0], [0.5, -0.5]]), "b": jnp.asarray([[1.0], [2.0]])}
    opt = differentially_private_aggregate(clip, sigma, key)
    state = opt.init(None)
    expected_key = key
    for _ in range(2):
        expected_key, key_a, key_b = jax.random.split(expected_key, 3)  # next, then leaves in order
        u, state = opt.update(grads, state)
        g = {k: np.asarray(v, np.float64) for k, v in grads.items()}
        norms = np.sqrt((g["a"] ** 2).sum(1) + (g["b"] ** 2).sum(1))  # sqrt 3, sqrt 4.5
        factors = np.minimum(clip / norms, 1.0)
        for name, k in (("a", key_a), ("b", key_b)):
            xi = np.asarray(jax.random.normal(k, g[name].shape[1:], jnp.float32), np.float64)
            expected = (factors @ g[name] + clip * sigma * xi) / 2
            np.testing.assert_allclose(np.asarray(u[name], np.float64), expected, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(jax.random.key_data(state.rng_key), jax.random.key_data(expected_key))


def test_dpsgd_momentum_state_and_step_by_hand():
    opt = dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.0, seed=1, momentum=0.5)
    params = jnp.zeros(2)
    state = opt.init(params)
    per_example = jnp.asarray([[3.0, 4.0], [0.0, 0.5]])  # clipped: (0.6, 0.8) and (0, 0.5)
    u1, state = opt.update(per_example, state, params)
    u2, state = opt.update(per_example, state, params)
    mean = np.array([0.3, 0.65])
    close(u1, -0.1 * mean), close(u2, -0.1 * (mean + 0.5 * mean))
    assert isinstance(state[1], TraceState)


def test_the_updates_keep_their_dtype(key):
    grads = jnp.asarray([[1.0, 2.0], [3.0, -1.0]], jnp.bfloat16)
    opt = differentially_private_aggregate(jnp.asarray(1.0, jnp.float32), 0.5, key)
    u, _ = jax.jit(opt.update)(grads, opt.init(None))
    assert u.dtype == jnp.bfloat16 and u.shape == (2,)


# ---------------------------------------------------------------------------- against optax


@pytest.mark.parametrize(
    "clip, sigma, momentum",
    [(1.0, 1.1, None), (0.5, 0.3, 0.9), (100.0, 0.0, None)],
    ids=["noise", "momentum", "unclipped"],
)
def test_dpsgd_same_updates_states_and_noise_as_optax(clip, sigma, momentum):
    ours_opt = dpsgd(0.05, clip, sigma, 5, momentum=momentum)
    theirs_opt = _optax_dpsgd(0.05, clip, sigma, 5, momentum=momentum)
    ours, theirs = trajectory(ours_opt, theirs_opt, _regression(), 150, grad_of=_per_example_grads)
    assert_same_trajectory(ours, theirs, f"dpsgd clip={clip} sigma={sigma} momentum={momentum}:")


def test_aggregate_with_a_key_matches_optax_bit_for_bit():
    ours_opt = differentially_private_aggregate(0.8, 1.3, jax.random.key(9))
    theirs_opt = optax.contrib.differentially_private_aggregate(0.8, 1.3, jax.random.key(9))
    ours, theirs = trajectory(ours_opt, theirs_opt, _regression(), 100, grad_of=_per_example_grads)
    assert_same_trajectory(ours, theirs, "differentially_private_aggregate:")
    for a, b in zip(jax.tree.leaves(ours["updates"]), jax.tree.leaves(theirs["updates"]), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------ errors


def test_every_error_message():
    name = "differentially_private_aggregate"
    with pytest.raises(
        ValueError, match=rf"^{name}: `l2_norm_clip` must be a non-negative number, got -1\.0$"
    ):
        differentially_private_aggregate(-1.0, 1.0, 0)
    with pytest.raises(
        ValueError, match=rf"^{name}: `noise_multiplier` must be a non-negative number, got -0\.5$"
    ):
        differentially_private_aggregate(1.0, -0.5, 0)
    with pytest.raises(
        TypeError, match=rf"^{name}: `key` must be a PRNG key of shape \(\) .*got 0\.5 \(float\)"
    ):
        differentially_private_aggregate(1.0, 1.0, 0.5)
    with pytest.raises(
        TypeError, match=r"^dpsgd: `seed` must be a PRNG key of shape \(\) .*got None \(NoneType\)"
    ):
        dpsgd(0.1, 1.0, 1.0, None)
    with pytest.raises(ValueError, match=r"^dpsgd: `momentum` must be in \[0, 1\), got 1\.0$"):
        dpsgd(0.1, 1.0, 1.0, 0, momentum=1.0)
    with pytest.raises(ValueError, match=r"^dpsgd: `learning_rate` must be a non-negative number"):
        dpsgd(-0.1, 1.0, 1.0, 0)
    with pytest.raises(ValueError, match=r"^dpsgd: `l2_norm_clip` must be a non-negative number"):
        dpsgd(0.1, -1.0, 1.0, 0)
    opt = differentially_private_aggregate(1.0, 1.0, 0)
    start = (
        "differentially_private_aggregate needs per-example gradients, every leaf with the batch on "
        "axis 0 (as jax.vmap(jax.grad(loss), in_axes=(None, 0)) returns them), got shapes "
    )
    cases = [
        ({"a": jnp.ones((2, 3)), "b": jnp.ones((3,))}, "a: (2, 3), b: (3,)"),
        ({"a": jnp.ones((2, 3)), "b": jnp.ones(())}, "a: (2, 3), b: ()"),
        (jnp.ones(()), "(root): ()"),
        ({}, "no leaves"),
    ]
    for grads, shapes in cases:
        with pytest.raises(ValueError, match=f"^{re.escape(start + shapes)}$"):
            opt.update(grads, opt.init(None))
