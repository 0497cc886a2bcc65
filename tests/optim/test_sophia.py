"""Sophia (``fdl.optim.sophia``): Hutchinson's estimate, by hand, and step by step against
optax.contrib (the same random signs from the same key)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from fdl.optim.base import GradientTransformation
from fdl.optim.sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    scale_by_sophia,
    sophia,
)
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
)

STEPS = 120
CURVATURE = np.asarray([3.0, 0.5, 8.0])


def _diagonal_loss(w):
    """A separable loss with a diagonal Hessian 2 * CURVATURE * (1 + 3 w^2)."""
    c = jnp.asarray(CURVATURE, w.dtype)
    return jnp.sum(c * (w**2 + 0.5 * w**4))


def _hessian64(w):
    return 2 * CURVATURE * (1 + 3 * np.asarray(w, np.float64) ** 2)


def _coupled_loss(p):
    return jnp.sum(p["a"] ** 4) + jnp.sum(jnp.sin(p["b"])) * jnp.sum(p["a"] ** 2)


PARAMS = {"a": jnp.asarray([1.0, -2.0, 0.5]), "b": jnp.asarray([[0.3, 0.1], [0.2, -0.4]])}


# ------------------------------------------------------------------------------------ Hutchinson


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    est = hutchinson_estimator_diag_hessian(jax.random.PRNGKey(3))
    w = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    state = est.init(w)
    for _ in range(2):
        u, state = est.update(None, state, w, obj_fn=_diagonal_loss)
        np.testing.assert_allclose(u, _hessian64(w), rtol=1e-6)


def test_hutchinson_draws_the_signs_optax_draws():
    est, theirs = hutchinson_estimator_diag_hessian(), optax.contrib.hutchinson_estimator_diag_hessian()
    state, their_state = est.init(PARAMS), theirs.init(PARAMS)
    np.testing.assert_array_equal(state.key, jax.random.PRNGKey(0))  # optax's default seed
    ours_step = jax.jit(lambda s: est.update(None, s, PARAMS, obj_fn=_coupled_loss))
    their_step = jax.jit(lambda s: theirs.update(None, s, PARAMS, obj_fn=_coupled_loss))
    for i in range(3):
        u, state = ours_step(state)
        with optax_promotion():
            v, their_state = their_step(their_state)
        assert_same_tree(u, v, f"call {i} estimate")
        jax.tree.map(np.testing.assert_array_equal, u, v)  # bit for bit
        np.testing.assert_array_equal(state.key, their_state.key)
    assert isinstance(state, HutchinsonState)


def test_hutchinson_signs_by_hand():
    """The signs are z = rademacher(split(split(key)[1], n_leaves)[i]): z * (H z) with H = 2 I
    (loss |w|^2) is 2 z^2 = 2, and with H = [[0, 1], [1, 0]] (loss w0 * w1) it is 2 z0 z1."""
    key = jax.random.PRNGKey(7)
    est = hutchinson_estimator_diag_hessian(key)
    w = {"x": jnp.ones(2), "y": jnp.ones(3)}
    u, state = est.update(None, est.init(w), w, obj_fn=lambda p: p["x"][0] * p["x"][1] + jnp.sum(p["y"] ** 2))
    next_key, draw = jax.random.split(key)
    kx, _ = jax.random.split(draw, 2)
    z = jax.random.rademacher(kx, (2,), jnp.float32)
    np.testing.assert_array_equal(u["x"], np.asarray([z[0] * z[1], z[0] * z[1]]))
    np.testing.assert_array_equal(u["y"], np.full(3, 2.0, np.float32))
    np.testing.assert_array_equal(state.key, next_key)


def test_hutchinson_with_a_typed_key_and_bfloat16_params():
    est = hutchinson_estimator_diag_hessian(jax.random.key(1))
    w = jnp.asarray([0.5, -1.0, 2.0], jnp.bfloat16)
    u, state = est.update(None, est.init(w), w, obj_fn=_diagonal_loss)
    assert u.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(u, np.float64), _hessian64(w), rtol=1e-2)
    assert jax.dtypes.issubdtype(state.key.dtype, jax.dtypes.prng_key)


# ----------------------------------------------------------------------------------- by hand


def test_scale_by_sophia_three_steps_by_hand():
    """update_interval=2: the Hessian average is refreshed on steps 1 and 3, and each step
    divides by the average from before it (the first by eps, then clipped)."""
    b1, b2, eps, gamma, rho = 0.9, 0.8, 1e-8, 0.05, 1.0
    opt = scale_by_sophia(b1=b1, b2=b2, eps=eps, gamma=gamma, clip_threshold=rho, update_interval=2)
    w = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    grads = [np.asarray([1.0, -2.0, 0.5]), np.asarray([0.5, 1.0, -1.0]), np.asarray([-0.2, 0.3, 0.1])]
    state = opt.init(w)
    m, h = np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        expected = np.clip(m / (1 - b1**t) / np.maximum(gamma * h, eps), -rho, rho)
        if (t - 1) % 2 == 0:
            h = b2 * h + (1 - b2) * _hessian64(w)
        u, state = opt.update(jnp.asarray(g, jnp.float32), state, w, obj_fn=_diagonal_loss)
        np.testing.assert_allclose(u, expected, rtol=1e-5)
        np.testing.assert_allclose(state.mu, m, rtol=1e-6)
        np.testing.assert_allclose(state.nu, h, rtol=1e-6)
        assert int(state.count) == t
    assert isinstance(state, SophiaState)
    assert np.sum(np.abs(np.asarray(u)) < rho) == 1  # the last step: two clipped, one not


def test_sophia_adds_weight_decay_then_scales_by_minus_the_learning_rate():
    lr, wd = 0.1, 0.01
    w = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    g = jnp.asarray([1.0, -2.0, 0.5], jnp.float32)
    atom = scale_by_sophia()
    s, _ = atom.update(g, atom.init(w), w, obj_fn=_diagonal_loss)
    opt = sophia(lr, weight_decay=wd)
    u, state = opt.update(g, opt.init(w), w, obj_fn=_diagonal_loss)
    np.testing.assert_allclose(u, -lr * (np.asarray(s) + wd * np.asarray(w)), rtol=1e-6)
    np.testing.assert_array_equal(np.abs(s), np.ones(3))  # the first step is clipped: sign(g)
    assert len(state) == 3


def test_a_traced_update_interval_and_hyperparameters_under_jit():
    def run(interval, gamma):
        opt = scale_by_sophia(gamma=gamma, update_interval=interval)
        w = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
        state = opt.init(w)
        for _ in range(3):
            u, state = opt.update(w, state, w, obj_fn=_diagonal_loss)
        return u, state.nu

    u, nu = jax.jit(run)(2, 0.05)
    u_ref, nu_ref = run(2, 0.05)
    np.testing.assert_allclose(u, u_ref, rtol=1e-6)
    np.testing.assert_allclose(nu, nu_ref, rtol=1e-6)


def test_verbose_prints_the_win_rate(capfd):
    opt = scale_by_sophia(gamma=100.0, verbose=True, print_win_rate_every_n_steps=2)
    w = jnp.asarray([0.5, -1.0, 2.0], jnp.float32)
    state = opt.init(w)
    for _ in range(4):
        _, state = opt.update(jnp.asarray([1e-3, 1e-3, 1e3], jnp.float32), state, w, obj_fn=_diagonal_loss)
    jax.effects_barrier()
    lines = [line for line in capfd.readouterr().out.splitlines() if "win rate" in line]
    assert lines == ["Sophia optimizer win rate: 0.6666666865348816"] * 2  # steps 2 and 4


def test_verbose_with_zero_steps_prints_nothing(capfd):
    opt = scale_by_sophia(verbose=True)
    w = jnp.ones(2)
    opt.update(w, opt.init(w), w, obj_fn=lambda p: jnp.sum(p**2))
    jax.effects_barrier()
    assert "win rate" not in capfd.readouterr().out


# -------------------------------------------------------------------------------- against optax


def _with_obj_fn(opt, loss):
    def update(updates, state, params=None):
        return opt.update(updates, state, params, obj_fn=loss)

    return GradientTransformation(opt.init, update)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(update_interval=1, gamma=0.5, b2=0.9),
        dict(clip_threshold=None, eps=1e-2, update_interval=3, weight_decay=0.0),
        dict(
            mu_dtype=jnp.bfloat16,
            weight_decay=1e-2,
            weight_decay_mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
        ),
        dict(hessian_diagonal_fn="seeded"),
    ],
    ids=["default", "every_step", "no_clip", "bf16_mu_masked_decay", "seeded"],
)
def test_sophia_same_updates_and_states_as_optax(kwargs):
    ours_kwargs, theirs_kwargs = dict(kwargs), dict(kwargs)
    if kwargs.get("hessian_diagonal_fn") == "seeded":
        ours_kwargs["hessian_diagonal_fn"] = hutchinson_estimator_diag_hessian(jax.random.PRNGKey(42))
        theirs_kwargs["hessian_diagonal_fn"] = optax.contrib.hutchinson_estimator_diag_hessian(
            jax.random.PRNGKey(42)
        )
    names = ("mlp", "rosenbrock") if not kwargs else ("rosenbrock",)  # the settings: a cheap Hessian
    pairs = []
    for name in names:
        problem = make_problem(name, jnp.float32)
        ours = _with_obj_fn(sophia(0.01, **ours_kwargs), problem.loss)
        theirs = _with_obj_fn(optax.contrib.sophia(0.01, **theirs_kwargs), problem.loss)
        pairs.append((ours, theirs, problem))
    for name, (fdl_record, optax_record) in zip(
        names, run_trajectories(pairs, STEPS, teacher_forcing=True), strict=True
    ):
        assert_same_trajectory(fdl_record, optax_record, f"sophia {kwargs} on {name}:")


def test_a_custom_estimator_gets_the_extra_arguments():
    seen = []

    def update(updates, state, params=None, **extra_args):
        seen.append(sorted(extra_args))
        return jax.tree.map(jnp.ones_like, updates), state

    opt = scale_by_sophia(hessian_diagonal_fn=GradientTransformation(lambda p: (), update), b2=0.5)
    w = jnp.ones(2)
    _, state = opt.update(w, opt.init(w), w, batch=3)
    assert seen == [["batch"]]
    np.testing.assert_array_equal(state.nu, np.full(2, 0.5, np.float32))


# -------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(b1=1.0), r"`b1` must be in \[0, 1\), got 1.0"),
        (dict(b2=-0.1), r"`b2` must be in \[0, 1\), got -0.1"),
        (dict(eps=-1.0), r"`eps` must be a non-negative number, got -1.0"),
        (dict(gamma=-0.01), r"`gamma` must be a non-negative number, got -0.01"),
        (dict(clip_threshold=-1.0), r"`clip_threshold` must be a non-negative number, got -1.0"),
        (
            dict(update_interval=0),
            r"`update_interval` must be a whole number >= 1 \(steps between two Hessian estimates\), got 0",
        ),
        (dict(update_interval=2.5), r"`update_interval` must be a whole number >= 1 .*, got 2.5"),
        (
            dict(print_win_rate_every_n_steps=-1),
            r"`print_win_rate_every_n_steps` must be a whole number >= 0 \(0: never\), got -1",
        ),
    ],
)
def test_bad_hyperparameters_are_refused_by_value(kwargs, message):
    with pytest.raises(ValueError, match=rf"^scale_by_sophia: {message}$"):
        scale_by_sophia(**kwargs)
    with pytest.raises(ValueError, match=rf"^sophia: {message}$"):
        sophia(0.1, **kwargs)


def test_negative_weight_decay_and_learning_rate_are_refused():
    with pytest.raises(ValueError, match=r"^sophia: `weight_decay` must be a non-negative number, got -0.1$"):
        sophia(0.1, weight_decay=-0.1)
    with pytest.raises(
        ValueError, match=r"^sophia: `learning_rate` must be a non-negative number or a schedule"
    ):
        sophia(-0.1)


def test_non_numeric_hyperparameters_are_refused():
    with pytest.raises(TypeError, match=r"^sophia: `gamma` must be a real number, got '0.1' \(str\)$"):
        sophia(0.1, gamma="0.1")
    with pytest.raises(
        TypeError, match=r"^scale_by_sophia: `update_interval` must be a real number, got True \(bool\)$"
    ):
        scale_by_sophia(update_interval=True)


def test_the_estimator_must_be_a_transformation():
    with pytest.raises(
        TypeError, match=r"^sophia: `hessian_diagonal_fn` must be a gradient transformation .*, got 3$"
    ):
        sophia(0.1, hessian_diagonal_fn=3)


def test_random_seed_must_be_a_key():
    with pytest.raises(
        TypeError,
        match=r"^hutchinson_estimator_diag_hessian: `random_seed` must be a JAX PRNG key .* or None, got 0$",
    ):
        hutchinson_estimator_diag_hessian(0)


def test_update_needs_params_and_obj_fn():
    opt, est = sophia(0.1), hutchinson_estimator_diag_hessian()
    w = jnp.ones(2)
    with pytest.raises(ValueError, match=r"^scale_by_sophia: `params` must be given to update"):
        opt.update(w, opt.init(w), obj_fn=jnp.sum)
    with pytest.raises(ValueError, match=r"^hutchinson_estimator_diag_hessian: update needs `obj_fn=`"):
        opt.update(w, opt.init(w), w)
    with pytest.raises(
        ValueError, match=r"^hutchinson_estimator_diag_hessian: `params` must be given to update"
    ):
        est.update(w, est.init(w), obj_fn=jnp.sum)


def test_updates_must_match_the_params():
    opt = scale_by_sophia()
    with pytest.raises(ValueError, match=r"^scale_by_sophia: "):
        opt.update(jnp.ones(3), opt.init(jnp.ones(2)), jnp.ones(2), obj_fn=jnp.sum)
